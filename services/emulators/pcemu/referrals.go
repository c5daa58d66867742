package pcemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// timeLayout is the fixed-width 100ns layout Partner Center (.NET) emits, so timestamps also sort as strings.
const timeLayout = "2006-01-02T15:04:05.0000000Z"

const maxPageSize = 100

// nextTime returns a timestamp strictly later than any the emulator handed out before. Callers hold e.mu.
func (e *Emulator) nextTime() string {
	now := time.Now().UTC().Truncate(100 * time.Nanosecond)
	if !now.After(e.lastTime) {
		now = e.lastTime.Add(100 * time.Nanosecond)
	}
	e.lastTime = now
	return now.Format(timeLayout)
}

func newETag() string { return `"` + newGUID() + `"` }

// clone deep-copies a referral so callers never share the stored one.
func clone(r *pc.Referral) pc.Referral {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("pcemu: marshal referral: %v", err)) // a Referral always marshals
	}
	var out pc.Referral
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("pcemu: unmarshal referral: %v", err))
	}
	return out
}

func (e *Emulator) links(id, engagementID string) *pc.Links {
	base := e.baseURL + "/v1.0/engagements/referrals"
	return &pc.Links{
		RelatedReferrals: &pc.Link{URI: base + "?$filter=engagementId eq '" + engagementID + "'", Method: "GET"},
		Self:             &pc.Link{URI: base + "/" + id, Method: "GET"},
	}
}

