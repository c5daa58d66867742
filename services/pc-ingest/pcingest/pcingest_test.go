package pcingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
	"github.com/cosell-dev/cosell/services/internal/watermark"
)

// fixture is pc-ingest wired to a real embedded nats-server and the Partner Center emulator over HTTP,
// with the emulator's webhook registered at pc-ingest's endpoint.
type fixture struct {
	in   *Ingest
	emu  *pcemu.Emulator
	bus  *platform.Bus
	ns   *server.Server
	hook string // the webhook endpoint URL
}

// newFixture builds the fixture; run, when set, is what runs for the test's duration (in.Run, in.RunFetcher).
func newFixture(t testing.TB, cfg Config, run func(*Ingest) func(context.Context) error) *fixture {
	t.Helper()
	return newFixtureVia(t, cfg, run, nil)
}

// newFixtureVia is newFixture with pc-ingest's Partner Center calls sent through transport (nil: directly).
func newFixtureVia(t testing.TB, cfg Config, run func(*Ingest) func(context.Context) error, transport http.RoundTripper) *fixture {
	t.Helper()
	ctx := context.Background()
	log := testkit.Log()
	busCfg := bustest.Config(5, 2*time.Second)
	busCfg.DuplicateWindow = 10 * time.Minute
	ns := bustest.Server(t)
	bus := bustest.Bus(t, ns, busCfg, contracts.StagePCIngest, platform.NewMetrics(prometheus.NewRegistry()))
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{WebhookBackoff: 50 * time.Millisecond, Logger: log})
	pcCfg := emutest.PartnerCenterConfig(emu, base)
	if transport != nil {
		pcCfg.HTTPClient = &http.Client{Transport: transport, Timeout: time.Minute}
	}
	client, err := pcapi.New(ctx, pcCfg)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := bus.KV(ctx, contracts.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 10
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Hour
	}
	in := &Ingest{Bus: bus, PC: client, Checkpoints: cps, Config: cfg, Log: log,
		Verifier: emutest.PartnerCenterVerifier(emu, base),
		Consume:  platform.ConsumeOptions{MaxWait: 100 * time.Millisecond, BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}}
	hookSrv := httptest.NewServer(in)
	t.Cleanup(hookSrv.Close)
	f := &fixture{in: in, emu: emu, bus: bus, ns: ns, hook: hookSrv.URL + "/webhooks/partner-center"}
	if _, err := client.RegisterWebhook(ctx, f.hook, []string{pc.EventReferralCreated, pc.EventReferralUpdated,
		pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated, pc.EventTestCreated}, true); err != nil {
		t.Fatal(err)
	}
	if run != nil {
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		f := run(in)
		go func() { done <- f(runCtx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pc-ingest stopped with %v", err)
			}
		})
	}
	return f
}

// count returns how many messages the stream holds on subjects matching filter.
func (f *fixture) count(t testing.TB, stream, filter string) int {
	t.Helper()
	return bustest.Count(t, f.bus, stream, filter)
}

func all(in *Ingest) func(context.Context) error { return in.Run }

func (f *fixture) snapshots(t *testing.T, referralID string) int {
	return f.count(t, contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, referralID))
}

// settled waits until the fetcher has handled every hand-off.
func (f *fixture) settled(t testing.TB) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "fetcher caught up", func() (bool, string) {
		// CaughtUp, not a zero Lag: a hand-off stored a moment ago may not be counted as pending yet.
		ok, err := f.bus.CaughtUp(context.Background(), contracts.ConsumerPCIngestNotified)
		p, ap, _ := f.bus.Lag(context.Background(), contracts.ConsumerPCIngestNotified)
		return err == nil && ok, fmt.Sprintf("pending %d ack-pending %d err %v", p, ap, err)
	})
}

