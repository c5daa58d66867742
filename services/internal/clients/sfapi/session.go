package sfapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Session is the login's current session, as the Pub/Sub API's gRPC metadata needs it.
type Session struct {
	AccessToken string
	InstanceURL string
	// OrgID is the org's 15-character id: Salesforce access tokens begin with it ("00D…!…").
	OrgID string
}

// Session returns the current access token, instance URL and org id of the login.
func (c *Client) Session() Session {
	sf := c.session()
	tok := sf.GetAccessToken()
	org, _, _ := strings.Cut(tok, "!")
	return Session{AccessToken: tok, InstanceURL: sf.GetInstanceUrl(), OrgID: org}
}

// RefreshSession renews an expired session and returns the new one. The client logs in again when a
// call meets INVALID_SESSION_ID, so this makes one cheap call (the version's resource list: one API call),
// and only when the Pub/Sub API has refused the token.
func (c *Client) RefreshSession(ctx context.Context) (Session, error) {
	if _, err := c.do(ctx, "session", http.MethodGet, "", nil, nil); err != nil {
		return Session{}, fmt.Errorf("refresh the Salesforce session: %w", err)
	}
	return c.Session(), nil
}
