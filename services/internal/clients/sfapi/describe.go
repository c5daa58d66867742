package sfapi

import (
	"context"
	"net/http"
	"net/url"
)

// Description is the part of an sObject describe cosell reads: which fields the object has for the
// logged-in user (a field hidden by field-level security is absent, as if not deployed).
type Description struct {
	Name   string             `json:"name"`
	Fields []FieldDescription `json:"fields"`
}

// FieldDescription is one field of a describe.
type FieldDescription struct {
	Name             string   `json:"name"`
	Type             string   `json:"type"`
	RelationshipName string   `json:"relationshipName"`
	ReferenceTo      []string `json:"referenceTo"`
	Createable       bool     `json:"createable"`
	Updateable       bool     `json:"updateable"`
	// Length is a text field's maximum length in characters (0 for other types); Custom says the field
	// ends in __c; a field that is not Nillable and not DefaultedOnCreate must be given on create.
	Length            int             `json:"length"`
	Custom            bool            `json:"custom"`
	Nillable          bool            `json:"nillable"`
	DefaultedOnCreate bool            `json:"defaultedOnCreate"`
	PicklistValues    []PicklistValue `json:"picklistValues"`
}

// PicklistValue is one value of a picklist field's describe (Object Reference, "DescribeSObjectResult":
// PicklistEntry).
type PicklistValue struct {
	Value  string `json:"value"`
	Label  string `json:"label"`
	Active bool   `json:"active"`
}

// Describe reads an object's describe (GET /sobjects/{object}/describe).
func (c *Client) Describe(ctx context.Context, object string) (Description, error) {
	var out Description
	if _, err := c.do(ctx, "describe", http.MethodGet, "/sobjects/"+url.PathEscape(object)+"/describe", nil, &out); err != nil {
		return Description{}, withOp(err, "describe "+object)
	}
	return out, nil
}
