package sfemu

import (
	"net/http"
	"sort"
	"strings"
)

// saveResult is the result of one record write, as sObject and Collections calls return it.
type saveResult struct {
	ID      string        `json:"id,omitempty"`
	Success bool          `json:"success"`
	Errors  []resultError `json:"errors"`
	Created *bool         `json:"created,omitempty"`
	urls    []string
}

type resultError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

func failed(err *APIError) saveResult {
	fields := err.Fields
	if fields == nil {
		fields = []string{}
	}
	return saveResult{Errors: []resultError{{StatusCode: err.Code, Message: err.Message, Fields: fields}}}
}

const maxCollection = 200

type collectionRequest struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

func readCollection(r *http.Request) (collectionRequest, *APIError) {
	var req collectionRequest
	b, err := readBody(r)
	if err != nil {
		return req, err
	}
	if err := decodeBody(b, &req); err != nil {
		return req, err
	}
	if len(req.Records) > maxCollection {
		return req, badRequest("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than %d records into this call", maxCollection)
	}
	return req, nil
}

// recordType reads attributes.type of a collection record.
func (e *Emulator) recordType(rec map[string]any) (*object, *APIError) {
	attrs, _ := rec["attributes"].(map[string]any)
	name, _ := attrs["type"].(string)
	if name == "" {
		return nil, badRequest("INVALID_TYPE", "Must send a concrete entity type.")
	}
	o := e.st.schema.object(name)
	if o == nil {
		return nil, badRequest("INVALID_TYPE", "sObject type '%s' is not supported.", name)
	}
	return o, nil
}

// runCollection applies one write per record, and rolls all back when allOrNone and any failed.
func (e *Emulator) runCollection(allOrNone bool, n int, write func(i int, opts writeOpts) saveResult, c *call) []saveResult {
	var undo undoLog
	opts := writeOpts{actor: c.userID, undo: &undo}
	// Inside an allOrNone composite request, what this call wrote is undone with the rest.
	defer func() {
		for _, f := range undo {
			c.undo.add(f)
		}
	}()
	results := make([]saveResult, n)
	anyFailed := false
	for i := 0; i < n; i++ {
		results[i] = write(i, opts)
		anyFailed = anyFailed || !results[i].Success
	}
	if allOrNone && anyFailed {
		undo.rollback()
		undo = nil
		for i, r := range results {
			if r.Success {
				results[i] = failed(badRequest("ALL_OR_NONE_OPERATION_ROLLED_BACK",
					"Record rolled back because not all records were valid and the request was using AllOrNone header"))
			}
		}
	}
	return results
}

// coerceAll checks every record before any is written: unknown fields and type errors fail the whole call.
func (e *Emulator) coerceAll(req collectionRequest, create bool, typeOf func(map[string]any) (*object, *APIError)) ([]map[*field]any, []*APIError, *APIError) {
	values := make([]map[*field]any, len(req.Records))
	recErrs := make([]*APIError, len(req.Records))
	for i, rec := range req.Records {
		o, err := typeOf(rec)
		if err != nil {
			recErrs[i] = err
			continue
		}
		v, reqErr, recErr := e.st.coerce(o, rec, create, writeOpts{})
		if reqErr != nil {
			return nil, nil, reqErr
		}
		values[i], recErrs[i] = v, recErr
	}
	return values, recErrs, nil
}

func (e *Emulator) handleCollectionCreate(c *call) (int, any, *APIError) {
	req, err := readCollection(c.r)
	if err != nil {
		return 0, nil, err
	}
	values, recErrs, err := e.coerceAll(req, true, e.recordType)
	if err != nil {
		return 0, nil, err
	}
	results := e.runCollection(req.AllOrNone, len(req.Records), func(i int, opts writeOpts) saveResult {
		if recErrs[i] != nil {
			return failed(recErrs[i])
		}
		if e.lockFault() {
			return failed(lockError(""))
		}
		o, _ := e.recordType(req.Records[i])
		id, err := e.st.create(o, values[i], opts)
		if err != nil {
			return failed(err)
		}
		return saveResult{ID: id, Success: true, Errors: []resultError{}}
	}, c)
	return http.StatusOK, results, nil
}

func (e *Emulator) handleCollectionUpdate(c *call) (int, any, *APIError) {
	req, err := readCollection(c.r)
	if err != nil {
		return 0, nil, err
	}
	values, recErrs, err := e.coerceAll(req, false, e.recordType)
	if err != nil {
		return 0, nil, err
	}
	results := e.runCollection(req.AllOrNone, len(req.Records), func(i int, opts writeOpts) saveResult {
		if recErrs[i] != nil {
			return failed(recErrs[i])
		}
		o, _ := e.recordType(req.Records[i])
		raw, _ := lookupKey(req.Records[i], "Id")
		rawID, _ := raw.(string)
		if rawID == "" {
			return failed(badRequest("MISSING_ARGUMENT", "Id not specified in an update call").withFields("Id"))
		}
		id, err := pathID(o, rawID)
		if err != nil {
			return failed(err)
		}
		if e.lockFault() {
			return failed(lockError(id))
		}
		res := saveResult{ID: id}
		if err := e.st.update(o, id, values[i], opts); err != nil {
			f := failed(err)
			f.ID = id
			return f
		}
		res.Success, res.Errors = true, []resultError{}
		return res
	}, c)
	return http.StatusOK, results, nil
}

