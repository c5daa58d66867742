package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

// workload acts as Microsoft sellers and Salesforce users at once, and remembers what it made.
type workload struct {
	f   *fleet.Fleet
	rng *rand.Rand
	log io.Writer

	mu       sync.Mutex
	pcOrigin []string        // referrals shared by a Microsoft seller
	sfOrigin []string        // Opportunities a user marked Sync with Partner Center
	poison   []string        // Opportunities Partner Center must refuse
	closed   map[string]bool // referrals the seller closed
	errors   int
}

type referral struct {
	ID                  string `json:"id"`
	Status              string `json:"status"`
	Substatus           string `json:"substatus"`
	ExternalReferenceID string `json:"externalReferenceId"`
	Details             *struct {
		DealValue       *float64 `json:"dealValue"`
		Currency        string   `json:"currency"`
		ClosingDateTime string   `json:"closingDateTime"`
		Requirements    *struct {
			Solutions []struct {
				ID string `json:"id"`
			} `json:"solutions"`
		} `json:"requirements"`
	} `json:"details"`
}

func (w *workload) referrals(ctx context.Context) ([]referral, error) {
	var out []referral
	err := fleet.GetJSON(ctx, w.f.PCURL()+"/_emulator/referrals", &out)
	return out, err
}

func (w *workload) records(ctx context.Context, object string) ([]map[string]any, error) {
	var out struct {
		Records []map[string]any `json:"records"`
	}
	err := fleet.GetJSON(ctx, w.f.SFURL()+"/_emulator/sobjects/"+object, &out)
	return out.Records, err
}

// run performs operations at rate per second for d; it returns how many it performed.
func (w *workload) run(ctx context.Context, d time.Duration, rate float64) (int, error) {
	w.closed = map[string]bool{}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	ops := 0
	// A few records on each side first, so updates have something to change.
	for i := 0; i < 3; i++ {
		if err := w.createReferral(ctx, i); err != nil {
			return ops, err
		}
		if err := w.createOpportunity(ctx, i, false); err != nil {
			return ops, err
		}
		ops += 2
	}
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ops, ctx.Err()
		case <-tick.C:
		}
		ops++
		if err := w.step(ctx, ops); err != nil {
			// An operation refused by an emulator (e.g. a seller edit of a referral closed meanwhile)
			// is part of life; count it, do not stop.
			w.errors++
			fmt.Fprintf(w.log, "chaos: operation %d: %v\n", ops, err)
		}
	}
	return ops, nil
}

func (w *workload) step(ctx context.Context, i int) error {
	switch p := w.rng.Intn(100); {
	case p < 18:
		return w.createReferral(ctx, i)
	case p < 36:
		return w.createOpportunity(ctx, i, false)
	case p < 50:
		return w.sellerEdit(ctx, i)
	case p < 64:
		return w.userEdit(ctx, i)
	case p < 74:
		return w.accept(ctx)
	case p < 79:
		return w.close(ctx)
	case p < 87:
		return w.bothSides(ctx, i)
	case p < 95:
		return w.addSolution(ctx, i)
	default:
		if len(w.poison) < 3 {
			return w.createOpportunity(ctx, i, true)
		}
		return w.userEdit(ctx, i)
	}
}

func (w *workload) pick(ids []string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(ids) == 0 {
		return ""
	}
	return ids[w.rng.Intn(len(ids))]
}

func (w *workload) createReferral(ctx context.Context, i int) error {
	var r referral
	err := fleet.SendJSON(ctx, "POST", w.f.PCURL()+"/_emulator/referrals", map[string]any{
		"name":            fmt.Sprintf("Chaos referral %d", i),
		"customerProfile": map[string]any{"name": fmt.Sprintf("Chaos customer %d", i%7), "address": map[string]any{"city": "Dublin", "postalCode": fmt.Sprintf("D0%d", i%9), "country": "IE"}},
		"consent":         map[string]any{"consentToToShareInfoWithOthers": true, "consentToContact": true},
		"details":         map[string]any{"dealValue": 1000 + i, "currency": "EUR", "closingDateTime": "2027-06-30T00:00:00Z"},
	}, &r)
	if err == nil {
		w.mu.Lock()
		w.pcOrigin = append(w.pcOrigin, r.ID)
		w.mu.Unlock()
	}
	return err
}

