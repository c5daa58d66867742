package auditor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestTimelineReadsLeaveNoConsumers (issue 13, defect 7): with 2,000 links on the audit stream, reading
// every link's timeline the three ways cosell does — `cosell links get` (Link + Timeline), the status
// page's timeline (GET /api/timeline and /link) and the Audit write-back (WriteSummary) — at once leaves
// the stream's consumer count where it was: each read deletes the consumer it made before it returns, so
// at most one per reader is ever on the server, never one per read.
func TestTimelineReadsLeaveNoConsumers(t *testing.T) {
	t.Parallel()
	const links, readers = 2000, 3
	ctx := context.Background()
	bus := bustest.Start(t, bustest.Config(5, 30*time.Second), contracts.StageAuditor, nil)
	a, err := New(ctx, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	secrets, err := WriteUsers(users, map[string]string{"view": RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	if a.Guard, err = NewGuard(AuthConfig{UsersFile: users}, nil); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	page := httptest.NewServer(mux)
	t.Cleanup(page.Close)

	ids := make([]string, links)
	for i := range ids {
		l := contracts.Link{ID: fmt.Sprintf("pc-%04d", i), Origin: contracts.PartnerCenter, ReferralID: fmt.Sprintf("r-%04d", i),
			OpportunityID: fmt.Sprintf("006%015d", i), State: contracts.LinkLinked}
		ids[i] = l.ID
		b, _ := json.Marshal(l)
		if _, err := a.Links.Put(ctx, contracts.LinkKey(l.ID), b); err != nil {
			t.Fatal(err)
		}
		d := contracts.Decision{LinkID: l.ID, ReferralID: l.ReferralID, OpportunityID: l.OpportunityID, Stage: contracts.StageMapper,
			Kind: contracts.DecisionCreated, Detail: "creating the sf record", Cause: "e-" + l.ID, At: time.Now().UTC()}
		e, err := platform.NewEvent("decision/"+l.ID, contracts.TypeDecision, contracts.StageMapper, l.ID, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Publish(ctx, contracts.Subject(contracts.SubjectAudit, l.ID), e); err != nil {
			t.Fatal(err)
		}
	}
	consumers := func() int {
		info, err := bus.StreamInfo(ctx, contracts.StreamAudit)
		if err != nil {
			t.Error(err)
			return -1
		}
		return info.State.Consumers
	}
	base := consumers()

	// Watch the count while the three readers go through every link.
	var peak atomic.Int64
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			if n := int64(consumers()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	get := func(path string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, page.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+secrets["view"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		if path[:4] == "/api" {
			var rec Record
			if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil || len(rec.Timeline) != 1 {
				return fmt.Errorf("GET %s: %d entries, %v", path, len(rec.Timeline), err)
			}
		}
		return nil
	}
	var g readGroup
	g.Go(func() error { // cosell links get
		for _, id := range ids {
			l, err := a.Link(ctx, id)
			if err != nil {
				return err
			}
			tl, err := a.Timeline(ctx, l.ID)
			if err != nil || len(tl) != 1 {
				return fmt.Errorf("links get %s: %d entries, %v", id, len(tl), err)
			}
		}
		return nil
	})
	g.Go(func() error { // the status page
		for i, id := range ids {
			path := "/api/timeline?id=" + id
			if i%2 == 1 {
				path = "/link?id=" + id
			}
			if err := get(path); err != nil {
				return err
			}
		}
		return nil
	})
	g.Go(func() error { // the Audit write-back
		for _, id := range ids {
			if err := a.WriteSummary(ctx, id); err != nil {
				return fmt.Errorf("write-back of %s: %w", id, err)
			}
		}
		return nil
	})
	err = g.Wait()
	close(stop)
	watch.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n := consumers(); n != base {
		t.Errorf("after %d timeline reads the audit stream has %d consumers, had %d: reads leak consumers", readers*links, n, base)
	}
	if p := int(peak.Load()); p > base+readers {
		t.Errorf("the audit stream peaked at %d consumers during the reads (%d before, %d readers): one per read, not one per reader", p, base, readers)
	}
	info, err := bus.StreamInfo(ctx, contracts.StreamRequested)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != links {
		t.Errorf("%d Audit write-back commands published, want one per link (%d)", info.State.Msgs, links)
	}
}

// readGroup runs readers at once and keeps the first error.
type readGroup struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *readGroup) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	}()
}

func (g *readGroup) Wait() error { g.wg.Wait(); return g.err }