func (e *Emulator) getReferral(w http.ResponseWriter, r *http.Request) {
	ref, err := e.stored(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	// A stored version is never changed (an edit stores a new one), so it is encoded as it is, once, outside the lock.
	ref.ODataContext = e.base() + "/v1.0/engagements/referrals/$metadata#Referrals/$entity"
	writeReferral(w, http.StatusOK, ref)
}

// stored returns a shallow copy of the stored version of a referral, for encoding only: its nested values
// are the store's (never changed in place, but not the caller's to change).
func (e *Emulator) stored(id string) (pc.Referral, error) {
	e.mu.Lock()
	ref, ok := e.referrals[id]
	e.mu.Unlock()
	if !ok {
		return pc.Referral{}, notFound(id)
	}
	return *ref, nil
}

func writeReferral(w http.ResponseWriter, status int, ref pc.Referral) {
	w.Header().Set("ETag", ref.ETag)
	writeJSON(w, status, ref)
}

// Get returns a copy of one referral.
func (e *Emulator) Get(id string) (pc.Referral, error) {
	ref, err := e.stored(id)
	if err != nil {
		return ref, err
	}
	return clone(&ref), nil
}

// Referrals returns copies of all referrals in creation order.
func (e *Emulator) Referrals() []pc.Referral {
	e.mu.Lock()
	refs := make([]*pc.Referral, 0, len(e.order))
	for _, id := range e.order {
		refs = append(refs, e.referrals[id])
	}
	e.mu.Unlock()
	out := make([]pc.Referral, len(refs))
	for i, r := range refs {
		out[i] = clone(r)
	}
	return out
}

func (e *Emulator) listReferrals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "$filter", "$orderby", "$top", "$skip", "$skiptoken", "$count", "$select":
		default:
			if strings.HasPrefix(k, "$") {
				writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("Query option '%s' is not supported.", k), k)
				return
			}
		}
	}
	var pred predicate = func(*pc.Referral) bool { return true }
	if f := q.Get("$filter"); f != "" {
		p, err := parseFilter(f, e.filterMode())
		var nf errNotFilterable
		if errors.As(err, &nf) {
			e.count("refused.filter")
			writeError(w, http.StatusBadRequest, "invalidRequest", nf.Error(), "$filter")
			return
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalidRequest", "Invalid $filter: "+err.Error(), "$filter")
			return
		}
		pred = p
	}
	var orderField string
	desc := false
	if o := strings.TrimSpace(q.Get("$orderby")); o != "" {
		parts := strings.Fields(o)
		if len(parts) > 2 || (parts[0] != "createdDateTime" && parts[0] != "updatedDateTime") ||
			(len(parts) == 2 && parts[1] != "asc" && parts[1] != "desc") {
			writeError(w, http.StatusBadRequest, "invalidRequest", "Invalid $orderby '"+o+"': use createdDateTime or updatedDateTime, asc or desc.", "$orderby")
			return
		}
		orderField, desc = parts[0], len(parts) == 2 && parts[1] == "desc"
	}
	top := maxPageSize
	if t := q.Get("$top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > maxPageSize {
			writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("Invalid $top '%s': must be between 1 and %d.", t, maxPageSize), "$top")
			return
		}
		top = n
	}
	offset := 0
	for _, k := range []string{"$skip", "$skiptoken"} {
		if s := q.Get(k); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("Invalid %s '%s'.", k, s), k)
				return
			}
			offset += n
		}
	}

	e.mu.Lock()
	var matched []*pc.Referral
	for _, id := range e.order {
		if ref := e.referrals[id]; pred(ref) {
			matched = append(matched, ref)
		}
	}
	if orderField != "" {
		slices.SortStableFunc(matched, func(a, b *pc.Referral) int {
			x, y := a.CreatedDateTime, b.CreatedDateTime
			if orderField == "updatedDateTime" {
				x, y = a.UpdatedDateTime, b.UpdatedDateTime
			}
			c := strings.Compare(x, y) // fixed-width layout: string order is time order
			if desc {
				c = -c
			}
			return c
		})
	}
	total := len(matched)
	page := []pc.Referral{}
	for i := offset; i < total && i < offset+top; i++ {
		page = append(page, *matched[i]) // encoded only; stored versions are never changed in place
	}
	base := e.baseURL
	e.mu.Unlock()

	list := pc.ReferralList{
		ODataContext: base + "/v1.0/engagements/referrals/$metadata#Referrals",
		ODataCount:   &total,
		Value:        page,
	}
	if offset+top < total {
		next := url.Values{}
		for _, k := range []string{"$filter", "$orderby", "$select"} {
			if v := q.Get(k); v != "" {
				next.Set(k, v)
			}
		}
		next.Set("$top", strconv.Itoa(top))
		next.Set("$skiptoken", strconv.Itoa(offset+top))
		list.ODataNextLink = base + "/v1.0/engagements/referrals?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, list)
}

