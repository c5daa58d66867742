package pcapi_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// A burst of concurrent calls (pc-ingest reads up to COSELL_PC_READ_CONCURRENCY referrals at once) opens
// its connections once: the next burst finds them kept open instead of dialling (and, to Partner Center,
// handshaking TLS) again for every call beyond net/http's default two idle connections per host.
func TestConcurrentCallsKeepTheirConnections(t *testing.T) {
	t.Parallel()
	const burst = 16
	emu, err := pcemu.New(pcemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Every referral read waits until the whole burst has arrived, so the burst needs burst connections.
	var mu sync.Mutex
	arrived, release := 0, make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path != "/v1.0/engagements/referrals" && r.Header.Get("Authorization") != "" {
			mu.Lock()
			if arrived++; arrived == burst {
				close(release)
			}
			ch := release
			mu.Unlock()
			<-ch
		}
		emu.ServeHTTP(w, r)
	}))
	var opened atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	emu.SetBaseURL(srv.URL)
	t.Cleanup(func() { srv.Close(); emu.Close() })
	c, err := pcapi.New(t.Context(), emutest.PartnerCenterConfig(emu, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := c.CreateReferral(ctx, newReferral("kept", "006K")) // the token exchange and a first connection
	if err != nil {
		t.Fatal(err)
	}
	readBurst := func() {
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() {
				if _, err := c.GetReferral(ctx, r.ID); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	readBurst()
	first := opened.Load()
	if first < burst {
		t.Fatalf("the first burst of %d reads opened %d connections", burst, first)
	}
	mu.Lock()
	arrived, release = 0, make(chan struct{})
	mu.Unlock()
	readBurst()
	if more := opened.Load() - first; more != 0 {
		t.Fatalf("the second burst of %d reads opened %d new connections; want the first burst's kept open (at most %d idle)",
			burst, more, pcapi.MaxIdleConnections)
	}
}
