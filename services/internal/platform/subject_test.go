package platform

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
)

// readSubject reads subject after `after` up to upTo and returns the sequences handed and the last one.
func readSubject(t *testing.T, b *Bus, link string, after, upTo uint64) ([]uint64, uint64) {
	t.Helper()
	var got []uint64
	last, err := b.ReadSubject(context.Background(), contracts.StreamAudit, contracts.Subject(contracts.SubjectAudit, link), after, upTo,
		func(m Stored) error {
			e, err := m.Event()
			if err != nil || e.Subject() != link || m.Subject != contracts.Subject(contracts.SubjectAudit, link) || m.Time.IsZero() ||
				m.Header.Get("ce-id") != e.ID() || m.Header.Get("Nats-Sequence") != "" {
				return errorf("direct-get message %d is not the stored message: %+v (%v)", m.Seq, m.Header, err)
			}
			got = append(got, m.Seq)
			return nil
		})
	if err != nil {
		t.Fatalf("ReadSubject(%s, after %d, up to %d): %v", link, after, upTo, err)
	}
	return got, last
}

// TestReadSubject: a literal subject read through batched direct gets hands every message past the
// given sequence in order, across several batches, stops at upTo, and creates no consumer;
// LastSeqOnSubject names the newest message of the subject.
func TestReadSubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StageAuditor, nil)
	subject := func(link string) string { return contracts.Subject(contracts.SubjectAudit, link) }
	if got, last := readSubject(t, b, "link-a", 0, 0); len(got) != 0 || last != 0 {
		t.Fatalf("empty subject: read %v, last %d", got, last)
	}
	if n, err := b.LastSeqOnSubject(ctx, contracts.StreamAudit, subject("link-a")); err != nil || n != 0 {
		t.Fatalf("LastSeqOnSubject of an empty subject: %d, %v", n, err)
	}
	a := publishAudit(t, b, "link-a", 3)
	publishAudit(t, b, "link-b", 10)
	a = append(a, publishAudit(t, b, "link-a", 2*subjectBatch+7)...) // three batches
	publishAudit(t, b, "link-b", 1)

	if got, last := readSubject(t, b, "link-a", 0, 0); !slices.Equal(got, a) || last != a[len(a)-1] {
		t.Fatalf("whole subject: read %d messages (last %d), want %d ending at %d", len(got), last, len(a), a[len(a)-1])
	}
	if got, _ := readSubject(t, b, "link-a", a[1], 0); !slices.Equal(got, a[2:]) {
		t.Fatalf("after %d: read %d messages, want %d", a[1], len(got), len(a[2:]))
	}
	if got, last := readSubject(t, b, "link-a", a[0], a[4]); !slices.Equal(got, a[1:5]) || last != a[4] {
		t.Fatalf("after %d up to %d: read %v (last %d), want %v", a[0], a[4], got, last, a[1:5])
	}
	if got, last := readSubject(t, b, "link-a", a[len(a)-1], 0); len(got) != 0 || last != a[len(a)-1] {
		t.Fatalf("after the last message: read %v, last %d", got, last)
	}
	if n, err := b.LastSeqOnSubject(ctx, contracts.StreamAudit, subject("link-a")); err != nil || n != a[len(a)-1] {
		t.Fatalf("LastSeqOnSubject = %d, %v; want %d", n, err, a[len(a)-1])
	}

	// A callback's error ends the read (ErrStopReading without an error); the next read is not confused
	// by the rest of the batch the server had sent.
	var n int
	last, err := b.ReadSubject(ctx, contracts.StreamAudit, subject("link-a"), 0, 0, func(Stored) error {
		if n++; n == 5 {
			return ErrStopReading
		}
		return nil
	})
	if err != nil || last != a[4] {
		t.Fatalf("stopped read: last %d, %v; want %d", last, err, a[4])
	}
	boom := errors.New("boom")
	if _, err := b.ReadSubject(ctx, contracts.StreamAudit, subject("link-a"), 0, 0, func(Stored) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing callback: %v", err)
	}
	if got, _ := readSubject(t, b, "link-b", 0, 0); len(got) != 11 {
		t.Fatalf("link-b: read %d messages, want 11", len(got))
	}
	if left := leftBehind(t, b, contracts.StreamAudit); len(left) > 0 {
		t.Fatalf("direct-get reads left consumers: %v", left)
	}
	info, err := b.StreamInfo(ctx, contracts.StreamAudit)
	if err != nil || info.State.Consumers != 1 { // the auditor's durable
		t.Fatalf("audit stream has %v consumers (%v), want only the auditor's durable", info.State.Consumers, err)
	}
}
