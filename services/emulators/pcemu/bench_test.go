package pcemu

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// BenchmarkChangeWebhookRead is what one incoming change costs the emulator at a steady rate: a seller's
// edit over /_emulator/ (the bench's driver), its signed webhook to a receiver, and the partner's read of
// the referral. Profile it with -cpuprofile to see where the emulator's CPU per change goes; cpu-µs/op is the
// process's CPU time per change (the receiver's and the client's with it), which a loaded machine changes
// less than ns/op.
func BenchmarkChangeWebhookRead(b *testing.B) {
	const referrals = 200
	var received atomic.Int64
	want := int64(referrals + b.N)
	all := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if received.Add(1) == want {
			close(all)
		}
	}))
	b.Cleanup(recv.Close)
	e, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(e)
	e.SetBaseURL(srv.URL)
	b.Cleanup(func() { srv.Close(); e.Close() })
	e.mu.Lock()
	e.reg = &pc.WebhookRegistration{WebhookURL: recv.URL, WebhookEvents: []string{pc.EventReferralCreated, pc.EventReferralUpdated}}
	e.mu.Unlock()
	token := "bench-token"
	e.mu.Lock()
	e.tokens[token] = &accessToken{audience: AudienceReferrals, expires: time.Now().Add(time.Hour)}
	e.mu.Unlock()
	ids := make([]string, referrals)
	for i := range ids {
		r, err := e.SellerCreate(pc.Referral{Name: fmt.Sprintf("bench %d", i)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = r.ID
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	do := func(method, url, body string, auth bool) {
		req, _ := http.NewRequest(method, url, nil)
		if body != "" {
			req, _ = http.NewRequest(method, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			b.Errorf("%s %s: %d", method, url, resp.StatusCode)
		}
	}
	var n atomic.Int64
	b.ResetTimer()
	cpu0 := testkit.ProcessCPU()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			i := n.Add(1)
			id := ids[int(i)%referrals]
			do(http.MethodPatch, srv.URL+"/_emulator/referrals/"+id, fmt.Sprintf(`{"details":{"dealValue":%d}}`, i), false)
			do(http.MethodGet, srv.URL+"/v1.0/engagements/referrals/"+id, "", true)
		}
	})
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d webhooks delivered", received.Load(), want)
	}
	b.StopTimer()
	b.ReportMetric(float64((testkit.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
