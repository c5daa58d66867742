package pcapi

import (
	"context"
	"net/http"
	"net/url"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

const registrationPath = "/webhooks/v1/registration"

// RegisterWebhook registers url for events. Partner Center keeps one URL per event: when a registration exists
// the POST answers 409, and with overwrite the registration is replaced with a PUT (which silently takes events
// away from another receiver, such as Microsoft's Power Automate connector).
func (c *Client) RegisterWebhook(ctx context.Context, webhookURL string, events []string, overwrite bool) (pc.WebhookRegistration, error) {
	in := pc.WebhookRegistration{WebhookURL: webhookURL, WebhookEvents: events}
	reg, err := c.putOrPost(ctx, "webhooks.register", http.MethodPost, in)
	if err != nil && overwrite && IsConflict(err) {
		return c.UpdateWebhook(ctx, in)
	}
	return reg, err
}

// UpdateWebhook overwrites the registration.
func (c *Client) UpdateWebhook(ctx context.Context, reg pc.WebhookRegistration) (pc.WebhookRegistration, error) {
	return c.putOrPost(ctx, "webhooks.update", http.MethodPut, reg)
}

func (c *Client) putOrPost(ctx context.Context, op, method string, in pc.WebhookRegistration) (pc.WebhookRegistration, error) {
	body, _, _, err := c.do(ctx, request{op: op, method: method, url: c.cfg.WebhooksBaseURL + registrationPath, body: in, want: []int{200, 201}})
	if err != nil {
		return pc.WebhookRegistration{}, err
	}
	var out pc.WebhookRegistration
	return out, decode(op, "", body, &out)
}

// GetWebhook reads the registration; IsNotFound(err) when there is none.
func (c *Client) GetWebhook(ctx context.Context) (pc.WebhookRegistration, error) {
	body, _, _, err := c.do(ctx, request{op: "webhooks.get", method: http.MethodGet, url: c.cfg.WebhooksBaseURL + registrationPath, want: []int{200}})
	if err != nil {
		return pc.WebhookRegistration{}, err
	}
	var out pc.WebhookRegistration
	return out, decode("webhooks.get", "", body, &out)
}

// DeleteWebhook removes the registration.
func (c *Client) DeleteWebhook(ctx context.Context) error {
	_, _, _, err := c.do(ctx, request{op: "webhooks.delete", method: http.MethodDelete, url: c.cfg.WebhooksBaseURL + registrationPath, want: []int{200, 204}})
	return err
}

// WebhookEvents lists the event names a registration may subscribe to.
func (c *Client) WebhookEvents(ctx context.Context) ([]string, error) {
	body, _, _, err := c.do(ctx, request{op: "webhooks.events", method: http.MethodGet, url: c.cfg.WebhooksBaseURL + registrationPath + "/events", want: []int{200}})
	if err != nil {
		return nil, err
	}
	var out []string
	return out, decode("webhooks.events", "", body, &out)
}

// SendValidationEvent asks Partner Center to deliver a test-created event and returns its correlation id.
func (c *Client) SendValidationEvent(ctx context.Context) (string, error) {
	body, _, _, err := c.do(ctx, request{op: "webhooks.validation.send", method: http.MethodPost, url: c.cfg.WebhooksBaseURL + registrationPath + "/validationEvents", want: []int{200, 201}})
	if err != nil {
		return "", err
	}
	var out struct {
		CorrelationID string `json:"correlationId"`
	}
	return out.CorrelationID, decode("webhooks.validation.send", "", body, &out)
}

// GetValidationEvent reads the delivery record of a validation event.
func (c *Client) GetValidationEvent(ctx context.Context, correlationID string) (pc.WebhookValidationStatus, error) {
	body, _, _, err := c.do(ctx, request{op: "webhooks.validation.get", method: http.MethodGet,
		url: c.cfg.WebhooksBaseURL + registrationPath + "/validationEvents/" + url.PathEscape(correlationID), want: []int{200}})
	if err != nil {
		return pc.WebhookValidationStatus{}, err
	}
	var out pc.WebhookValidationStatus
	return out, decode("webhooks.validation.get", "", body, &out)
}
