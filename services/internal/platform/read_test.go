package platform

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

var auditSeq atomic.Int64

// publishAudit stores n decisions for link on the audit stream and returns their stream sequences.
func publishAudit(t *testing.T, b *Bus, link string, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for range n {
		e, err := NewEvent(fmt.Sprintf("decision/%s/%d", link, auditSeq.Add(1)), contracts.TypeDecision, contracts.StageMapper, link,
			contracts.Decision{LinkID: link, Kind: contracts.DecisionCreated})
		if err != nil {
			t.Fatal(err)
		}
		m, err := EncodeMsg(contracts.Subject(contracts.SubjectAudit, link), e)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := b.js.PublishMsg(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// leftBehind lists the consumers on stream that contracts does not name: what a reader failed to delete.
func leftBehind(t *testing.T, b *Bus, stream string) []string {
	t.Helper()
	var out []string
	st, err := b.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(context.Background())
	for n := range names.Name() {
		if _, ok := contracts.ConsumerFor(n); !ok {
			out = append(out, n)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readAll reads stream with opts and returns the sequences fn saw.
func readAll(t *testing.T, b *Bus, stream string, opts ...ReadOption) []uint64 {
	t.Helper()
	var got []uint64
	if err := b.Read(context.Background(), stream, func(m Stored) error {
		got = append(got, m.Seq)
		return nil
	}, opts...); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if left := leftBehind(t, b, stream); len(left) > 0 {
		t.Fatalf("the read left consumers on the server: %v", left)
	}
	return got
}

func TestReadStreamToItsEnd(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StageAuditor, nil)
	if got := readAll(t, b, contracts.StreamAudit); len(got) != 0 {
		t.Fatalf("empty stream read %v", got)
	}
	a := publishAudit(t, b, "link-a", 3)
	bb := publishAudit(t, b, "link-b", 600) // more than the reader buffers at once
	a = append(a, publishAudit(t, b, "link-a", 2)...)
	all := append(append(a[:3:3], bb...), a[3:]...)

	if got := readAll(t, b, contracts.StreamAudit); !slices.Equal(got, all) {
		t.Fatalf("whole stream: read %d messages, want %d in stream order", len(got), len(all))
	}
	onlyA := Subjects(contracts.Subject(contracts.SubjectAudit, "link-a"))
	if got := readAll(t, b, contracts.StreamAudit, onlyA); !slices.Equal(got, a) {
		t.Fatalf("link-a: read %v, want %v", got, a)
	}
	if got := readAll(t, b, contracts.StreamAudit, onlyA, FromSeq(a[2])); !slices.Equal(got, a[2:]) {
		t.Fatalf("link-a from seq %d: read %v, want %v", a[2], got, a[2:])
	}
	if got := readAll(t, b, contracts.StreamAudit, onlyA, Since(time.Now().Add(time.Hour))); len(got) != 0 {
		t.Fatalf("since the future: read %v", got)
	}
	if got := readAll(t, b, contracts.StreamAudit, onlyA, Since(time.Now().Add(-time.Hour))); !slices.Equal(got, a) {
		t.Fatalf("since an hour ago: read %v, want %v", got, a)
	}

	// The end is the last message stored when the read starts: what arrives meanwhile is not waited for.
	var got []uint64
	err := b.Read(context.Background(), contracts.StreamAudit, func(m Stored) error {
		if len(got) == 0 {
			publishAudit(t, b, "link-a", 2)
		}
		got = append(got, m.Seq)
		e, err := m.Event()
		if err != nil || e.Subject() != "link-a" || m.Subject != contracts.Subject(contracts.SubjectAudit, "link-a") ||
			m.Time.IsZero() || m.Header.Get("ce-id") != e.ID() {
			return fmt.Errorf("stored message %+v does not carry its event: %v", m, err)
		}
		return nil
	}, onlyA)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, a) {
		t.Fatalf("read %v while publishing, want the %d stored at the start", got, len(a))
	}
	if left := leftBehind(t, b, contracts.StreamAudit); len(left) > 0 {
		t.Fatalf("consumers left behind: %v", left)
	}
}

func TestReadStreamEndsEarlyAndCleansUp(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StageAuditor, nil)
	seqs := publishAudit(t, b, "link-x", 5)
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tt := range []struct {
		name    string
		ctx     context.Context
		fn      func(n int) error
		wantErr error
		wantN   int
	}{
		{"stop", context.Background(), func(n int) error {
			if n == 2 {
				return ErrStopReading
			}
			return nil
		}, nil, 2},
		{"callback error", context.Background(), func(n int) error {
			if n == 3 {
				return fmt.Errorf("decision 3: %w", boom)
			}
			return nil
		}, boom, 3},
		{"cancelled", ctx, func(n int) error {
			if n == 1 {
				cancel()
			}
			return nil
		}, context.Canceled, 1},
	} {
		n := 0
		err := b.Read(tt.ctx, contracts.StreamAudit, func(Stored) error { n++; return tt.fn(n) })
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.wantErr)
		}
		if n < tt.wantN || tt.name != "cancelled" && n != tt.wantN || n > len(seqs) {
			t.Errorf("%s: %d messages read, want %d", tt.name, n, tt.wantN)
		}
		if left := leftBehind(t, b, contracts.StreamAudit); len(left) > 0 {
			t.Errorf("%s: consumers left behind: %v", tt.name, left)
		}
	}
	if err := b.Read(context.Background(), "NO_SUCH_STREAM", func(Stored) error { return nil }); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("missing stream: err %v, want ErrStreamNotFound", err)
	}
}

func TestReadStreamFollows(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StageAuditor, nil)
	publishAudit(t, b, "old", 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- b.Read(ctx, contracts.StreamAudit, func(m Stored) error {
			got <- m.Subject
			return nil
		}, OnlyNew(), Follow())
	}()
	// The follower's consumer exists once it is reading; what is published after that is delivered.
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		if len(leftBehind(t, b, contracts.StreamAudit)) == 0 {
			return errors.New("no reader consumer yet")
		}
		return nil
	})
	publishAudit(t, b, "new", 2)
	for range 2 {
		select {
		case s := <-got:
			if s != contracts.Subject(contracts.SubjectAudit, "new") {
				t.Fatalf("follower read %s, want only the new messages", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("follower did not deliver a new message")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow ended with %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end on cancel")
	}
	if left := leftBehind(t, b, contracts.StreamAudit); len(left) > 0 {
		t.Fatalf("consumers left behind: %v", left)
	}
}
