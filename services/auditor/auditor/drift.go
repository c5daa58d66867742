package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DriftKey is the key in the links bucket that holds the last drift report: `cosell drift` reads both
// systems' APIs (which the auditor does not), and the page shows what it found.
const DriftKey = "drift.last"

// DriftReport is what the last `cosell drift` found, as the status page shows it.
type DriftReport struct {
	At            time.Time      `json:"at"`
	Links         int            `json:"links"`
	Referrals     int            `json:"referrals"`
	Opportunities int            `json:"opportunities"`
	Findings      []DriftFinding `json:"findings"`
	// Fixed is true when the run was `cosell drift --fix` and published what heals the findings.
	Fixed bool `json:"fixed,omitempty"`
}

// DriftFinding is one finding: differs, missing or unlinked.
type DriftFinding struct {
	Kind          string   `json:"kind"`
	LinkID        string   `json:"linkId,omitempty"`
	ReferralID    string   `json:"referralId,omitempty"`
	OpportunityID string   `json:"opportunityId,omitempty"`
	Fields        []string `json:"fields,omitempty"`
	Detail        string   `json:"detail,omitempty"`
}

// SaveDrift stores rep as the last drift report (compare-and-set on the key's revision, so two runs at
// once keep one whole report, the later one).
func (a *Auditor) SaveDrift(ctx context.Context, rep DriftReport) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	for range 5 {
		e, err := a.Links.Get(ctx, DriftKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = a.Links.Create(ctx, DriftKey, b)
		case err == nil:
			_, err = a.Links.Update(ctx, DriftKey, b, e.Revision())
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("save drift report: %w", err)
		}
	}
	return errors.New("save drift report: the key kept changing under us")
}

// LastDrift is the last drift report; nil when `cosell drift` never ran against this NATS.
func (a *Auditor) LastDrift(ctx context.Context) (*DriftReport, error) {
	e, err := a.Links.Get(ctx, DriftKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("drift report: %w", err)
	}
	var rep DriftReport
	if err := json.Unmarshal(e.Value(), &rep); err != nil {
		return nil, fmt.Errorf("drift report: %w", err)
	}
	return &rep, nil
}