func (w *workload) createOpportunity(ctx context.Context, i int, poison bool) error {
	amount := float64(500 + i)
	if poison {
		amount = -5 // Partner Center refuses a negative deal value
	}
	var acc, out struct {
		ID string `json:"id"`
	}
	// A flagged Opportunity needs its customer Account: without one cosell refuses to share it.
	if err := fleet.SendJSON(ctx, "POST", w.f.SFURL()+"/_emulator/sobjects/Account", map[string]any{
		"Name": fmt.Sprintf("Chaos customer %d", i), "BillingCountry": "US", "BillingPostalCode": "98052",
	}, &acc); err != nil {
		return err
	}
	err := fleet.SendJSON(ctx, "POST", w.f.SFURL()+"/_emulator/sobjects/Opportunity", map[string]any{
		"Name": fmt.Sprintf("Chaos opportunity %d", i), "AccountId": acc.ID, "Amount": amount, "CurrencyIsoCode": "USD", "CloseDate": "2027-05-01",
		"StageName": "Qualification", "Sync_with_Partner_Center__c": true,
	}, &out)
	if err == nil {
		w.mu.Lock()
		if poison {
			w.poison = append(w.poison, out.ID)
		} else {
			w.sfOrigin = append(w.sfOrigin, out.ID)
		}
		w.mu.Unlock()
	}
	return err
}

func (w *workload) open(ids []string) string {
	for tries := 0; tries < 5; tries++ {
		id := w.pick(ids)
		w.mu.Lock()
		closed := w.closed[id]
		w.mu.Unlock()
		if id != "" && !closed {
			return id
		}
	}
	return ""
}

// sellerEdit changes the deal value of a referral Microsoft shared.
func (w *workload) sellerEdit(ctx context.Context, i int) error {
	id := w.open(w.pcOrigin)
	if id == "" {
		return nil
	}
	return fleet.SendJSON(ctx, "PATCH", w.f.PCURL()+"/_emulator/referrals/"+id, map[string]any{"details": map[string]any{"dealValue": 20000 + i}}, nil)
}

// userEdit changes the amount and close date of an Opportunity the partner created.
func (w *workload) userEdit(ctx context.Context, i int) error {
	id := w.pick(w.sfOrigin)
	if id == "" {
		return nil
	}
	return fleet.SendJSON(ctx, "PATCH", w.f.SFURL()+"/_emulator/sobjects/Opportunity/"+id, map[string]any{
		"Amount": 3000 + i, "CloseDate": fmt.Sprintf("2027-0%d-1%d", 1+i%9, i%10),
	}, nil)
}

// accept moves an Opportunity made from a referral out of the hold stage.
func (w *workload) accept(ctx context.Context) error {
	opps, err := w.records(ctx, "Opportunity")
	if err != nil {
		return err
	}
	var held []string
	for _, o := range opps {
		if o["StageName"] == "Prospecting" && o["Referral_Identifier__c"] != nil {
			held = append(held, fmt.Sprint(o["Id"]))
		}
	}
	if len(held) == 0 {
		return nil
	}
	id := held[w.rng.Intn(len(held))]
	return fleet.SendJSON(ctx, "PATCH", w.f.SFURL()+"/_emulator/sobjects/Opportunity/"+id, map[string]any{"StageName": "Qualification"}, nil)
}

// close marks a shared referral won or lost as Microsoft would.
func (w *workload) close(ctx context.Context) error {
	id := w.open(w.pcOrigin)
	if id == "" {
		return nil
	}
	sub := []string{"Won", "Lost"}[w.rng.Intn(2)]
	err := fleet.SendJSON(ctx, "POST", w.f.PCURL()+"/_emulator/referrals/"+id+"/close", map[string]any{"substatus": sub}, nil)
	if err == nil {
		w.mu.Lock()
		w.closed[id] = true
		w.mu.Unlock()
	}
	return err
}

// bothSides edits the same pair on both sides at once: the seller the deal value, the user the amount.
func (w *workload) bothSides(ctx context.Context, i int) error {
	opp := w.pick(w.sfOrigin)
	if opp == "" {
		return nil
	}
	refs, err := w.referrals(ctx)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if r.ExternalReferenceID == opp && r.Status != "Closed" {
			var wg sync.WaitGroup
			var e1, e2 error
			wg.Add(2)
			go func() {
				defer wg.Done()
				e1 = fleet.SendJSON(ctx, "PATCH", w.f.PCURL()+"/_emulator/referrals/"+r.ID, map[string]any{"details": map[string]any{"dealValue": 40000 + i}}, nil)
			}()
			go func() {
				defer wg.Done()
				e2 = fleet.SendJSON(ctx, "PATCH", w.f.SFURL()+"/_emulator/sobjects/Opportunity/"+opp, map[string]any{"Amount": 50000 + i}, nil)
			}()
			wg.Wait()
			if e1 != nil {
				return e1
			}
			return e2
		}
	}
	return nil
}

// addSolution attaches a Microsoft Solution to an Opportunity the partner created.
func (w *workload) addSolution(ctx context.Context, i int) error {
	opp := w.pick(w.sfOrigin)
	if opp == "" {
		return nil
	}
	return fleet.SendJSON(ctx, "POST", w.f.SFURL()+"/_emulator/sobjects/Microsoft_Solution__c", map[string]any{
		"Opportunity__c": opp, "Solution_Id__c": fmt.Sprintf("SOL-%d", i%5), "Name": fmt.Sprintf("Solution %d", i%5),
	}, nil)
}
