// Package sfwriter is the sf-writer stage: it carries out Opportunity commands against Salesforce with
// go-salesforce. Creates are upserts by the Referral Identifier External ID, so a redelivered create can
// never make a second Opportunity; the customer Account is found by the match rule (COSELL_ACCOUNT_MATCH: name +
// billing postal code by default, or by name, or by an external id) or created first. Microsoft Solution child
// records are reconciled when a command carries the list.
//
// Commands are handled in batches: whatever is pending (up to 200) is written with sObject Collections
// writes — one query for the Accounts, then the create of the missing ones and the Opportunities' upsert
// and update together in ONE call (a Composite call, counted as one API call whatever it holds), one
// query, create and delete for the solutions — and each record's result is mapped back to its command:
// the successes are acked, each failure is retried or dead-lettered with its own reason.
// A trickle is the same code with batches of one. A Governor keeps the writer within its API budget.
package sfwriter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/sforg"
)

// Field lengths the writer keeps to, so a long error or audit trail never fails a write.
const (
	syncStatusLength = 255
	auditLength      = 32768
	solutionName     = 80
)

// Writer is the sf-writer stage.
type Writer struct {
	Bus      *platform.Bus
	SF       *sfapi.Client
	Outcomes *outcome.Recorder
	Log      *slog.Logger
	Consume  platform.ConsumeOptions
	// LimitPause is how long to wait before retrying once the daily API allowance is spent.
	LimitPause time.Duration
	// Governor, when set, keeps the writer within its API budget.
	Governor *Governor
	// AfterWrite, when set, is called after the external write and before the outcome is published.
	AfterWrite func(commandID string)
	// Match is how a create's customer finds its Account before one is created.
	Match AccountMatch
	// Org is the org's shape (Learn, at start); writes leave out the optional fields it lacks (CurrencyIsoCode
	// in a single-currency org). When nil, each batch tries to discover it (describe); while Salesforce
	// cannot answer, the batch's commands wait (retried after a second) rather than being written blind.
	Org *sforg.Org

	orgMu sync.Mutex
}

// org returns the org's shape, discovering it on first use (each batch tries again while that fails).
func (w *Writer) org(ctx context.Context) (*sforg.Org, error) {
	w.orgMu.Lock()
	defer w.orgMu.Unlock()
	if w.Org != nil {
		return w.Org, nil
	}
	org, err := sforg.Discover(ctx, w.SF, sf.ObjectOpportunity)
	if err != nil {
		return nil, fmt.Errorf("read the org's shape: %w", err)
	}
	w.Org = org
	return org, nil
}

// writes are the fields the writer names itself, whatever the mapping: the upsert key, the link's status
// and its audit summary on the Opportunity, and the Microsoft Solution records it reconciles.
var writes = []struct {
	object string
	fields []string
}{
	{sf.ObjectOpportunity, []string{sf.FieldReferralIdentifier, sf.FieldSyncStatus, sf.FieldAudit}},
	{sf.ObjectMicrosoftSolution, []string{"Name", "Opportunity__c", "Solution_Id__c"}},
}

// Learn reads the org's shape once, as sf-ingest does: the descriptor calls it while the stage starts, so
// a process is ready (its /readyz, the in-process system's Start) with the shape known. While Salesforce
// answers with a transient failure it tries again; an object or field the writer writes that the org lacks
// stops the start with an error naming each and the fix.
func (w *Writer) Learn(ctx context.Context) error {
	org, err := sforg.Wait(ctx, w.SF, time.Second, w.Log, sf.ObjectOpportunity, sf.ObjectMicrosoftSolution)
	if err != nil {
		return fmt.Errorf("read the org's shape: %w", err)
	}
	for _, wr := range writes {
		if _, _, err := org.Select(ctx, wr.object, wr.fields); err != nil {
			var mf *sforg.MissingFields
			if errors.As(err, &mf) {
				mf.Fix = sforg.FixDeploy // the writer's own fields, not the mapping's
			}
			return err
		}
	}
	w.orgMu.Lock()
	w.Org = org
	w.orgMu.Unlock()
	return nil
}

// BatchConfig is how sf-writer gathers commands into Collections calls.
type BatchConfig struct {
	Linger time.Duration `env:"COSELL_SF_BATCH_LINGER" default:"200ms" help:"the longest a batch of commands waits to fill up to 200 (one Collections call) behind a backlog upstream (commands decided while a stage before sf-writer had records waiting, or from a burst of new referrals: they carry the ce-behind mark) while commands keep arriving at 300/s or more: the latency a backlog's records may gain for fewer API calls (at 650 commands/s a batch holds ~130, one call); live traffic, however fast, is written with what is pending (see COSELL_SF_BATCH_LINGER_RATE); a lone command is written at once, a burst that stops within a 20ms step; 0 = never wait"`
	// LingerRate opts live traffic into the linger: without it (0) only a backlog upstream makes a batch
	// wait, since a rate cannot tell a steady 500 changes/s (whose latency the wait would cost) from a
	// backlog draining at the same pace.
	LingerRate int `env:"COSELL_SF_BATCH_LINGER_RATE" default:"0" help:"commands per second, measured over 20ms steps, at or above which live traffic (no backlog upstream) also waits up to COSELL_SF_BATCH_LINGER to fill a batch: fewer Salesforce calls for that much more latency (e.g. 300); 0 = only a backlog upstream waits"`
}