func (e *Emulator) handleCollectionUpsert(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[2])
	if err != nil {
		return 0, nil, err
	}
	f, err := externalIDField(o, c.segs[3])
	if err != nil {
		return 0, nil, err
	}
	req, err := readCollection(c.r)
	if err != nil {
		return 0, nil, err
	}
	// Check types up front (without the external id, which decides create or update).
	for _, rec := range req.Records {
		probe := map[string]any{}
		for k, v := range rec {
			probe[k] = v
		}
		if _, reqErr, _ := e.st.coerce(o, probe, true, writeOpts{}); reqErr != nil {
			return 0, nil, reqErr
		}
	}
	results := e.runCollection(req.AllOrNone, len(req.Records), func(i int, opts writeOpts) saveResult {
		rec := req.Records[i]
		raw, _ := lookupKey(rec, f.Name)
		value, _ := raw.(string)
		if value == "" {
			return failed(badRequest("MISSING_ARGUMENT", "%s not specified", f.Name).withFields(f.Name))
		}
		body := map[string]any{}
		for k, v := range rec {
			body[k] = v
		}
		res, status, err := e.upsertOne(o, f, value, body, opts, c.version)
		if err != nil {
			return failed(err)
		}
		if status == http.StatusMultipleChoices {
			return failed(badRequest("DUPLICATE_EXTERNAL_ID",
				"%s: more than one record found for external id field: %s", f.Label, strings.Join(res.urls, ", ")).withFields(f.Name))
		}
		return res
	}, c)
	return http.StatusOK, results, nil
}

func (e *Emulator) handleCollectionDelete(c *call) (int, any, *APIError) {
	q := c.r.URL.Query()
	var ids []string
	for _, s := range strings.Split(q.Get("ids"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			ids = append(ids, s)
		}
	}
	if len(ids) == 0 {
		return 0, nil, badRequest("MISSING_ARGUMENT", "ids parameter is required")
	}
	if len(ids) > maxCollection {
		return 0, nil, badRequest("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than %d records into this call", maxCollection)
	}
	results := e.runCollection(q.Get("allOrNone") == "true", len(ids), func(i int, opts writeOpts) saveResult {
		id, ok := NormalizeID(ids[i])
		if !ok {
			return failed(badRequest("MALFORMED_ID", "malformed id %s", ids[i]))
		}
		o := e.st.schema.byPrefix[id[:3]]
		if o == nil {
			return failed(badRequest("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
		}
		if e.lockFault() {
			return failed(lockError(id))
		}
		if err := e.st.remove(o, id, opts); err != nil {
			f := failed(err)
			f.ID = id
			return f
		}
		return saveResult{ID: id, Success: true, Errors: []resultError{}}
	}, c)
	return http.StatusOK, results, nil
}

func sortedObjectNames(s *schema) []string {
	var names []string
	for _, o := range s.objects {
		names = append(names, o.Name)
	}
	sort.Strings(names)
	return names
}

// describe renders an object's describe result from the schema.
func describe(o *object, version string) map[string]any {
	fields := make([]map[string]any, 0, len(o.Fields))
	for _, f := range o.Fields {
		picklist := []map[string]any{}
		for _, v := range f.Picklist {
			picklist = append(picklist, map[string]any{"value": v, "label": v, "active": true, "defaultValue": v == f.Default})
		}
		var refTo []string
		if f.ReferenceTo == anyObject {
			refTo = []string{"Account", "Opportunity"}
		} else if f.ReferenceTo != "" {
			refTo = []string{f.ReferenceTo}
		}
		if refTo == nil {
			refTo = []string{}
		}
		var relName any
		if f.RelationshipName != "" {
			relName = f.RelationshipName
		}
		fields = append(fields, map[string]any{
			"name": f.Name, "label": f.Label, "type": f.Type, "length": f.Length, "custom": f.Custom,
			"externalId": f.ExternalID, "unique": f.Unique, "idLookup": f.ExternalID || f.Name == "Id",
			"nillable": !f.Required && f.Type != typeBoolean, "createable": f.Createable, "updateable": f.Updateable,
			"defaultedOnCreate": f.Default != nil || f.Name == "Id" || f.Name == "OwnerId" || f.Name == "CurrencyIsoCode",
			"defaultValue":      f.Default, "restrictedPicklist": f.Restricted, "picklistValues": picklist,
			"referenceTo": refTo, "relationshipName": relName, "calculated": false,
			"filterable": true, "sortable": f.Type != typeTextArea, "cascadeDelete": f.CascadeDelete,
		})
	}
	children := []map[string]any{}
	for _, c := range o.children {
		children = append(children, map[string]any{"childSObject": c.Child.Name, "field": c.Field.Name,
			"relationshipName": c.Name, "cascadeDelete": c.CascadeDelete})
	}
	return map[string]any{
		"name": o.Name, "label": o.Label, "labelPlural": o.Plural, "keyPrefix": o.KeyPrefix, "custom": o.Custom,
		"createable": true, "updateable": true, "deletable": true, "queryable": true,
		"fields": fields, "childRelationships": children, "urls": objectURLs(o, version),
	}
}
