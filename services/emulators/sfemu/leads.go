package sfemu

import (
	"net/http"
	"time"
)

// LeadConvert is the body of POST /_emulator/leads/{id}/convert, the fields of Apex's Database.LeadConvert
// (Apex Reference, "LeadConvert Class"): AccountID/ContactID/OpportunityID merge the Lead into existing
// records instead of creating them (a Contact or Opportunity needs its Account); DoNotCreateOpportunity
// converts without one; OpportunityName names the new Opportunity (default: the Lead's Company);
// ConvertedStatus must be a converted status (default the org's, "Closed - Converted").
type LeadConvert struct {
	AccountID              string `json:"accountId,omitempty"`
	ContactID              string `json:"contactId,omitempty"`
	OpportunityID          string `json:"opportunityId,omitempty"`
	DoNotCreateOpportunity bool   `json:"doNotCreateOpportunity,omitempty"`
	OpportunityName        string `json:"opportunityName,omitempty"`
	ConvertedStatus        string `json:"convertedStatus,omitempty"`
}

// LeadConvertResult is Database.LeadConvertResult.
type LeadConvertResult struct {
	LeadID        string `json:"leadId"`
	AccountID     string `json:"accountId"`
	ContactID     string `json:"contactId"`
	OpportunityID string `json:"opportunityId,omitempty"`
	Success       bool   `json:"success"`
}

// ConvertLead converts a Lead as Apex Database.convertLead does (what a seller's "Convert" button runs):
// Salesforce's REST API cannot convert a Lead (IsConverted and the Converted* fields are read-only), so the
// emulator offers it as a test/admin call, POST /_emulator/leads/{id}/convert. It creates the Account (Name
// = Company, the Lead's address as billing address), the Contact (name, email, phone, on that Account) and
// the Opportunity (Name, AccountId, ContactId, LeadSource, the first open stage, closing at the end of the
// current quarter), or uses the given ones, then sets IsConverted, ConvertedAccountId, ConvertedContactId,
// ConvertedOpportunityId, ConvertedDate and Status on the Lead, which from then on refuses every update
// (CANNOT_UPDATE_CONVERTED_LEAD). All of it, or nothing.
func (e *Emulator) ConvertLead(leadID string, req LeadConvert) (LeadConvertResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	res, err := e.convertLead(leadID, req)
	if err != nil {
		return LeadConvertResult{}, err
	}
	return res, nil
}

func (e *Emulator) convertLead(rawID string, req LeadConvert) (LeadConvertResult, *APIError) {
	leads := e.st.schema.object("Lead")
	id, err := pathID(leads, rawID)
	if err != nil {
		return LeadConvertResult{}, err
	}
	lead, err := e.st.existing(leads, id)
	if err != nil {
		return LeadConvertResult{}, err
	}
	if lead["IsConverted"] == true {
		return LeadConvertResult{}, badRequest("INVALID_STATUS", "This lead was already converted to the contact %s.", str(lead["ConvertedContactId"]))
	}
	status := req.ConvertedStatus
	if status == "" {
		status = leadConvertedStatus
	}
	if status != leadConvertedStatus {
		return LeadConvertResult{}, badRequest("INVALID_STATUS", "invalid convertedStatus: %s (the converted status is %q)", status, leadConvertedStatus)
	}
	if (req.ContactID != "" || req.OpportunityID != "") && req.AccountID == "" {
		return LeadConvertResult{}, badRequest("REQUIRED_FIELD_MISSING", "accountId is required when contactId or opportunityId is given")
	}
	if req.OpportunityID != "" && req.DoNotCreateOpportunity {
		return LeadConvertResult{}, badRequest("INVALID_FIELD", "opportunityId and doNotCreateOpportunity exclude each other")
	}
	var undo undoLog
	fail := func(err *APIError) (LeadConvertResult, *APIError) {
		undo.rollback()
		return LeadConvertResult{}, err
	}
	opts := writeOpts{actor: e.userID, system: true, undo: &undo}
	create := func(obj string, fields map[string]any) (string, *APIError) {
		o := e.st.schema.object(obj)
		values, err := e.st.coerceOne(o, fields, true, opts)
		if err != nil {
			return "", err
		}
		return e.st.create(o, values, opts)
	}
	existing := func(obj, raw string) (string, *APIError) {
		o := e.st.schema.object(obj)
		rid, err := pathID(o, raw)
		if err != nil {
			return "", err
		}
		if _, err := e.st.existing(o, rid); err != nil {
			return "", err
		}
		return rid, nil
	}
	res := LeadConvertResult{LeadID: id, Success: true}
	if req.AccountID != "" {
		if res.AccountID, err = existing("Account", req.AccountID); err != nil {
			return fail(err)
		}
	} else {
		account := map[string]any{"Name": lead["Company"]}
		for from, to := range map[string]string{"Street": "BillingStreet", "City": "BillingCity", "State": "BillingState",
			"PostalCode": "BillingPostalCode", "Country": "BillingCountry", "Phone": "Phone"} {
			if lead[from] != nil {
				account[to] = lead[from]
			}
		}
		if res.AccountID, err = create("Account", account); err != nil {
			return fail(err)
		}
	}
	if req.ContactID != "" {
		if res.ContactID, err = existing("Contact", req.ContactID); err != nil {
			return fail(err)
		}
	} else {
		contact := map[string]any{"AccountId": res.AccountID, "LastName": lead["LastName"]}
		for _, f := range []string{"FirstName", "Email", "Phone"} {
			if lead[f] != nil {
				contact[f] = lead[f]
			}
		}
		if res.ContactID, err = create("Contact", contact); err != nil {
			return fail(err)
		}
	}
	switch {
	case req.OpportunityID != "":
		if res.OpportunityID, err = existing("Opportunity", req.OpportunityID); err != nil {
			return fail(err)
		}
	case !req.DoNotCreateOpportunity:
		name := req.OpportunityName
		if name == "" {
			name = str(lead["Company"])
		}
		now := e.st.now().UTC()
		quarterEnd := time.Date(now.Year(), time.Month((int(now.Month())-1)/3*3+4), 0, 0, 0, 0, 0, time.UTC)
		opp := map[string]any{"Name": name, "AccountId": res.AccountID, "ContactId": res.ContactID,
			"StageName": opportunityStages[0].Name, "CloseDate": quarterEnd.Format(dateLayout)}
		if lead["LeadSource"] != nil {
			opp["LeadSource"] = lead["LeadSource"]
		}
		if res.OpportunityID, err = create("Opportunity", opp); err != nil {
			return fail(err)
		}
	}
	values := map[*field]any{leads.field("IsConverted"): true, leads.field("Status"): status,
		leads.field("ConvertedAccountId"): res.AccountID, leads.field("ConvertedContactId"): res.ContactID,
		leads.field("ConvertedDate"): e.st.now().UTC().Format(dateLayout)}
	if res.OpportunityID != "" {
		values[leads.field("ConvertedOpportunityId")] = res.OpportunityID
	}
	convOpts := opts
	convOpts.converting = true
	if err := e.st.update(leads, id, values, convOpts); err != nil {
		return fail(err)
	}
	return res, nil
}

// serveLeadControl serves POST /_emulator/leads/{id}/convert (body: LeadConvert, may be empty).
func (e *Emulator) serveLeadControl(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) != 3 || segs[2] != "convert" {
		writeError(w, errNotFound())
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, methodNotAllowed(r.Method, "POST"))
		return
	}
	b, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req LeadConvert
	if len(b) > 0 {
		if err := decodeBody(b, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	res, err := e.convertLead(segs[1], req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