// Run consumes Opportunity commands in batches (up to 200, one Collections call's worth) until ctx is
// cancelled, then drains.
func (w *Writer) Run(ctx context.Context) error {
	opts := w.Consume
	if opts.Batch <= 0 || opts.Batch > sfapi.MaxCollection {
		opts.Batch = sfapi.MaxCollection
	}
	return w.Bus.ConsumeBatch(ctx, contracts.ConsumerSFWriter, w.HandleBatch, opts)
}

// Handle carries out one Opportunity command.
func (w *Writer) Handle(ctx context.Context, e platform.Event) error {
	return w.HandleBatch(ctx, []platform.Event{e})[0]
}

// item is one command of a batch on its way.
type item struct {
	i   int
	id  string
	cmd contracts.OpportunityCommand
	out contracts.Outcome
	err error
	// accountKey names the Account a create needs ("" = none).
	accountKey string
	// seq is the command's stream sequence (0: unknown, nothing superseded).
	seq uint64
	// superseded says later commands of the link carry everything this update did: nothing is written,
	// and it is reported written.
	superseded bool
}

// HandleBatch carries out a batch of Opportunity commands and returns one result per event.
func (w *Writer) HandleBatch(ctx context.Context, events []platform.Event) []error {
	results := make([]error, len(events))
	var items []*item
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID()
	}
	done, doneErrs := w.Outcomes.DoneAll(ctx, ids)
	seqs := streamSeqs(ctx, len(events))
	var inBatch []later // every command of the batch, for the superseded updates
	for i, e := range events {
		cmd, err := platform.DataAs[contracts.OpportunityCommand](e)
		if err != nil {
			results[i] = platform.Permanent(err)
			continue
		}
		if i < len(seqs) {
			inBatch = append(inBatch, later{seq: seqs[i], id: e.ID(), cmd: cmd})
		}
		if done[i] || doneErrs[i] != nil {
			results[i] = doneErrs[i]
			continue
		}
		it := &item{i: i, id: e.ID(), cmd: cmd, out: contracts.Outcome{CommandID: e.ID(), LinkID: cmd.LinkID,
			System: contracts.Salesforce, Op: cmd.Op, Purpose: cmd.Purpose, ReferralID: cmd.ReferralID, OpportunityID: cmd.OpportunityID,
			Decision: cmd.Decision, CauseVersion: cmd.CauseVersion, AuditSent: cmd.AuditSent}}
		switch {
		case cmd.Op == contracts.OpCreate && cmd.ReferralID == "":
			it.err = platform.Permanent(fmt.Errorf("create for link %s has no referral id to upsert by", cmd.LinkID))
		case cmd.Op == contracts.OpUpdate && cmd.OpportunityID == "":
			it.err = platform.Permanent(fmt.Errorf("update for link %s names no opportunity", cmd.LinkID))
		case cmd.Op != contracts.OpCreate && cmd.Op != contracts.OpUpdate:
			it.err = platform.Permanent(fmt.Errorf("command %s: unknown op %q", e.ID(), cmd.Op))
		default:
			org, oerr := w.org(ctx)
			if oerr != nil {
				it.err = platform.RetryAfter(oerr, time.Second)
				break
			}
			if objectOf(cmd) == sf.ObjectLead {
				break // a Lead's fields are the cosell fields and standard ones every org has
			}
			if it.cmd.Fields, err = org.Fit(ctx, sf.ObjectOpportunity, cmd.Fields); err != nil {
				it.err = platform.Permanent(fmt.Errorf("%s Opportunity for link %s: %w", cmd.Op, cmd.LinkID, err))
			}
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return results
	}
	w.supersede(ctx, items, seqs, inBatch)
	if d := w.Governor.Admit(ctx); d > 0 {
		for _, it := range items {
			results[it.i] = platform.RetryAfter(errors.New("Salesforce API budget at its floor: paused"), d)
		}
		return results
	}
	w.opportunities(ctx, items, w.accounts(ctx, items))
	w.solutions(ctx, items)
	w.contacts(ctx, items)
	// The batch's outcomes leave together (their acks in flight at once), then the written commands are
	// marked done together: two round trips for the batch, not two per command.
	var outs []contracts.Outcome
	var reported []*item
	for _, it := range items {
		out, result := w.settle(it)
		results[it.i] = result
		if out != nil {
			outs = append(outs, *out)
			reported = append(reported, it)
		}
	}
	if err := w.Outcomes.PublishAll(ctx, outs); err != nil {
		for _, it := range reported {
			results[it.i] = err // retried: the write is idempotent and the outcome's copy dropped
		}
	}
	return results
}