func (e *Emulator) createReferral(w http.ResponseWriter, r *http.Request) {
	var in pc.Referral
	if err := decodeStrict(r.Body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The request body is not a valid referral: "+err.Error(), "")
		return
	}
	out, changed, err := e.store(in, false, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	e.answer(w, pc.EventReferralCreated, out.ID, changed, func() { writeReferral(w, http.StatusCreated, out) })
}

// create stores a new referral. A partner-created referral is Outgoing and comes back Active/Accepted; a
// seller-created one is an Incoming Shared New/Pending referral from Microsoft.
func (e *Emulator) create(in pc.Referral, seller bool) (pc.Referral, error) {
	return e.createAs(in, seller, false)
}

// createAs is create; lead makes the seller-side referral a lead from Microsoft's marketing: Incoming,
// Independent, MarketingQualified (Partner Center's "Leads").
func (e *Emulator) createAs(in pc.Referral, seller, lead bool) (pc.Referral, error) {
	out, changed, err := e.store(in, seller, lead)
	if err != nil {
		return out, err
	}
	e.notify(pc.EventReferralCreated, out.ID, changed)
	return out, nil
}

// store is createAs without the webhook: the stored referral and its change time.
func (e *Emulator) store(in pc.Referral, seller, lead bool) (pc.Referral, string, error) {
	var keepID, keepCreated string
	if seller {
		// What the seller sent is kept, or refused with the reason; only what they left out is filled in.
		var err error
		if keepID, keepCreated, err = e.checkSellerReferral(&in); err != nil {
			return pc.Referral{}, "", err
		}
		in.Direction = pc.DirectionIncoming
		in.Type = pc.TypeShared
		in.Status, in.Substatus = pc.StatusNew, pc.SubstatusPending
		if lead {
			in.Type, in.Qualification = pc.TypeIndependent, pc.QualificationMarketingQualified
		}
		if in.Qualification == "" {
			in.Qualification = pc.QualificationSalesQualified
		}
		if in.InviteContext == nil {
			in.InviteContext = &pc.InviteContext{}
		}
		if in.InviteContext.InvitedBy == nil {
			in.InviteContext.InvitedBy = &pc.InvitedBy{}
		}
		in.InviteContext.InvitedBy.OrganizationID = "msft"
		if in.InviteContext.InvitedBy.OrganizationName == "" {
			in.InviteContext.InvitedBy.OrganizationName = "Microsoft"
		}
		// A seller's referral still has to be a valid one; fill what a test would rather not spell out.
		if in.Name == "" {
			in.Name = "Microsoft co-sell referral"
		}
		if in.CustomerProfile == nil {
			in.CustomerProfile = &pc.CustomerProfile{Name: "Fabrikam Customer Inc"}
		}
		if in.Consent == nil {
			in.Consent = &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true}
		}
		if in.Details == nil {
			in.Details = &pc.Details{}
		}
	} else {
		if in.Status == pc.StatusClosed {
			return pc.Referral{}, "", invalid("status", "A referral cannot be created Closed.")
		}
		if in.Status != "" && in.Status != pc.StatusNew && in.Status != pc.StatusActive {
			return pc.Referral{}, "", invalid("status", "Unknown status '%s'.", in.Status)
		}
		in.Direction = pc.DirectionOutgoing
		in.Status, in.Substatus = pc.StatusActive, pc.SubstatusAccepted
		if in.Qualification == "" {
			in.Qualification = pc.QualificationNone
		}
	}
	if err := validateReferral(&in); err != nil {
		return pc.Referral{}, "", err
	}
	if err := validateCoSell(&in); err != nil {
		return pc.Referral{}, "", err
	}

	e.mu.Lock()
	now := e.nextTime()
	in.ID = newGUID()
	if keepID != "" {
		if _, dup := e.referrals[keepID]; dup {
			e.mu.Unlock()
			return pc.Referral{}, "", &apiError{status: http.StatusConflict, code: "invalidRequest", target: "id",
				msg: fmt.Sprintf("A referral with id '%s' already exists.", keepID)}
		}
		in.ID = keepID
	}
	if in.EngagementID == "" {
		in.EngagementID = newGUID()
	}
	in.OrganizationID, in.OrganizationName = e.opts.OrganizationID, e.opts.OrganizationName
	in.CreatedDateTime, in.UpdatedDateTime = now, now
	if keepCreated != "" {
		in.CreatedDateTime = keepCreated
	}
	in.ClosedDateTime = nil
	in.ODataContext = ""
	if seller {
		in.AcceptedDateTime = nil
		if in.ExpirationDateTime == nil {
			exp := time.Now().UTC().Add(14 * 24 * time.Hour).Truncate(24 * time.Hour).Format(timeLayout)
			in.ExpirationDateTime = &exp
		}
	} else {
		in.AcceptedDateTime = &now
		in.ExpirationDateTime = nil
	}
	in.ETag = newETag()
	in.Links = e.links(in.ID, in.EngagementID)
	stored := clone(&in) // nothing of the caller's is shared with the store
	e.referrals[in.ID] = &stored
	e.order = append(e.order, in.ID)
	e.indexExtRef("", stored.ExternalReferenceID)
	out := clone(&stored)
	e.mu.Unlock()

	return out, now, nil
}