func post(t *testing.T, u string, body []byte, h http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func seller(t *testing.T, emu *pcemu.Emulator, name string) pc.Referral {
	t.Helper()
	v := 1000.0
	r, err := emu.SellerCreate(pc.Referral{Name: name, Details: &pc.Details{DealValue: &v, Currency: "USD"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWebhookPublishesEachVersionOnce: every notification leads to one snapshot of the version it
// announces; repeated and replayed deliveries publish nothing new and cost no Partner Center read.
func TestWebhookPublishesEachVersionOnce(t *testing.T) {
	f := newFixture(t, Config{}, all)
	r := seller(t, f.emu, "Contoso")
	testkit.Eventually(t, 10*time.Second, "snapshot of the new referral", func() (bool, string) {
		n := f.snapshots(t, r.ID)
		return n == 1, fmt.Sprint(n)
	})
	v := 2000.0
	if _, err := f.emu.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "snapshot of the update", func() (bool, string) {
		n := f.snapshots(t, r.ID)
		return n == 2, fmt.Sprint(n)
	})
	f.settled(t)
	gets := f.emu.Counts()["referrals.get"]
	notes := f.count(t, contracts.StreamObserved, contracts.SubjectReferralNotified+".>")

	// Partner Center delivers the same notifications again (a retry after a lost answer, or a replay).
	delivered := f.emu.Delivered()
	if len(delivered) != 2 {
		t.Fatalf("%d deliveries, want 2", len(delivered))
	}
	for _, d := range delivered {
		if code := post(t, f.hook, d.Body, d.Header); code != http.StatusOK {
			t.Fatalf("a genuine delivery sent again got %d, want 200", code)
		}
	}
	f.settled(t)
	if n := f.snapshots(t, r.ID); n != 2 {
		t.Errorf("%d snapshots after repeated deliveries, want 2", n)
	}
	if n := f.count(t, contracts.StreamObserved, contracts.SubjectReferralNotified+".>"); n != notes {
		t.Errorf("hand-offs %d → %d: a repeated delivery must be dropped by the server", notes, n)
	}
	if n := f.emu.Counts()["referrals.get"]; n != gets {
		t.Errorf("referral reads %d → %d for repeated deliveries", gets, n)
	}
}

// TestNotificationWithUnknownFieldsAccepted: Partner Center adds a field and spells AuditUri as AuditUrl; the
// signed delivery is still accepted over HTTP and the referral ingested.
func TestNotificationWithUnknownFieldsAccepted(t *testing.T) {
	f := newFixture(t, Config{}, all)
	audit := "https://api.partnercenter.microsoft.com/audit/1"
	f.emu.SetNotificationShape(pcemu.NotificationShape{Rename: map[string]string{"AuditUri": "AuditUrl"},
		Extra: map[string]any{"PartnerId": "4b9f0000-0000-4000-8000-000000000001", "AuditUrl": audit, "Version": 2}})
	r := seller(t, f.emu, "Fabrikam")
	testkit.Eventually(t, 10*time.Second, "snapshot of the referral", func() (bool, string) {
		n := f.snapshots(t, r.ID)
		return n == 1, fmt.Sprint(n)
	})
	d := f.emu.Delivered()
	if len(d) != 1 || !strings.Contains(string(d[0].Body), `"PartnerId"`) || !strings.Contains(string(d[0].Body), `"AuditUrl"`) ||
		strings.Contains(string(d[0].Body), `"AuditUri"`) {
		t.Fatalf("deliveries: %d %s", len(d), d[0].Body)
	}
	if code := post(t, f.hook, d[0].Body, d[0].Header); code != http.StatusOK {
		t.Errorf("the delivery sent again: %d", code)
	}
}

// TestReplayedOldNotificationIsNotFetched hands the fetcher an old notification outside the server's
// duplicate window (as a replay days later would be): it is dropped without reading Partner Center.
func TestReplayedOldNotificationIsNotFetched(t *testing.T) {
	f := newFixture(t, Config{}, all)
	r := seller(t, f.emu, "Fabrikam")
	v := 3000.0
	upd, err := f.emu.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the latest version published", func() (bool, string) {
		at, ok, err := f.in.lastObserved(context.Background(), r.ID)
		return ok && err == nil && at.Equal(contracts.ReferralVersion(upd).At), fmt.Sprint(at, err)
	})
	f.settled(t)
	published := f.snapshots(t, r.ID)
	gets := f.emu.Counts()["referrals.get"]
	created := contracts.ReferralVersion(r).At
	for _, c := range []struct {
		name  string
		at    time.Time
		fetch bool
	}{
		{"the creation, replayed", created, false},
		{"the latest change, replayed", contracts.ReferralVersion(upd).At, false},
		{"a change newer than any snapshot", contracts.ReferralVersion(upd).At.Add(time.Second), true},
	} {
		e, err := platform.NewEvent("replay/"+c.name, contracts.TypeReferralNotified, contracts.StagePCIngest, r.ID,
			contracts.ReferralNotified{EventName: pc.EventReferralUpdated, ReferralID: r.ID, ChangedAt: c.at})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.in.HandleNotified(context.Background(), e); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		n := f.emu.Counts()["referrals.get"]
		if fetched := n > gets; fetched != c.fetch {
			t.Errorf("%s: fetched = %v, want %v", c.name, fetched, c.fetch)
		}
		gets = n
	}
	if n := f.snapshots(t, r.ID); n != published {
		t.Errorf("%d snapshots, want %d: a re-read of the same version is a duplicate", n, published)
	}
}

// TestForgedOrMalformedDeliveriesAreRefused: nothing that is not a genuine, well-formed Partner Center
// delivery is published, and none costs a Partner Center read.
func TestForgedOrMalformedDeliveriesAreRefused(t *testing.T) {
	f := newFixture(t, Config{MaxBodyBytes: 2048}, all)
	r := seller(t, f.emu, "Tailspin")
	testkit.Eventually(t, 10*time.Second, "first delivery", func() (bool, string) { return len(f.emu.Delivered()) == 1, "" })
	f.settled(t)
	genuine := f.emu.Delivered()[0]
	gets := f.emu.Counts()["referrals.get"]
	notes := f.count(t, contracts.StreamObserved, contracts.SubjectReferralNotified+".>")

	other := seller(t, f.emu, "Other") // a real id, so only the signature can stop the forged body
	forged := bytes.Replace(genuine.Body, []byte(r.ID), []byte(other.ID), 1)
	signed := func(body []byte) http.Header {
		h, err := f.emu.Sign(body)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	with := func(h http.Header, k, v string) http.Header {
		c := h.Clone()
		if v == "" {
			c.Del(k)
		} else {
			c.Set(k, v)
		}
		return c
	}
	u, _ := url.Parse(f.emu.CertURL())
	cases := []struct {
		name   string
		body   []byte
		header http.Header
		want   int
	}{
		{"forged body under a genuine signature", forged, genuine.Header, http.StatusUnauthorized},
		{"no signature", genuine.Body, with(genuine.Header, "Authorization", ""), http.StatusUnauthorized},
		{"signature not base64", genuine.Body, with(genuine.Header, "Authorization", "Signature %%%"), http.StatusUnauthorized},
		{"certificate on an untrusted host", genuine.Body, with(genuine.Header, pc.HeaderCertificateURL, "http://attacker.example"+u.Path), http.StatusUnauthorized},
		{"certificate outside the certificate path", genuine.Body, with(genuine.Header, pc.HeaderCertificateURL, "http://"+u.Host+"/v1.0/engagements/referrals"), http.StatusUnauthorized},
		{"no certificate URL", genuine.Body, with(genuine.Header, pc.HeaderCertificateURL, ""), http.StatusBadRequest},
		{"unsupported algorithm", genuine.Body, with(genuine.Header, pc.HeaderSignatureAlgorithm, "rsa-sha1"), http.StatusBadRequest},
		{"oversized body", append(genuine.Body, bytes.Repeat([]byte(" "), 4096)...), genuine.Header, http.StatusRequestEntityTooLarge},
		{"signed but not JSON", []byte("not json"), signed([]byte("not json")), http.StatusBadRequest},
		{"signed but no event name", []byte(`{"ResourceUri":"x/1","Extra":1}`),
			signed([]byte(`{"ResourceUri":"x/1","Extra":1}`)), http.StatusBadRequest},
		{"signed but no resource", []byte(`{"EventName":"referral-updated"}`), signed([]byte(`{"EventName":"referral-updated"}`)), http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := post(t, f.hook, c.body, c.header); got != c.want {
				t.Errorf("status %d, want %d", got, c.want)
			}
		})
	}
	resp, err := http.Get(f.hook)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET answered %d, want 405", resp.StatusCode)
	}
	// The emulator's own delivery for "Other" is genuine; wait for it, then nothing else may have arrived.
	testkit.Eventually(t, 10*time.Second, "the genuine delivery for the second referral", func() (bool, string) {
		return f.snapshots(t, other.ID) == 1, ""
	})
	f.settled(t)
	if n := f.count(t, contracts.StreamObserved, contracts.SubjectReferralNotified+".>"); n != notes+1 {
		t.Errorf("hand-offs %d → %d, want one more (the genuine delivery only)", notes, n)
	}
	if n := f.emu.Counts()["referrals.get"]; n != gets+1 {
		t.Errorf("referral reads %d → %d, want one more", gets, n)
	}
}

// TestWebhookAnswersWithoutReadingPartnerCenter: the endpoint answers from the durable hand-off, so an
// outage of the Referrals API neither fails the delivery nor loses the change.
func TestWebhookAnswersWithoutReadingPartnerCenter(t *testing.T) {
	f := newFixture(t, Config{}, func(in *Ingest) func(context.Context) error { return in.RunFetcher })
	f.emu.SetFaults(pcemu.Faults{Fail5xx: 3})
	r := seller(t, f.emu, "Litware")
	testkit.Eventually(t, 10*time.Second, "snapshot after the outage", func() (bool, string) {
		return f.snapshots(t, r.ID) == 1, fmt.Sprint(f.emu.Counts())
	})
	c := f.emu.Counts()
	if c["webhooks.failed_attempts"] != 0 || c["webhooks.delivered"] != 1 {
		t.Errorf("the delivery must succeed at once during the outage: %v", c)
	}
	if c["referrals.get"] != 4 {
		t.Errorf("the fetch must have been retried through the outage: %v", c)
	}
}

// TestDroppedWebhookHealedByPoll: a notification Partner Center never delivers is made good by the next poll.
func TestDroppedWebhookHealedByPoll(t *testing.T) {
	f := newFixture(t, Config{PollInterval: 100 * time.Millisecond}, all)
	r := seller(t, f.emu, "Adatum")
	testkit.Eventually(t, 10*time.Second, "snapshot", func() (bool, string) { return f.snapshots(t, r.ID) == 1, "" })
	f.emu.SetFaults(pcemu.Faults{DropWebhooks: 1})
	v := 9000.0
	upd, err := f.emu.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the dropped change, polled", func() (bool, string) {
		return f.snapshots(t, r.ID) == 2, fmt.Sprint(f.emu.Counts())
	})
	if f.emu.Counts()["webhooks.dropped"] != 1 {
		t.Fatalf("counts %v", f.emu.Counts())
	}
	// The poll moves its watermark once its whole listing is published, a moment after the snapshot.
	testkit.Eventually(t, 10*time.Second, "the watermark at the polled change", func() (bool, string) {
		wm, err := watermark.Load(context.Background(), f.in.Checkpoints, contracts.CheckpointKey(contracts.StagePCIngest, "referrals"), "", "")
		return err == nil && wm.At.Equal(contracts.ReferralVersion(upd).At), fmt.Sprintf("watermark %v (%v), want %v", wm, err, contracts.ReferralVersion(upd).At)
	})
}