// streamSeqs are the stream sequences of a batch of n events (nil when unknown): ConsumeBatch's, or the
// one event's of a Consume handler.
func streamSeqs(ctx context.Context, n int) []uint64 {
	if seqs := platform.StreamSeqs(ctx); len(seqs) == n {
		return seqs
	}
	if seq := platform.StreamSeq(ctx); n == 1 && seq > 0 {
		return []uint64{seq}
	}
	return nil
}

// live returns the items not failed yet that have something to write.
func live(items []*item) []*item {
	var out []*item
	for _, it := range items {
		if it.err == nil && !it.superseded {
			out = append(out, it)
		}
	}
	return out
}

// Account match rules (COSELL_ACCOUNT_MATCH).
const (
	// MatchNamePostal: an Account of the same name and billing postal code, as Microsoft's Dynamics 365
	// connector matches ("company name + postal code, else create").
	MatchNamePostal = "name-postal"
	// MatchName: an Account of the same name, whatever its address.
	MatchName = "name"
	// MatchExternalID: an Account whose External ID field holds the customer's Partner Center id; a
	// customer without that id falls back to name-postal.
	MatchExternalID = "external-id"
)

// AccountMatch is the rule a referral's customer finds its Account by before sf-writer creates one.
type AccountMatch struct {
	Rule   string `env:"COSELL_ACCOUNT_MATCH" default:"name-postal" validate:"oneof=name-postal|name|external-id" help:"how a referral's customer finds its Account before one is created: name-postal (same name and billing postal code, the Dynamics 365 connector's rule), name (same name, the oldest), external-id (the Account field COSELL_ACCOUNT_MATCH_FIELD holds the customer's Partner Center id; a customer without one falls back to name-postal)"`
	Field  string `env:"COSELL_ACCOUNT_MATCH_FIELD" default:"Partner_Center_Customer_Id__c" help:"the Account field (an External ID) an external-id match compares and a created Account gets the customer's id in"`
	IDType string `env:"COSELL_ACCOUNT_MATCH_ID_TYPE" default:"External" validate:"oneof=External|Duns" help:"which of the referral customer's ids (customerProfile.ids profileType) an external-id match uses"`
}

// externalID is the customer id an external-id match compares, or "".
func (m AccountMatch) externalID(a contracts.Account) string {
	if m.Rule != MatchExternalID {
		return ""
	}
	return a.IDs[m.IDType]
}

// accountKey names the Account a create needs under the rule: the customer's external id, else the
// name and (unless the rule is by name) the postal code.
func (m AccountMatch) accountKey(a contracts.Account) string {
	if id := m.externalID(a); id != "" {
		return "id\x00" + id
	}
	if m.Rule == MatchName {
		return strings.ToLower(a.Name)
	}
	return strings.ToLower(a.Name) + "\x00" + strings.ToLower(strings.TrimSpace(a.PostalCode))
}

