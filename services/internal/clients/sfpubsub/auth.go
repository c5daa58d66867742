package sfpubsub

import (
	"context"

	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
)

// RESTAuth takes the session from cosell's Salesforce REST login, so the Pub/Sub API uses the same
// connected app and user. TenantID overrides the org id read from the access token (Config: COSELL_SF_ORG_ID).
type RESTAuth struct {
	SF       *sfapi.Client
	TenantID string
}

func (a RESTAuth) session(s sfapi.Session) Session {
	tenant := a.TenantID
	if tenant == "" {
		tenant = s.OrgID
	}
	return Session{AccessToken: s.AccessToken, InstanceURL: s.InstanceURL, TenantID: tenant}
}

// Session returns the REST login's current session.
func (a RESTAuth) Session(context.Context) (Session, error) { return a.session(a.SF.Session()), nil }

// Refresh renews the REST login's session.
func (a RESTAuth) Refresh(ctx context.Context) (Session, error) {
	s, err := a.SF.RefreshSession(ctx)
	if err != nil {
		return Session{}, err
	}
	return a.session(s), nil
}
