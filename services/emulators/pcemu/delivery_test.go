package pcemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestWebhooksInChangeOrderOverKeptConnections: many quick edits of a few referrals reach the receiver
// in the order they were made, per referral, over at most webhookSenders connections (kept alive, not one
// per notification), each signed.
func TestWebhooksInChangeOrderOverKeptConnections(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{} // ResourceUri → ResourceChangeUtcDate in arrival order
	conns := map[string]bool{}
	delivered := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n pc.WebhookNotification
		if err := json.Unmarshal(b, &n); err != nil || r.Header.Get("Authorization") == "" {
			http.Error(w, "bad notification", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got[n.ResourceURI] = append(got[n.ResourceURI], n.ResourceChangeUTCDate)
		conns[r.RemoteAddr] = true
		delivered++
		mu.Unlock()
	}))
	t.Cleanup(recv.Close)
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, e)
	e.mu.Lock()
	e.reg = &pc.WebhookRegistration{WebhookURL: recv.URL, WebhookEvents: []string{pc.EventReferralUpdated}}
	e.mu.Unlock()
	const referrals, edits = 4, 40
	var ids []string
	for i := range referrals {
		r, err := e.SellerCreate(pc.Referral{Name: fmt.Sprintf("order %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range edits {
				v := float64(i + 1)
				if _, err := e.SellerUpdate(id, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testkit.Eventually(t, 30*time.Second, "every notification delivered", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return delivered == referrals*edits, fmt.Sprintf("%d of %d", delivered, referrals*edits)
	})
	mu.Lock()
	defer mu.Unlock()
	for uri, dates := range got {
		for i := 1; i < len(dates); i++ {
			if dates[i] <= dates[i-1] {
				t.Fatalf("%s: notification %d (%s) arrived after a later change (%s)", uri, i, dates[i], dates[i-1])
			}
		}
	}
	if len(conns) > webhookSenders {
		t.Fatalf("%d notifications came over %d connections; want at most %d (kept alive)", delivered, len(conns), webhookSenders)
	}
}