// accounts finds the Account of every create by the match rule (w.Match), with one query per 100 names or
// ids, and names those it found on their creates; the missing ones it returns, to be created in the same
// call as the Opportunities that name them (opportunities), nil when none is missing.
func (w *Writer) accounts(ctx context.Context, items []*item) *newAccounts {
	need := map[string]contracts.Account{}
	var names, extIDs []string
	seenName := map[string]bool{}
	for _, it := range live(items) {
		a := it.cmd.Account
		if it.cmd.Op != contracts.OpCreate || a == nil || a.Name == "" {
			continue
		}
		it.accountKey = w.Match.accountKey(*a)
		need[it.accountKey] = *a
		if id := w.Match.externalID(*a); id != "" {
			if !seenName["id\x00"+id] {
				seenName["id\x00"+id] = true
				extIDs = append(extIDs, id)
			}
			continue
		}
		if n := strings.ToLower(a.Name); !seenName[n] {
			seenName[n] = true
			names = append(names, a.Name)
		}
	}
	if len(need) == 0 {
		return nil
	}
	found := map[string]string{}
	failAll := func(err error) {
		for _, it := range live(items) {
			if it.accountKey != "" {
				it.err = err
			}
		}
	}
	byKey := map[string]string{} // accountKey -> oldest account id
	for len(extIDs) > 0 {
		chunk := extIDs[:min(len(extIDs), 100)]
		extIDs = extIDs[len(chunk):]
		quoted := make([]string, len(chunk))
		for i, n := range chunk {
			quoted[i] = sfapi.Quote(n)
		}
		rows, err := w.SF.Query(ctx, "SELECT Id, "+w.Match.Field+" FROM Account WHERE "+w.Match.Field+" IN ("+
			strings.Join(quoted, ", ")+") ORDER BY CreatedDate, Id")
		if err != nil {
			failAll(fmt.Errorf("account match by %s: %w", w.Match.Field, err))
			return nil
		}
		for _, r := range rows {
			id, _ := r["Id"].(string)
			if k := "id\x00" + fmt.Sprint(r[w.Match.Field]); byKey[k] == "" {
				byKey[k] = id
			}
		}
	}
	for len(names) > 0 {
		chunk := names[:min(len(names), 100)]
		names = names[len(chunk):]
		quoted := make([]string, len(chunk))
		for i, n := range chunk {
			quoted[i] = sfapi.Quote(n)
		}
		rows, err := w.SF.Query(ctx, "SELECT Id, Name, BillingPostalCode FROM Account WHERE Name IN ("+
			strings.Join(quoted, ", ")+") ORDER BY CreatedDate, Id")
		if err != nil {
			failAll(err)
			return nil
		}
		for _, r := range rows {
			id, _ := r["Id"].(string)
			name, _ := r["Name"].(string)
			postal, _ := r["BillingPostalCode"].(string)
			byName := w.Match
			if byName.Rule == MatchExternalID {
				byName.Rule = MatchNamePostal // a customer without the id
			}
			if k := byName.accountKey(contracts.Account{Name: name, PostalCode: postal}); byKey[k] == "" {
				byKey[k] = id
			}
		}
	}
	missing := &newAccounts{index: map[string]int{}}
	for k := range need {
		if id, ok := byKey[k]; ok {
			found[k] = id
			continue
		}
		a := need[k]
		r := sfapi.Record{sf.AccountName: a.Name}
		if id := w.Match.externalID(a); id != "" {
			r[w.Match.Field] = id // the next referral of this customer finds it by the id
		}
		for f, v := range map[string]string{sf.AccountBillingCity: a.City, sf.AccountBillingPostalCode: a.PostalCode,
			sf.AccountBillingCountry: a.Country, sf.AccountBillingStreet: a.Street, sf.AccountBillingState: a.State} {
			if v != "" {
				r[f] = v
			}
		}
		missing.index[k] = len(missing.records)
		missing.names = append(missing.names, a.Name)
		missing.records = append(missing.records, r)
	}
	for _, it := range live(items) {
		if id := found[it.accountKey]; id != "" {
			it.cmd.Fields = withField(it.cmd.Fields, sf.FieldAccountID, id)
		}
	}
	if len(missing.records) == 0 {
		return nil
	}
	missing.ids = make([]string, len(missing.records))
	missing.errs = make([]error, len(missing.records))
	return missing
}

// newAccounts are the Accounts a batch's creates need that the match found none of. They are created in
// the same call as the Opportunities naming them, a Composite call (one API call whatever it holds), where
// each of those Opportunity records takes its Account's id from the Account create's result by reference.
type newAccounts struct {
	index   map[string]int // accountKey -> record
	names   []string
	records []sfapi.Record
	// ids and errs are each record's result once its create call returned (both empty before).
	ids  []string
	errs []error
	sent bool
}

// accountsRef is the reference id of the Account create in a Composite call.
const accountsRef = "accounts"

// of returns the index of the new Account it's create names, if any.
func (n *newAccounts) of(it *item) (int, bool) {
	if n == nil || it.accountKey == "" {
		return 0, false
	}
	i, ok := n.index[it.accountKey]
	return i, ok
}

// settle records the Account create's results (res, or err for every record when the call or its
// subrequest failed).
func (n *newAccounts) settle(res []sfapi.SaveResult, err error) {
	n.sent = true
	for i := range n.records {
		switch {
		case err != nil:
			n.errs[i] = err
		case res[i].Success:
			n.ids[i] = res[i].ID
		default:
			n.errs[i] = res[i].Err("create Account " + n.names[i])
		}
	}
}

func withField(fields map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(fields)+1)
	for fk, fv := range fields {
		out[fk] = fv
	}
	out[k] = v
	return out
}

// record is what the writer sends for a command: its fields, with the status and audit texts cut to fit.
// A create carries the Referral Identifier as the upsert key instead.
func record(cmd contracts.OpportunityCommand) sfapi.Record {
	r := sfapi.Record{}
	for k, v := range cmd.Fields {
		if cmd.Op == contracts.OpCreate && strings.EqualFold(k, sf.FieldReferralIdentifier) {
			continue
		}
		if s, ok := v.(string); ok {
			switch {
			case strings.EqualFold(k, sf.FieldSyncStatus):
				v = cut(s, syncStatusLength)
			case strings.EqualFold(k, sf.FieldAudit):
				v = cut(s, auditLength)
			}
		}
		r[k] = v
	}
	return r
}