// checkSellerReferral refuses, with the reason, what a Microsoft seller's referral cannot carry, so that nothing
// the seller sent is silently replaced: a seller's referral shared with this partner is Shared, Incoming,
// New/Pending, invited by Microsoft and owned by this partner; its id (a GUID), createdDateTime (not in the
// future) and expirationDateTime (in the future) are kept; updatedDateTime, eTag, links and the accepted/closed
// dates are the server's. It returns the id and creation time to keep.
func (e *Emulator) checkSellerReferral(in *pc.Referral) (id, created string, err error) {
	refuse := func(target, format string, args ...any) (string, string, error) {
		return "", "", invalid(target, format, args...)
	}
	switch {
	case in.Type != "" && in.Type != pc.TypeShared:
		return refuse("type", "A referral a Microsoft seller shares with a partner is Shared (visible to both parties), not '%s'.", in.Type)
	case in.Direction != "" && in.Direction != pc.DirectionIncoming:
		return refuse("direction", "A Microsoft seller's referral is Incoming for the partner, not '%s'.", in.Direction)
	case in.Status != "" && in.Status != pc.StatusNew, in.Substatus != "" && in.Substatus != pc.SubstatusPending:
		return refuse("status", "A Microsoft seller's referral arrives New/Pending, not %s/%s; move it on afterwards (update, close or expire).", in.Status, in.Substatus)
	case in.OrganizationID != "" && in.OrganizationID != e.opts.OrganizationID:
		return refuse("organizationId", "The referral would belong to organization '%s', not to this partner ('%s').", in.OrganizationID, e.opts.OrganizationID)
	case in.OrganizationName != "" && in.OrganizationName != e.opts.OrganizationName:
		return refuse("organizationName", "The referral would belong to '%s', not to this partner ('%s').", in.OrganizationName, e.opts.OrganizationName)
	case in.InviteContext != nil && in.InviteContext.InvitedBy != nil && in.InviteContext.InvitedBy.OrganizationID != "" &&
		in.InviteContext.InvitedBy.OrganizationID != "msft":
		return refuse("inviteContext.invitedBy.organizationId", "A Microsoft seller's referral is invited by 'msft', not '%s'.", in.InviteContext.InvitedBy.OrganizationID)
	case in.UpdatedDateTime != "":
		return refuse("updatedDateTime", "updatedDateTime is set by Partner Center on every change; leave it out.")
	case in.ETag != "" || in.Links != nil || in.ODataContext != "":
		return refuse("eTag", "eTag, links and @odata.context are set by Partner Center; leave them out.")
	case in.AcceptedDateTime != nil || in.ClosedDateTime != nil:
		return refuse("acceptedDateTime", "A New referral has no acceptedDateTime or closedDateTime.")
	}
	if in.ID != "" {
		if !isGUID(in.ID) {
			return refuse("id", "The referral id '%s' is not a GUID.", in.ID)
		}
		id = strings.ToLower(in.ID)
	}
	if in.CreatedDateTime != "" {
		t, perr := time.Parse(time.RFC3339Nano, in.CreatedDateTime)
		if perr != nil || t.After(time.Now()) {
			return refuse("createdDateTime", "createdDateTime '%s' must be an ISO-8601 UTC time not in the future.", in.CreatedDateTime)
		}
		created = t.UTC().Format(timeLayout)
	}
	if in.ExpirationDateTime != nil {
		t, perr := time.Parse(time.RFC3339Nano, *in.ExpirationDateTime)
		if perr != nil || !t.After(time.Now()) {
			return refuse("expirationDateTime", "expirationDateTime '%s' must be an ISO-8601 UTC time in the future.", *in.ExpirationDateTime)
		}
		exp := t.UTC().Format(timeLayout)
		in.ExpirationDateTime = &exp
	}
	return id, created, nil
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// validateReferral checks what Partner Center checks on a referral's content.
func validateReferral(r *pc.Referral) error {
	if r.Name == "" {
		return invalid("name", "The referral name is required.")
	}
	switch r.Type {
	case "":
		return invalid("type", "The referral type is required.")
	case pc.TypeIndependent, pc.TypeShared:
	default:
		return invalid("type", "Unknown referral type '%s': use Independent or Shared.", r.Type)
	}
	switch r.Qualification {
	case pc.QualificationNone, pc.QualificationDirect, pc.QualificationMarketingQualified, pc.QualificationSalesQualified:
	default:
		return invalid("qualification", "Unknown qualification '%s'.", r.Qualification)
	}
	if r.CustomerProfile == nil {
		return invalid("customerProfile", "The customer profile is required.")
	}
	if strings.TrimSpace(r.CustomerProfile.Name) == "" {
		return invalid("customerProfile.name", "The customer name is required.")
	}
	if a := r.CustomerProfile.Address; a != nil && a.Country != "" && !isCountry(a.Country) {
		return invalid("customerProfile.address.country", "'%s' is not an ISO-3166 alpha-2 country code.", a.Country)
	}
	if r.Consent == nil {
		return invalid("consent", "The consent is required.")
	}
	if r.Details == nil {
		return invalid("details", "The details are required.")
	}
	return validateDetails(r)
}

// validateCoSell: a co-sell referral (help requested from Microsoft: an assistance code other than
// Unknown) needs at least one customer contact (Microsoft's co-sell connector docs: "a co-sell referral
// needs at least one customer contact"; its troubleshooting: "a customer contact when help is requested").
func validateCoSell(r *pc.Referral) error {
	if r.InviteContext == nil || r.InviteContext.AssistanceRequestCode == "" || r.InviteContext.AssistanceRequestCode == "Unknown" {
		return nil
	}
	if r.CustomerProfile == nil || len(r.CustomerProfile.Team) == 0 {
		return invalid("customerProfile.team", "A co-sell referral (assistanceRequestCode %s) needs at least one customer contact.", r.InviteContext.AssistanceRequestCode)
	}
	return nil
}

func validateDetails(r *pc.Referral) error {
	d := r.Details
	if d == nil {
		return nil
	}
	if d.Currency != "" && !isCurrency(d.Currency) {
		return invalid("details.currency", "'%s' is not an ISO-4217 currency code.", d.Currency)
	}
	if d.DealValue != nil && *d.DealValue < 0 {
		return invalid("details.dealValue", "The deal value must be zero or more, got %v.", *d.DealValue)
	}
	if d.ClosingDateTime != "" {
		if _, err := parseTime(d.ClosingDateTime); err != nil {
			return invalid("details.closingDateTime", "'%s' is not an ISO-8601 date-time.", d.ClosingDateTime)
		}
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02", s)
}

// substatuses says which substatuses fit each status; next says where each status may move.
var (
	substatuses = map[string][]string{
		pc.StatusNew:    {pc.SubstatusPending, pc.SubstatusReceived},
		pc.StatusActive: {pc.SubstatusAccepted},
		pc.StatusClosed: {pc.SubstatusWon, pc.SubstatusLost, pc.SubstatusDeclined, pc.SubstatusExpired},
	}
	next = map[string][]string{
		pc.StatusNew:    {pc.StatusNew, pc.StatusActive, pc.StatusClosed},
		pc.StatusActive: {pc.StatusActive, pc.StatusClosed},
		pc.StatusClosed: {pc.StatusClosed},
	}
)

func closedErr(r *pc.Referral) *apiError {
	return &apiError{status: http.StatusConflict, code: "invalidRequest",
		msg: fmt.Sprintf("Referral '%s' is %s/%s: a closed referral cannot be edited.", r.ID, r.Status, r.Substatus)}
}

// checkTransition enforces the status table of the Referrals API between a stored referral and its edit.
func checkTransition(old, upd *pc.Referral) error {
	if old.Status == pc.StatusClosed {
		return closedErr(old)
	}
	if _, ok := substatuses[upd.Status]; !ok {
		return invalid("status", "Unknown status '%s': use New, Active or Closed.", upd.Status)
	}
	if !slices.Contains(next[old.Status], upd.Status) {
		return invalid("status", "A referral cannot move from %s to %s.", old.Status, upd.Status)
	}
	if !slices.Contains(substatuses[upd.Status], upd.Substatus) {
		return invalid("substatus", "Substatus '%s' does not fit status %s (allowed: %s).",
			upd.Substatus, upd.Status, strings.Join(substatuses[upd.Status], ", "))
	}
	return nil
}

// commitLocked stores an edited referral as a new version (the old one is left as it was, for readers
// encoding it outside the lock) and returns it, for encoding only (exported methods clone it for their
// callers), and its change time; the caller sends the webhook. Callers hold e.mu and release it; upd may
// share nested values with stored versions (never changed in place), nothing with a caller's values.
func (e *Emulator) commitLocked(old *pc.Referral, upd pc.Referral) (pc.Referral, string) {
	now := e.nextTime()
	if upd.Status == pc.StatusActive && upd.AcceptedDateTime == nil {
		upd.AcceptedDateTime = &now
	}
	if upd.Status == pc.StatusClosed && old.Status != pc.StatusClosed {
		upd.ClosedDateTime = &now
	}
	upd.UpdatedDateTime = now
	upd.ETag = newETag()
	e.indexExtRef(old.ExternalReferenceID, upd.ExternalReferenceID)
	e.referrals[old.ID] = &upd
	return upd, now
}

// indexExtRef moves one referral in the externalReferenceId index from was to is ("" = none). Callers hold e.mu.
func (e *Emulator) indexExtRef(was, is string) {
	if was == is {
		return
	}
	if was != "" {
		e.linked--
		if e.extRefs[was]--; e.extRefs[was] <= 0 {
			delete(e.extRefs, was)
		}
	}
	if is != "" {
		e.linked++
		e.extRefs[is]++
	}
}

// patchablePaths are the JSON Patch paths the Referrals API accepts; the bool says whether "/-" may be appended.
var patchablePaths = map[string]bool{
	"/campaignId": false,
	"/consent/consentToShareReferralWithMicrosoftSellers": false,
	"/customerProfile/team":                               true,
	"/details/closingDateTime":                            false,
	"/details/currency":                                   false,
	"/details/dealValue":                                  false,
	"/details/notes":                                      false,
	"/details/requirements/solutions":                     true,
	"/externalReferenceId":                                false,
	"/referralProgram":                                    false,
	"/salesStage":                                         false,
	"/status":                                             false,
	"/substatus":                                          false,
	"/statusReason":                                       false,
	"/team":                                               true,
}

func (e *Emulator) patchReferral(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var ops []pc.PatchOp
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ops); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The body must be a JSON Patch array: "+err.Error(), "")
		return
	}
	if len(ops) == 0 {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The JSON Patch document is empty.", "")
		return
	}
	e.mu.Lock()
	var hook func(string)
	if len(e.beforePatch) > 0 {
		hook, e.beforePatch = e.beforePatch[0], e.beforePatch[1:]
	}
	e.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	out, changed, err := e.patch(id, r.Header.Get("If-Match"), ops)
	if err != nil {
		writeErr(w, err)
		return
	}
	e.answer(w, pc.EventReferralUpdated, id, changed, func() {
		w.Header().Set("ETag", out.ETag)
		if strings.Contains(strings.ToLower(r.Header.Get("Prefer")), "return=representation") {
			writeReferral(w, http.StatusOK, out)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// patch applies a partner's JSON Patch; the webhook is the caller's to send (answer), at the change time returned.
func (e *Emulator) patch(id, ifMatch string, ops []pc.PatchOp) (pc.Referral, string, error) {
	for i, op := range ops {
		if op.Op != "replace" && op.Op != "add" {
			return pc.Referral{}, "", invalid(fmt.Sprintf("[%d].op", i), "Operation '%s' is not supported: use replace or add.", op.Op)
		}
		path, appendTo := strings.CutSuffix(op.Path, "/-")
		canAppend, ok := patchablePaths[path]
		if !ok || (appendTo && (!canAppend || op.Op != "add")) {
			return pc.Referral{}, "", invalid(op.Path, "Path '%s' cannot be patched.", op.Path)
		}
	}

	e.mu.Lock()
	stored, ok := e.referrals[id]
	if !ok {
		e.mu.Unlock()
		return pc.Referral{}, "", notFound(id)
	}
	if ifMatch != "" && ifMatch != "*" && ifMatch != stored.ETag {
		e.mu.Unlock()
		return pc.Referral{}, "", &apiError{status: http.StatusPreconditionFailed, code: "preconditionFailed",
			msg: fmt.Sprintf("The eTag %s does not match the current version %s of referral '%s'.", ifMatch, stored.ETag, id)}
	}
	if stored.Status == pc.StatusClosed {
		e.mu.Unlock()
		return pc.Referral{}, "", closedErr(stored)
	}
	upd, err := applyPatch(stored, ops)
	if err == nil {
		err = checkTransition(stored, &upd)
	}
	if err == nil && upd.Substatus == pc.SubstatusExpired {
		err = invalid("substatus", "Only Microsoft expires a referral.")
	}
	if err == nil && visibleToSellers(stored) && !visibleToSellers(&upd) {
		// Once visible to Microsoft sellers a referral stays visible (Microsoft's co-sell connector docs).
		err = invalid("consent.consentToShareReferralWithMicrosoftSellers", "A referral visible to Microsoft sellers cannot be made invisible again.")
	}
	if err == nil {
		err = validateDetails(&upd)
	}
	if err == nil {
		err = validateCoSell(&upd)
	}
	if err != nil {
		e.mu.Unlock()
		return pc.Referral{}, "", err
	}
	out, now := e.commitLocked(stored, upd)
	e.mu.Unlock()
	return out, now, nil
}

func visibleToSellers(r *pc.Referral) bool {
	return r.Consent != nil && r.Consent.ConsentToShareReferralWithMicrosoftSellers != nil && *r.Consent.ConsentToShareReferralWithMicrosoftSellers
}

// applyPatch applies JSON Patch add/replace ops to a copy of r through its JSON form, so the result is typed-checked
// by decoding it back into a Referral.
func applyPatch(r *pc.Referral, ops []pc.PatchOp) (pc.Referral, error) {
	b, _ := json.Marshal(r)
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	for _, op := range ops {
		segs := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		appendTo := segs[len(segs)-1] == "-"
		if appendTo {
			segs = segs[:len(segs)-1]
		}
		parent := doc
		for _, s := range segs[:len(segs)-1] {
			child, ok := parent[s].(map[string]any)
			if !ok {
				child = map[string]any{}
				parent[s] = child
			}
			parent = child
		}
		last := segs[len(segs)-1]
		if appendTo {
			arr, _ := parent[last].([]any)
			parent[last] = append(arr, op.Value)
			continue
		}
		parent[last] = op.Value
	}
	nb, _ := json.Marshal(doc)
	var out pc.Referral
	dec := json.NewDecoder(strings.NewReader(string(nb)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return pc.Referral{}, invalid("", "The patched referral is not valid: %v", err)
	}
	return out, nil
}

// BeforeNextPatch runs f once, when the next PATCH of a referral has been received and before it is
// applied: a test makes a Microsoft seller's edit there to race the partner's patch deterministically.
func (e *Emulator) BeforeNextPatch(f func(referralID string)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.beforePatch = append(e.beforePatch, f)
}