// TestFirstStartBackfill: a first start reads everything, or only what changed since the configured date.
func TestFirstStartBackfill(t *testing.T) {
	for _, c := range []struct {
		since string
		want  int
	}{{"", 3}, {"2000-01-01T00:00:00Z", 3}, {time.Now().Add(time.Hour).UTC().Format(time.RFC3339), 0}} {
		t.Run("since="+c.since, func(t *testing.T) {
			f := newFixture(t, Config{Since: c.since}, nil)
			for i := range 3 {
				seller(t, f.emu, fmt.Sprintf("Backfill %d", i))
			}
			n, err := f.in.Reconcile(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n != c.want {
				t.Errorf("published %d, want %d", n, c.want)
			}
			if n, _ := f.in.Reconcile(context.Background()); n != 0 {
				t.Errorf("a second poll published %d, want 0", n)
			}
		})
	}
}

// TestRelatedReferralNotifications: a related-referral event is resolved through the engagement to the
// partner's readable referrals; one naming a referral the partner cannot read is acknowledged and dropped.
func TestRelatedReferralNotifications(t *testing.T) {
	f := newFixture(t, Config{}, all)
	v := 100.0
	ours, err := f.emu.SellerCreate(pc.Referral{Name: "Ours", EngagementID: "6f1d3c1e-0000-4000-8000-00000000e001",
		Details: &pc.Details{DealValue: &v, Currency: "USD"}})
	if err != nil {
		t.Fatal(err)
	}
	related, err := f.emu.SellerCreate(pc.Referral{Name: "Microsoft's side", EngagementID: ours.EngagementID,
		Details: &pc.Details{DealValue: &v, Currency: "USD"}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "both published", func() (bool, string) {
		return f.snapshots(t, ours.ID) == 1 && f.snapshots(t, related.ID) == 1, ""
	})
	// Our referral changes, but its own notification is lost; Microsoft's side then changes too.
	f.emu.SetFaults(pcemu.Faults{DropWebhooks: 1})
	v2 := 200.0
	if _, err := f.emu.SellerUpdate(ours.ID, pc.Referral{Details: &pc.Details{DealValue: &v2}}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.NotifyRelated(pc.EventRelatedReferralUpdated, related.ID); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "our referral's change found through the engagement", func() (bool, string) {
		return f.snapshots(t, ours.ID) == 2, fmt.Sprint(f.emu.Counts())
	})
	if err := f.emu.NotifyRelated(pc.EventRelatedReferralCreated, "c0ffee00-0000-4000-8000-000000000000"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "unreadable related referral acknowledged", func() (bool, string) {
		return len(f.emu.Delivered()) == 4, fmt.Sprint(len(f.emu.Delivered()))
	})
	f.settled(t)
	if n := f.count(t, contracts.StreamDeadLetter, ">"); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	if n := f.count(t, contracts.StreamObserved, contracts.SubjectReferralObserved+".>"); n != 3 {
		t.Errorf("%d snapshots, want 3", n)
	}
	if !strings.Contains(fmt.Sprint(f.emu.Counts()), "referrals.list") {
		t.Errorf("the engagement was not listed: %v", f.emu.Counts())
	}
}

// readBarrier holds every referral read until want of them are in flight at once, then lets them all go:
// reads made one at a time never get there.
type readBarrier struct {
	want     int
	mu       sync.Mutex
	inFlight int
	most     int
	open     chan struct{}
}

func (b *readBarrier) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/referrals/") {
		return http.DefaultTransport.RoundTrip(r)
	}
	b.mu.Lock()
	b.inFlight++
	b.most = max(b.most, b.inFlight)
	if b.inFlight >= b.want {
		select {
		case <-b.open:
		default:
			close(b.open)
		}
	}
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.inFlight--; b.mu.Unlock() }()
	select {
	case <-b.open:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestReferralsAreReadConcurrently: with COSELL_PC_READ_CONCURRENCY=4, four notified referrals are read from
// Partner Center at the same time (the barrier lets no read through until four are waiting), and each gets
// its snapshot.
func TestReferralsAreReadConcurrently(t *testing.T) {
	b := &readBarrier{want: 4, open: make(chan struct{})}
	f := newFixtureVia(t, Config{Reads: 4}, func(in *Ingest) func(context.Context) error { return in.RunFetcher }, b)
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, seller(t, f.emu, fmt.Sprint("Concurrent ", i)).ID)
	}
	testkit.Eventually(t, 20*time.Second, "a snapshot of every referral", func() (bool, string) {
		n := 0
		for _, id := range ids {
			if f.snapshots(t, id) > 0 {
				n++
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		return n == len(ids), fmt.Sprintf("%d of %d published; %d reads in flight, at most %d", n, len(ids), b.inFlight, b.most)
	})
}

// TestOneReferralIsReadOneAtATime: the fetcher's handlers take a referral's notifications one after
// another; other referrals' go on meanwhile.
func TestOneReferralIsReadOneAtATime(t *testing.T) {
	var k keyedLock
	ctx := context.Background()
	unlock, err := k.lock(ctx, "r-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := k.lock(ctx, "r-2")
	if err != nil {
		t.Fatalf("another referral waits for r-1: %v", err)
	}
	other()
	waiting, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		u, err := k.lock(waiting, "r-1")
		if err == nil {
			u()
		}
		got <- err
	}()
	cancel()
	if err := <-got; err == nil {
		t.Fatal("a second handler of r-1 got in while the first held it")
	}
	next := make(chan func(), 1)
	go func() {
		u, err := k.lock(ctx, "r-1")
		if err != nil {
			t.Error(err)
		}
		next <- u
	}()
	unlock()
	(<-next)()
	if u, err := k.lock(ctx, "r-1"); err != nil {
		t.Fatal(err)
	} else {
		u()
	}
}

// TestSnapshotsReadBehindABacklogAreMarked: notifications that waited for the fetcher (it was stopped)
// give snapshots marked with how many waited behind each (platform.ExtBehind, from BehindFloor up), so
// sf-writer batches what they cause; the backlog's last ones, and a lone change once it has caught up,
// carry no mark. (Updates: a burst of creates is marked for itself, TestCreateBurst.)
func TestSnapshotsReadBehindABacklogAreMarked(t *testing.T) {
	f := newFixture(t, Config{Reads: 1}, nil)
	fetch := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.in.RunFetcher(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("fetcher stopped with %v", err)
			}
		}
	}
	const n = platform.BehindFloor + 6
	ids := make([]string, n)
	for i := range n {
		ids[i] = seller(t, f.emu, fmt.Sprint("Backlog ", i)).ID
	}
	stop := fetch()
	testkit.Eventually(t, 20*time.Second, "a snapshot of every referral", func() (bool, string) {
		got := f.count(t, contracts.StreamObserved, contracts.SubjectReferralObserved+".>")
		return got == n, fmt.Sprintf("%d of %d", got, n)
	})
	f.settled(t)
	stop() // the fetcher is down: the updates' notifications pile up
	for _, id := range ids {
		v := 2000.0
		if _, err := f.emu.SellerUpdate(id, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "every notification stored", func() (bool, string) {
		got := f.count(t, contracts.StreamObserved, contracts.SubjectReferralNotified+".>")
		return got == 2*n, fmt.Sprintf("%d of %d", got, 2*n)
	})
	t.Cleanup(fetch())
	f.settled(t)
	v := 3000.0
	lone := ids[0]
	if _, err := f.emu.SellerUpdate(lone, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the lone change's snapshot", func() (bool, string) {
		return f.snapshots(t, lone) == 3, fmt.Sprint(f.snapshots(t, lone), " snapshots")
	})

	var marks []uint64
	err := f.bus.Read(context.Background(), contracts.StreamObserved, func(m platform.Stored) error {
		e, err := m.Event()
		if err != nil {
			return err
		}
		if d, err := platform.DataAs[contracts.ReferralObserved](e); err == nil && d.Referral.Details != nil &&
			d.Referral.Details.DealValue != nil && *d.Referral.Details.DealValue == 2000 {
			if b := platform.BehindOf(e); b != 0 {
				marks = append(marks, b)
			}
		}
		return nil
	}, platform.Subjects(contracts.SubjectReferralObserved+".>"))
	if err != nil {
		t.Fatal(err)
	}
	// One handler at a time: the first notification had n-1 behind it, … the (n-BehindFloor)th BehindFloor.
	var want []uint64
	for p := uint64(n - 1); p >= platform.BehindFloor; p-- {
		want = append(want, p)
	}
	if fmt.Sprint(marks) != fmt.Sprint(want) {
		t.Errorf("marks of the backlog's snapshots, in stream order, %v; want %v", marks, want)
	}
	m, err := f.bus.LastMsg(context.Background(), contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, lone))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := m.Event(); err != nil || platform.BehindOf(e) != 0 {
		t.Errorf("the lone change's snapshot is marked %d behind (%v)", platform.BehindOf(e), err)
	}
}