// cut shortens s to n characters, marking the cut with an ellipsis.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// opportunities writes the creates (upserts by Referral Identifier) and updates in rounds in which each
// record appears once, in command order. A round's writes — the Opportunity and Lead upserts and updates,
// each one Collections write per 200 records, and in the first round the create of the batch's new
// Accounts (accts) — go in one API call (sfapi.WriteAll: a Composite call when there are several).
func (w *Writer) opportunities(ctx context.Context, items []*item, accts *newAccounts) {
	pending := live(items)
	for len(pending) > 0 {
		var round, later []*item
		taken := map[string]bool{}
		for _, it := range pending {
			key := "u:" + it.cmd.OpportunityID
			if it.cmd.Op == contracts.OpCreate {
				key = "c:" + strings.ToLower(it.cmd.ReferralID)
			}
			if taken[key] {
				later = append(later, it)
				continue
			}
			taken[key] = true
			round = append(round, it)
		}
		var creates, updates, leadCreates, leadUpdates []*item
		for _, it := range round {
			lead := objectOf(it.cmd) == sf.ObjectLead
			switch {
			case it.cmd.Op == contracts.OpCreate && lead:
				leadCreates = append(leadCreates, it)
			case it.cmd.Op == contracts.OpCreate:
				creates = append(creates, it)
			case lead:
				leadUpdates = append(leadUpdates, it)
			default:
				updates = append(updates, it)
			}
		}
		var writes []recordWrite
		for _, k := range []struct {
			its    []*item
			op     string
			object string
		}{
			{leadCreates, sfapi.CollectionUpsert, sf.ObjectLead}, {leadUpdates, sfapi.CollectionUpdate, sf.ObjectLead},
			{creates, sfapi.CollectionUpsert, sf.ObjectOpportunity}, {updates, sfapi.CollectionUpdate, sf.ObjectOpportunity},
		} {
			for its := k.its; len(its) > 0; {
				chunk := its[:min(len(its), sfapi.MaxCollection)]
				its = its[len(chunk):]
				writes = append(writes, recordWrite{op: k.op, object: k.object, items: chunk})
			}
		}
		w.writeAll(ctx, writes, accts)
		pending = later
	}
}

// recordWrite is one Collections write of a round: a create (an upsert by the referral id: a retried
// create finds its record) or an update by Id, of up to 200 commands' records.
type recordWrite struct {
	op, object string
	items      []*item
}

// writeAll sends a round's writes, with the create of the new Accounts when they are not sent yet, in as
// few calls as the Composite limits allow (one for up to five writes), and maps each record's result back
// to its command. A create naming a new Account takes the Account's id by reference when both are in one
// call; when the Account's create failed, that create fails with the Account's error. Salesforce does not
// run a Collections write one of whose references finds no value (an Account record that failed: 400
// PROCESSING_HALTED for the whole write), so the records of such a write that did not depend on a failed
// Account are sent again in a call of their own: one more call, only when an Account fails.
func (w *Writer) writeAll(ctx context.Context, writes []recordWrite, accts *newAccounts) {
	for len(writes) > 0 {
		withAccounts := accts != nil && !accts.sent
		n := sfapi.MaxCompositeCollections
		if withAccounts {
			n--
		}
		group := writes[:min(len(writes), n)]
		writes = writes[len(group):]
		var cols []sfapi.Collection
		if withAccounts {
			cols = append(cols, sfapi.Collection{Op: sfapi.CollectionCreate, Object: sf.ObjectAccount, Records: accts.records, Ref: accountsRef})
		}
		sent := make([][]*item, len(group))
		for g, wr := range group {
			col := sfapi.Collection{Op: wr.op, Object: wr.object, ExternalIDField: sf.FieldReferralIdentifier}
			if wr.op != sfapi.CollectionUpsert {
				col.ExternalIDField = ""
			}
			for _, it := range wr.items {
				r := record(it.cmd)
				if wr.op == sfapi.CollectionUpsert {
					r[sf.FieldReferralIdentifier] = it.cmd.ReferralID
				} else {
					r[sf.FieldID] = it.cmd.OpportunityID
				}
				if i, ok := accts.of(it); ok {
					switch {
					case withAccounts:
						r[sf.FieldAccountID] = sfapi.Reference(accountsRef, i, "id")
					case accts.errs[i] != nil:
						it.err = accts.errs[i]
						continue
					default:
						r[sf.FieldAccountID] = accts.ids[i]
					}
				}
				col.Records = append(col.Records, r)
				sent[g] = append(sent[g], it)
			}
			cols = append(cols, col)
		}
		results, errs, err := w.SF.WriteAll(ctx, cols)
		if withAccounts {
			if err != nil {
				accts.settle(nil, err)
			} else {
				accts.settle(results[0], errs[0])
			}
			results, errs, cols = results[min(1, len(results)):], errs[min(1, len(errs)):], cols[1:]
		}
		var again []recordWrite
		for g := range cols {
			var res []sfapi.SaveResult
			werr := err
			if err == nil {
				res, werr = results[g], errs[g]
			}
			if werr != nil && withAccounts && sfapi.Code(werr) == "PROCESSING_HALTED" {
				// A reference to a failed Account halted the write: the others go again, with the ids.
				again = append(again, recordWrite{op: group[g].op, object: group[g].object, items: sent[g]})
				continue
			}
			for i, it := range sent[g] {
				if a, ok := accts.of(it); ok && accts.errs[a] != nil {
					it.err = accts.errs[a] // whatever became of its record, it names no Account: retried whole
					continue
				}
				switch {
				case werr != nil:
					it.err = werr
				case !res[i].Success:
					it.err = res[i].Err(fmt.Sprintf("%s %s for link %s", it.cmd.Op, group[g].object, it.cmd.LinkID))
				default:
					it.out.OpportunityID = res[i].ID
					it.out.Created = it.cmd.Op == contracts.OpCreate && res[i].Created
				}
			}
		}
		if len(again) > 0 {
			w.writeAll(ctx, again, accts)
		}
	}
}

