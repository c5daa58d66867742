package sfwriter

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// readConcurrency bounds the subjects a batch reads at once when it looks for later commands.
const readConcurrency = 8

// An update carries only the fields that changed, and the mapper may publish a newer one while an older is
// still pending. An older command can then reach the writer after the newer was written: put back for a
// retry, redelivered after a crash between the write and the ack, or held by another replica. Written as
// it is, Salesforce would keep the older values, and the change event of that own write is dropped as an
// echo, so nothing would tell the mapper (the CDC chaos run's divergence). So before an update is written,
// whatever a later command on its link's subject carries is taken out of it.

// later is what the commands stored after one on its subject set.
type later struct {
	seq uint64
	id  string
	cmd contracts.OpportunityCommand
}

// supersede removes from every update of items each field, and the solutions or contacts, that a later
// command to the same record on the link's subject carries (seqs: the items' stream sequences, by item.i;
// an item without one is left as it is). An update left with nothing to write is marked superseded: it is
// reported written without a call. Each subject is read once, from the lowest sequence of the batch on
// it, a few subjects at a time; an item whose subject cannot be read fails (transient, retried).
//
// A subject none of whose updates in the batch the stream may have later commands for beyond the batch
// (platform.NothingLater: first deliveries, none to another replica in between, nothing pending behind)
// is not read: its later commands are the batch's own (inBatch). That is the steady path, one command at
// a time, which so costs no read.
func (w *Writer) supersede(ctx context.Context, items []*item, seqs []uint64, inBatch []later) {
	from := map[string]uint64{} // subject -> lowest sequence of the batch on it
	bySubject := map[string][]*item{}
	closed := map[string]bool{} // subject -> all its updates have nothing later beyond the batch
	nothingLater := platform.NothingLater(ctx)
	for _, it := range items {
		if it.err != nil || it.cmd.Op != contracts.OpUpdate || it.i >= len(seqs) || seqs[it.i] == 0 {
			continue
		}
		it.seq = seqs[it.i]
		subj := contracts.Subject(contracts.SubjectOpportunityRequested, it.cmd.LinkID)
		if f, ok := from[subj]; !ok || it.seq < f {
			from[subj] = it.seq
		}
		if _, ok := closed[subj]; !ok {
			closed[subj] = true
		}
		closed[subj] = closed[subj] && it.i < len(nothingLater) && nothingLater[it.i]
		bySubject[subj] = append(bySubject[subj], it)
	}
	if len(from) == 0 {
		return
	}
	found := map[string][]later{}
	for subj := range from {
		if closed[subj] {
			delete(from, subj)
			found[subj] = nil // filled from the batch below
		}
	}
	for _, l := range inBatch {
		subj := contracts.Subject(contracts.SubjectOpportunityRequested, l.cmd.LinkID)
		if ls, ok := found[subj]; ok && closed[subj] {
			found[subj] = append(ls, l)
		}
	}
	var mu sync.Mutex
	failed := map[string]error{}
	sem := make(chan struct{}, readConcurrency)
	var wg sync.WaitGroup
	for subj, after := range from {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var ls []later
			_, err := w.Bus.ReadSubject(ctx, contracts.StreamRequested, subj, after, 0, func(m platform.Stored) error {
				e, err := m.Event()
				if err != nil {
					return nil // poison of its own: it is parked when delivered, and sets nothing
				}
				cmd, err := platform.DataAs[contracts.OpportunityCommand](e)
				if err != nil {
					return nil
				}
				ls = append(ls, later{seq: m.Seq, id: e.ID(), cmd: cmd})
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[subj] = fmt.Errorf("read the commands after %d on %s: %w", after, subj, err)
				return
			}
			found[subj] = ls
		}()
	}
	wg.Wait()
	for subj, its := range bySubject {
		for _, it := range its {
			if err := failed[subj]; err != nil {
				it.err = err
				continue
			}
			w.strip(ctx, it, found[subj])
		}
	}
}

// strip takes out of it what the commands of ls stored after it to the same record carry. A copy of the
// command itself (same id, published again) is no later command.
func (w *Writer) strip(ctx context.Context, it *item, ls []later) {
	newer := map[string]bool{}
	solutions, contacts := false, false
	for _, l := range ls {
		if l.seq <= it.seq || l.id == it.id || l.cmd.Op != contracts.OpUpdate ||
			l.cmd.OpportunityID != it.cmd.OpportunityID || objectOf(l.cmd) != objectOf(it.cmd) {
			continue
		}
		for k := range l.cmd.Fields {
			newer[strings.ToLower(k)] = true
		}
		solutions = solutions || l.cmd.SetSolutions
		contacts = contacts || l.cmd.SetContacts
	}
	var dropped []string
	kept := make(map[string]any, len(it.cmd.Fields))
	for k, v := range it.cmd.Fields {
		if newer[strings.ToLower(k)] {
			dropped = append(dropped, k)
			continue
		}
		kept[k] = v
	}
	if it.cmd.SetSolutions && solutions {
		it.cmd.SetSolutions, it.cmd.Solutions = false, nil
		dropped = append(dropped, "solutions")
	}
	if it.cmd.SetContacts && contacts {
		it.cmd.SetContacts, it.cmd.Contacts = false, nil
		dropped = append(dropped, "contacts")
	}
	if len(dropped) == 0 {
		return
	}
	it.cmd.Fields = kept
	it.superseded = len(kept) == 0 && !it.cmd.SetSolutions && !it.cmd.SetContacts
	platform.Logger(ctx).Info("update partly superseded by a later command of its link", "event_id", it.id,
		"link_id", it.cmd.LinkID, "opportunity_id", it.cmd.OpportunityID, "stream_seq", it.seq,
		"superseded", dropped, "whole", it.superseded)
}
