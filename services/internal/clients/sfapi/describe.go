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
}

// Describe reads an object's describe (GET /sobjects/{object}/describe).
func (c *Client) Describe(ctx context.Context, object string) (Description, error) {
	var out Description
	if _, err := c.do(ctx, "describe", http.MethodGet, "/sobjects/"+url.PathEscape(object)+"/describe", nil, &out); err != nil {
		return Description{}, withOp(err, "describe "+object)
	}
	return out, nil
}