// objectOf is the object a command writes: a Lead when it says so or names a Lead's id (the auditor's
// Audit write-back to a Lead), else the Opportunity.
func objectOf(cmd contracts.OpportunityCommand) string {
	if cmd.Object == sf.ObjectLead || sf.IsLeadID(cmd.OpportunityID) {
		return sf.ObjectLead
	}
	return sf.ObjectOpportunity
}

// solutions makes the Microsoft Solution children of every written Opportunity whose command carries the
// list match it: the missing ones are created, the others (and duplicates) deleted.
func (w *Writer) solutions(ctx context.Context, items []*item) {
	byOpp := map[string][]*item{}
	var opps []string
	for _, it := range live(items) {
		if !it.cmd.SetSolutions || it.out.OpportunityID == "" {
			continue
		}
		if _, ok := byOpp[it.out.OpportunityID]; !ok {
			opps = append(opps, it.out.OpportunityID)
		}
		byOpp[it.out.OpportunityID] = append(byOpp[it.out.OpportunityID], it)
	}
	if len(opps) == 0 {
		return
	}
	fail := func(opp string, err error) {
		for _, it := range byOpp[opp] {
			if it.err == nil {
				it.err = err
			}
		}
	}
	existing := map[string][][2]string{} // opp -> [id, solution id]
	for rest := opps; len(rest) > 0; {
		chunk := rest[:min(len(rest), 200)]
		rest = rest[len(chunk):]
		quoted := make([]string, len(chunk))
		for i, id := range chunk {
			quoted[i] = sfapi.Quote(id)
		}
		rows, err := w.SF.Query(ctx, "SELECT Id, Opportunity__c, Solution_Id__c FROM "+sf.ObjectMicrosoftSolution+
			" WHERE Opportunity__c IN ("+strings.Join(quoted, ", ")+") ORDER BY CreatedDate, Id")
		if err != nil {
			for _, o := range chunk {
				fail(o, err)
			}
			continue
		}
		for _, r := range rows {
			o, _ := r["Opportunity__c"].(string)
			id, _ := r["Id"].(string)
			sol, _ := r["Solution_Id__c"].(string)
			existing[o] = append(existing[o], [2]string{id, sol})
		}
	}
	type create struct {
		opp string
		rec sfapi.Record
	}
	var creates []create
	var deletes [][2]string // opp, record id
	for _, o := range opps {
		its := byOpp[o]
		if its[0].err != nil {
			continue
		}
		want := its[len(its)-1].cmd.Solutions // the last command of the batch for this opportunity wins
		wanted := map[string]contracts.Solution{}
		for _, s := range want {
			if s.SolutionID != "" {
				wanted[s.SolutionID] = s
			}
		}
		have := map[string]bool{}
		for _, ex := range existing[o] {
			if _, ok := wanted[ex[1]]; ok && !have[ex[1]] {
				have[ex[1]] = true
				continue
			}
			deletes = append(deletes, [2]string{o, ex[0]})
		}
		for _, s := range want {
			if s.SolutionID == "" || have[s.SolutionID] {
				continue
			}
			have[s.SolutionID] = true
			name := s.Name
			if name == "" {
				name = s.SolutionID
			}
			creates = append(creates, create{opp: o, rec: sfapi.Record{"Opportunity__c": o, "Solution_Id__c": s.SolutionID, "Name": cut(name, solutionName)}})
		}
	}
	for len(creates) > 0 {
		chunk := creates[:min(len(creates), sfapi.MaxCollection)]
		creates = creates[len(chunk):]
		recs := make([]sfapi.Record, len(chunk))
		for i, c := range chunk {
			recs[i] = c.rec
		}
		res, err := w.SF.CreateRecords(ctx, sf.ObjectMicrosoftSolution, recs)
		for i, c := range chunk {
			if err != nil {
				fail(c.opp, err)
			} else if !res[i].Success {
				fail(c.opp, res[i].Err("create Microsoft Solution on "+c.opp))
			}
		}
	}
	w.deleteChildren(ctx, deletes, "delete Microsoft Solution", fail)
}

// contacts makes the contact roles of every written Opportunity whose command carries the customer's
// contacts match them, by e-mail: a Contact with the e-mail (the oldest) is used, or one is created under
// the Opportunity's Account; the missing roles are created and the roles of other Contacts deleted. One
// query each for the roles, the Contacts and the Accounts, and one Collections call per create or delete.
func (w *Writer) contacts(ctx context.Context, items []*item) {
	byOpp := map[string]*item{} // the last command of the batch for an Opportunity wins
	var opps []string
	for _, it := range live(items) {
		if !it.cmd.SetContacts || it.out.OpportunityID == "" {
			continue
		}
		if byOpp[it.out.OpportunityID] == nil {
			opps = append(opps, it.out.OpportunityID)
		}
		byOpp[it.out.OpportunityID] = it
	}
	if len(opps) == 0 {
		return
	}
	fail := func(opp string, err error) {
		for _, it := range live(items) {
			if it.cmd.SetContacts && it.out.OpportunityID == opp {
				it.err = err
			}
		}
	}
	failAll := func(err error) {
		for _, o := range opps {
			fail(o, err)
		}
	}
	in := func(ids []string) string {
		quoted := make([]string, len(ids))
		for i, id := range ids {
			quoted[i] = sfapi.Quote(id)
		}
		return "(" + strings.Join(quoted, ", ") + ")"
	}
	// The roles there are, and the Opportunities' Accounts (new Contacts go under them).
	type role struct{ id, email string }
	have := map[string][]role{}
	account := map[string]string{}
	for rest := opps; len(rest) > 0; {
		chunk := rest[:min(len(rest), 200)]
		rest = rest[len(chunk):]
		rows, err := w.SF.Query(ctx, "SELECT Id, AccountId, (SELECT Id, Contact.Email FROM OpportunityContactRoles ORDER BY CreatedDate, Id) FROM Opportunity WHERE Id IN "+in(chunk))
		if err != nil {
			failAll(fmt.Errorf("read contact roles: %w", err))
			return
		}
		for _, r := range rows {
			o := str(r["Id"])
			account[o] = str(r["AccountId"])
			sub, _ := r["OpportunityContactRoles"].(map[string]any)
			list, _ := sub["records"].([]any)
			for _, x := range list {
				rr, _ := x.(map[string]any)
				c, _ := rr["Contact"].(map[string]any)
				have[o] = append(have[o], role{str(rr["Id"]), strings.ToLower(str(c["Email"]))})
			}
		}
	}
	// What each Opportunity lacks, and the roles it must lose.
	type want struct {
		opp string
		c   contracts.ContactRole
	}
	var missing []want
	var deletes [][2]string // opp, role id
	var emails []string
	seenEmail := map[string]bool{}
	for _, o := range opps {
		wanted := map[string]contracts.ContactRole{}
		for _, c := range byOpp[o].cmd.Contacts {
			if e := strings.ToLower(strings.TrimSpace(c.Email)); e != "" {
				wanted[e] = c
			}
		}
		kept := map[string]bool{}
		for _, r := range have[o] {
			if _, ok := wanted[r.email]; ok && !kept[r.email] {
				kept[r.email] = true
				continue
			}
			deletes = append(deletes, [2]string{o, r.id})
		}
		for _, c := range byOpp[o].cmd.Contacts {
			e := strings.ToLower(strings.TrimSpace(c.Email))
			if e == "" || kept[e] {
				continue
			}
			kept[e] = true
			missing = append(missing, want{o, c})
			if !seenEmail[e] {
				seenEmail[e] = true
				emails = append(emails, e)
			}
		}
	}
	contactOf := map[string]string{} // lower e-mail -> Contact id (the oldest)
	for rest := emails; len(rest) > 0; {
		chunk := rest[:min(len(rest), 100)]
		rest = rest[len(chunk):]
		rows, err := w.SF.Query(ctx, "SELECT Id, Email FROM Contact WHERE Email IN "+in(chunk)+" ORDER BY CreatedDate, Id")
		if err != nil {
			failAll(fmt.Errorf("find contacts: %w", err))
			return
		}
		for _, r := range rows {
			if e := strings.ToLower(str(r["Email"])); contactOf[e] == "" {
				contactOf[e] = str(r["Id"])
			}
		}
	}
	var newContacts []want
	for _, m := range missing {
		if e := strings.ToLower(m.c.Email); contactOf[e] == "" && !seenEmail["new\x00"+e] {
			seenEmail["new\x00"+e] = true
			newContacts = append(newContacts, m)
		}
	}
	for len(newContacts) > 0 {
		chunk := newContacts[:min(len(newContacts), sfapi.MaxCollection)]
		newContacts = newContacts[len(chunk):]
		recs := make([]sfapi.Record, len(chunk))
		for i, m := range chunk {
			last := m.c.LastName
			if last == "" {
				last, _, _ = strings.Cut(m.c.Email, "@") // Salesforce requires a last name
			}
			r := sfapi.Record{"LastName": last, "Email": m.c.Email}
			for f, v := range map[string]string{"FirstName": m.c.FirstName, "Phone": m.c.Phone, "AccountId": account[m.opp]} {
				if v != "" {
					r[f] = v
				}
			}
			recs[i] = r
		}
		res, err := w.SF.CreateRecords(ctx, "Contact", recs)
		for i, m := range chunk {
			switch {
			case err != nil:
				fail(m.opp, err)
			case res[i].Success:
				contactOf[strings.ToLower(m.c.Email)] = res[i].ID
			default:
				fail(m.opp, res[i].Err("create Contact "+m.c.Email))
			}
		}
	}
	var roles []sfapi.Record
	var roleOpp []string
	for _, m := range missing {
		if id := contactOf[strings.ToLower(m.c.Email)]; id != "" {
			roles = append(roles, sfapi.Record{"OpportunityId": m.opp, "ContactId": id})
			roleOpp = append(roleOpp, m.opp)
		}
	}
	for len(roles) > 0 {
		n := min(len(roles), sfapi.MaxCollection)
		chunk, opp := roles[:n], roleOpp[:n]
		roles, roleOpp = roles[n:], roleOpp[n:]
		res, err := w.SF.CreateRecords(ctx, sf.ObjectOpportunityContactRole, chunk)
		for i := range chunk {
			if err != nil {
				fail(opp[i], err)
			} else if !res[i].Success {
				fail(opp[i], res[i].Err("create contact role on "+opp[i]))
			}
		}
	}
	w.deleteChildren(ctx, deletes, "delete contact role", fail)
}

// deleteChildren deletes child records (pairs of the Opportunity and the record id) with one Collections
// call per 200; a failure fails the Opportunity's commands, a record already deleted is no failure.
func (w *Writer) deleteChildren(ctx context.Context, deletes [][2]string, what string, fail func(opp string, err error)) {
	for len(deletes) > 0 {
		chunk := deletes[:min(len(deletes), sfapi.MaxCollection)]
		deletes = deletes[len(chunk):]
		ids := make([]string, len(chunk))
		for i, d := range chunk {
			ids[i] = d[1]
		}
		res, err := w.SF.DeleteRecords(ctx, ids)
		for i, d := range chunk {
			if err != nil {
				fail(d[0], err)
			} else if !res[i].Success && sfapi.Code(res[i].Err("")) != "ENTITY_IS_DELETED" {
				fail(d[0], res[i].Err(what+" "+d[1]))
			}
		}
	}
}

// settle decides the outcome of one command (nil: none to publish) and what the consumer loop should do
// with it once that outcome is published.
func (w *Writer) settle(it *item) (*contracts.Outcome, error) {
	if it.err != nil {
		return w.fail(it.out, it.err)
	}
	if w.AfterWrite != nil {
		w.AfterWrite(it.id)
	}
	it.out.Status = contracts.OutcomeWritten
	it.out.At = time.Now().UTC()
	return &it.out, nil
}

// fail classifies an error once: lock contention and outages are retried (no outcome), a spent daily
// allowance waits, anything else is a permanent failure with a failed outcome, and the command goes to the
// dead-letter stream.
func (w *Writer) fail(out contracts.Outcome, err error) (*contracts.Outcome, error) {
	if !platform.IsPermanent(err) && sfapi.IsTransient(err) {
		if sfapi.Code(err) == "REQUEST_LIMIT_EXCEEDED" {
			pause := w.LimitPause
			if w.Governor != nil && w.Governor.Config.Pause > 0 {
				pause = w.Governor.Config.Pause
			}
			if pause > 0 {
				return nil, platform.RetryAfter(err, pause)
			}
		}
		return nil, err
	}
	f := &contracts.Failure{Code: "error", Message: err.Error(), Permanent: true}
	var api *sfapi.Error
	if errors.As(err, &api) {
		f.Code, f.Message = api.Code, api.Message
	}
	out.Status = contracts.OutcomeFailed
	out.Error = f
	out.At = time.Now().UTC()
	return &out, platform.Permanent(err)
}

// str is a record value as a string ("" for none).
func str(x any) string {
	s, _ := x.(string)
	return s
}
