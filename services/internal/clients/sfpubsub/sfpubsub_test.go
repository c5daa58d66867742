package sfpubsub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// org is an emulator served over real HTTP (REST) and real gRPC (Pub/Sub API) on 127.0.0.1.
type org struct {
	emu      *sfemu.Emulator
	rest     string // the REST API (the org's My Domain)
	grpcAddr string
}

func newOrg(t *testing.T, opts sfemu.Options) *org {
	t.Helper()
	emu, rest := emutest.SalesforceServer(t, opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = emu.ServePubSub(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return &org{emu: emu, rest: rest, grpcAddr: l.Addr().String()}
}

// login is an Auth doing the OAuth client-credentials flow against the emulator, counting refreshes.
type login struct {
	o         *org
	mu        sync.Mutex
	refreshes int
	tenant    string
}

func (l *login) Session(ctx context.Context) (sfpubsub.Session, error) {
	resp, err := http.PostForm(l.o.rest+"/services/oauth2/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {sfemu.DefaultClientID}, "client_secret": {sfemu.DefaultClientSecret}})
	if err != nil {
		return sfpubsub.Session{}, err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		return sfpubsub.Session{}, fmt.Errorf("login: status %d", resp.StatusCode)
	}
	tenant := l.tenant
	if tenant == "" {
		tenant = l.o.emu.OrgID()
	}
	return sfpubsub.Session{AccessToken: body.AccessToken, InstanceURL: body.InstanceURL, TenantID: tenant}, nil
}

func (l *login) Refresh(ctx context.Context) (sfpubsub.Session, error) {
	l.mu.Lock()
	l.refreshes++
	l.mu.Unlock()
	return l.Session(ctx)
}

func (l *login) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refreshes
}

// rest sends one REST call as cosell's writers do (Sforce-Call-Options: client=...).
func (o *org) call(t *testing.T, client, method, path, body string) string {
	t.Helper()
	l := &login{o: o}
	s, err := l.Session(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, o.rest+"/services/data/v62.0"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	if client != "" {
		req.Header.Set("Sforce-Call-Options", "client="+client)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return string(b)
}

func (o *org) client(t *testing.T, auth sfpubsub.Auth, batch int) *sfpubsub.Client {
	t.Helper()
	c, err := sfpubsub.New(sfpubsub.Config{Endpoint: "http://" + o.grpcAddr, BatchSize: batch, MaxBackoff: 50 * time.Millisecond}, auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// collector runs a subscription in the background and gathers what it delivers.
type collector struct {
	mu      sync.Mutex
	events  []sfpubsub.ChangeEvent
	batches []int
	latest  []byte
	alive   int // keepalives: responses without events
	err     error
	done    chan struct{}
	cancel  context.CancelFunc
}

func subscribe(t *testing.T, c *sfpubsub.Client, topic string, start sfpubsub.Start) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(col.done)
		err := c.Subscribe(ctx, topic, start, func(_ context.Context, b sfpubsub.Batch) error {
			col.mu.Lock()
			defer col.mu.Unlock()
			col.events = append(col.events, b.Events...)
			if len(b.Events) > 0 {
				col.batches = append(col.batches, len(b.Events))
			}
			col.latest = b.LatestID
			if len(b.Events) == 0 {
				col.alive++
			}
			return nil
		})
		col.mu.Lock()
		col.err = err
		col.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-col.done })
	return col
}

func (col *collector) stop() { col.cancel(); <-col.done }

// waitAlive polls until the stream has answered with a keepalive, so it is open.
func (col *collector) waitAlive(t *testing.T) {
	t.Helper()
	testkit.EventuallyTrue(t, 10*time.Second, "a keepalive", func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		return col.alive > 0
	})
}

// waitFor polls until n events arrived (or the deadline passes) and returns them.
func (col *collector) waitFor(t *testing.T, n int) []sfpubsub.ChangeEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		col.mu.Lock()
		got, err := slices.Clone(col.events), col.err
		col.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events, want %d (subscription error: %v)", len(got), n, err)
		}
		select {
		case <-col.done:
			t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func insertAccount(t *testing.T, e *sfemu.Emulator) string {
	t.Helper()
	id, err := e.Insert("Account", map[string]any{"Name": "Contoso"})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestChangeEventsOverGRPC: every kind of write reaches a subscriber as a decoded change event with the
// header Salesforce writes (change type, records, origin, bitmaps as field names, transaction).
func TestChangeEventsOverGRPC(t *testing.T) {
	o := newOrg(t, sfemu.Options{})
	acc := insertAccount(t, o.emu)
	c := o.client(t, &login{o: o}, 100)
	body := o.call(t, "cosell", http.MethodPost, "/sobjects/Opportunity",
		`{"Name":"Deal","StageName":"Prospecting","CloseDate":"2027-01-31","AccountId":"`+acc+`","Amount":100,"Description":"d"}`)
	var res struct{ ID string }
	_ = json.Unmarshal([]byte(body), &res)
	id := res.ID
	col := subscribe(t, c, sfemu.ChannelName("Opportunity"), sfpubsub.Start{Preset: pubsubpb.ReplayPreset_EARLIEST})
	evs := col.waitFor(t, 1)
	create := evs[0]
	h := create.Header
	if h.ChangeType != "CREATE" || h.EntityName != "Opportunity" || !slices.Equal(h.RecordIDs, []string{id}) {
		t.Fatalf("create header: %+v", h)
	}
	if h.Client() != "cosell" || !strings.HasPrefix(h.ChangeOrigin, "com/salesforce/api/rest/62.0") {
		t.Errorf("changeOrigin %q, want the REST API with client=cosell", h.ChangeOrigin)
	}
	if create.Fields["Name"] != "Deal" || create.Fields["Amount"] != 100.0 || h.TransactionKey == "" || h.SequenceNumber != 1 ||
		h.CommitUser != o.emu.IntegrationUserID() || h.CommitTimestamp.IsZero() {
		t.Errorf("create event: %+v %+v", h, create.Fields)
	}
	base := len(evs)
	o.call(t, "", http.MethodPatch, "/sobjects/Opportunity/"+id, `{"Amount":250,"Description":null}`)
	o.call(t, "", http.MethodDelete, "/sobjects/Opportunity/"+id, "")
	if err := o.emu.Undelete("Opportunity", id); err != nil {
		t.Fatal(err)
	}
	evs = col.waitFor(t, base+3)
	upd, del, undel := evs[base], evs[base+1], evs[base+2]
	if upd.Header.ChangeType != "UPDATE" || upd.Fields["Amount"] != 250.0 {
		t.Errorf("update: %+v %v", upd.Header, upd.Fields)
	}
	for _, f := range []string{"Amount", "Description", "LastModifiedDate"} {
		if !slices.Contains(upd.Header.ChangedFields, f) {
			t.Errorf("changedFields %v lacks %s", upd.Header.ChangedFields, f)
		}
	}
	if !slices.Equal(upd.Header.NulledFields, []string{"Description"}) || upd.Header.Client() != "" {
		t.Errorf("nulledFields %v (want [Description]), origin %q (want no client)", upd.Header.NulledFields, upd.Header.ChangeOrigin)
	}
	if _, ok := upd.Fields["Name"]; ok {
		t.Errorf("an update carries only changed fields: %v", upd.Fields)
	}
	if del.Header.ChangeType != "DELETE" || len(del.Fields) != 0 {
		t.Errorf("delete: %+v %v", del.Header, del.Fields)
	}
	if undel.Header.ChangeType != "UNDELETE" || undel.Header.ChangeOrigin != "" || undel.Fields["Name"] != "Deal" {
		t.Errorf("undelete: %+v %v", undel.Header, undel.Fields)
	}
	if n := c.Calls()["GetSchema"]; n != 1 {
		t.Errorf("GetSchema called %d times for one schema id, want 1 (cached)", n)
	}
}

func (col *collector) snapshot() []sfpubsub.ChangeEvent {
	col.mu.Lock()
	defer col.mu.Unlock()
	return slices.Clone(col.events)
}

// raw is a bare Pub/Sub API client with the given metadata, to see the server's answers unfiltered.
func (o *org) raw(t *testing.T) pubsubpb.PubSubClient {
	t.Helper()
	conn, err := grpc.NewClient(o.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pubsubpb.NewPubSubClient(conn)
}

// TestAuthAndRefusals: the metadata is checked on every RPC (auth error code in the trailer), change
// channels cannot be published to, and unknown topics and bad replay ids are refused.
func TestAuthAndRefusals(t *testing.T) {
	o := newOrg(t, sfemu.Options{})
	l := &login{o: o}
	s, err := l.Session(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	api := o.raw(t)
	md := func(tok, inst, tenant string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "accesstoken", tok, "instanceurl", inst, "tenantid", tenant)
	}
	good := md(s.AccessToken, s.InstanceURL, s.TenantID)
	for name, ctx := range map[string]context.Context{
		"no metadata":  context.Background(),
		"bad token":    md("00D000000000001!nope", s.InstanceURL, s.TenantID),
		"other tenant": md(s.AccessToken, s.InstanceURL, "00D000000000002AAA"),
		"bad instance": md(s.AccessToken, "not a url", s.TenantID),
	} {
		var trailer metadata.MD
		_, err := api.GetTopic(ctx, &pubsubpb.TopicRequest{TopicName: "/data/OpportunityChangeEvent"}, grpc.Trailer(&trailer))
		if status.Code(err) != codes.Unauthenticated || sfpubsub.ErrorCode(trailer) != sfpubsub.ErrCodeAuth ||
			!strings.Contains(err.Error(), "rpcId:") {
			t.Errorf("%s: %v, error-code %q", name, err, sfpubsub.ErrorCode(trailer))
		}
	}
	info, err := api.GetTopic(good, &pubsubpb.TopicRequest{TopicName: "/data/OpportunityChangeEvent"})
	if err != nil || info.CanPublish || !info.CanSubscribe || info.SchemaId == "" || info.TenantGuid != o.emu.OrgID() {
		t.Fatalf("GetTopic: %+v %v", info, err)
	}
	sch, err := api.GetSchema(good, &pubsubpb.SchemaRequest{SchemaId: info.SchemaId})
	if err != nil || !strings.Contains(sch.SchemaJson, `"ChangeEventHeader"`) || !strings.Contains(sch.SchemaJson, `"StageName"`) {
		t.Fatalf("GetSchema: %v %v", sch, err)
	}
	if _, err := api.Publish(good, &pubsubpb.PublishRequest{TopicName: "/data/OpportunityChangeEvent",
		Events: []*pubsubpb.ProducerEvent{{Id: "x", SchemaId: info.SchemaId}}}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Publish to a change channel: %v, want PermissionDenied", err)
	}
	if _, err := api.GetTopic(good, &pubsubpb.TopicRequest{TopicName: "/data/NoSuchChangeEvent"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown topic: %v", err)
	}
	c := o.client(t, l, 10)
	err = c.Subscribe(context.Background(), "/data/OpportunityChangeEvent",
		sfpubsub.Start{Preset: pubsubpb.ReplayPreset_CUSTOM, ReplayID: []byte("garbage")}, func(context.Context, sfpubsub.Batch) error { return nil })
	if !errors.Is(err, sfpubsub.ErrReplayInvalid) {
		t.Errorf("corrupt replay id: %v, want ErrReplayInvalid", err)
	}
}

// TestFlowControlAndCollections: a collection update setting the same value on 200 records is one event
// naming them all; the server never sends more than num_requested events.
func TestFlowControlAndCollections(t *testing.T) {
	o := newOrg(t, sfemu.Options{})
	acc := insertAccount(t, o.emu)
	var records []string
	for i := 0; i < 200; i++ {
		records = append(records, fmt.Sprintf(`{"attributes":{"type":"Opportunity"},"Name":"D%d","StageName":"Prospecting","CloseDate":"2027-01-31","AccountId":"%s"}`, i, acc))
	}
	out := o.call(t, "cosell", http.MethodPost, "/composite/sobjects", `{"allOrNone":true,"records":[`+strings.Join(records, ",")+`]}`)
	var results []struct{ ID string }
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 200 {
		t.Fatalf("collection create: %v %s", err, out[:min(len(out), 200)])
	}
	var upd []string
	for _, r := range results {
		upd = append(upd, fmt.Sprintf(`{"attributes":{"type":"Opportunity"},"Id":"%s","StageName":"Qualification"}`, r.ID))
	}
	o.call(t, "cosell", http.MethodPatch, "/composite/sobjects", `{"allOrNone":true,"records":[`+strings.Join(upd, ",")+`]}`)

	c := o.client(t, &login{o: o}, 7)
	col := subscribe(t, c, sfemu.ChannelName("Opportunity"), sfpubsub.Start{Preset: pubsubpb.ReplayPreset_EARLIEST})
	evs := col.waitFor(t, 201)
	last := evs[200].Header
	if last.ChangeType != "UPDATE" || len(last.RecordIDs) != 200 || !slices.Contains(last.ChangedFields, "StageName") {
		t.Fatalf("the collection update: %s with %d record ids, changed %v; want one UPDATE naming 200", last.ChangeType,
			len(last.RecordIDs), last.ChangedFields)
	}
	creates := map[string]bool{}
	for _, e := range evs[:200] {
		if e.Header.ChangeType != "CREATE" || len(e.Header.RecordIDs) != 1 || e.Header.TransactionKey != evs[0].Header.TransactionKey {
			t.Fatalf("create event %+v: want one CREATE per record, all of one transaction", e.Header)
		}
		creates[e.Header.RecordIDs[0]] = true
	}
	if len(creates) != 200 || evs[199].Header.SequenceNumber != 200 {
		t.Errorf("%d distinct creates, last sequence number %d", len(creates), evs[199].Header.SequenceNumber)
	}
	col.mu.Lock()
	batches := slices.Clone(col.batches)
	col.mu.Unlock()
	for _, n := range batches {
		if n > 7 {
			t.Fatalf("a FetchResponse brought %d events with num_requested 7: %v", n, batches)
		}
	}
}

// TestResumeExpireRefreshReset: a subscription resumed from a stored replay id gets exactly the events
// after it; an expired replay id is ErrReplayInvalid; an expired session is refreshed and a reset stream
// reopened without losing or repeating events.
func TestResumeExpireRefreshReset(t *testing.T) {
	o := newOrg(t, sfemu.Options{PubSubKeepAlive: 50 * time.Millisecond})
	ids := []string{}
	for i := 0; i < 3; i++ {
		ids = append(ids, insertAccount(t, o.emu))
	}
	l := &login{o: o}
	c := o.client(t, l, 100)
	topic := sfemu.ChannelName("Account")
	col := subscribe(t, c, topic, sfpubsub.Start{Preset: pubsubpb.ReplayPreset_EARLIEST})
	evs := col.waitFor(t, 3)
	col.stop()
	stored := evs[1].ReplayID // processed up to the second

	col = subscribe(t, c, topic, sfpubsub.Start{Preset: pubsubpb.ReplayPreset_CUSTOM, ReplayID: stored})
	got := col.waitFor(t, 1)
	col.waitAlive(t)
	if got = col.snapshot(); len(got) != 1 || got[0].Header.RecordIDs[0] != ids[2] {
		t.Fatalf("resumed after the second event: got %d events %+v", len(got), got)
	}
	// The session expires mid-stream: the client refreshes it and goes on.
	o.emu.ExpireSessions()
	testkit.EventuallyTrue(t, 10*time.Second, "a session refresh", func() bool { return l.count() > 0 })
	ids = append(ids, insertAccount(t, o.emu))
	col.waitFor(t, 2)
	// The stream is reset: the client reconnects from its position.
	o.emu.ResetStreams()
	ids = append(ids, insertAccount(t, o.emu))
	got = col.waitFor(t, 3)
	var seen []string
	for _, e := range got {
		seen = append(seen, e.Header.RecordIDs...)
	}
	if !slices.Equal(seen, ids[2:]) {
		t.Fatalf("after refresh and reset: %v, want %v (nothing lost or repeated)", seen, ids[2:])
	}
	col.stop()
	o.emu.ExpireEvents()
	err := c.Subscribe(context.Background(), topic, sfpubsub.Start{Preset: pubsubpb.ReplayPreset_CUSTOM, ReplayID: stored},
		func(context.Context, sfpubsub.Batch) error { return nil })
	if !errors.Is(err, sfpubsub.ErrReplayInvalid) {
		t.Fatalf("replay id past retention: %v, want ErrReplayInvalid", err)
	}
}

// TestGapEvents: gap and overflow events come with their change type and no field data.
func TestGapEvents(t *testing.T) {
	o := newOrg(t, sfemu.Options{})
	o.emu.GapNextChanges(1)
	id := insertAccount(t, o.emu)
	if err := o.emu.Overflow("Account"); err != nil {
		t.Fatal(err)
	}
	c := o.client(t, &login{o: o}, 100)
	evs := subscribe(t, c, sfemu.AllChangeEvents, sfpubsub.Start{Preset: pubsubpb.ReplayPreset_EARLIEST}).waitFor(t, 2)
	if h := evs[0].Header; h.ChangeType != "GAP_CREATE" || !h.IsGap() || h.RecordIDs[0] != id || len(evs[0].Fields) != 0 {
		t.Errorf("gap: %+v %v", h, evs[0].Fields)
	}
	if h := evs[1].Header; h.ChangeType != "GAP_OVERFLOW" || h.EntityName != "Account" {
		t.Errorf("overflow: %+v", h)
	}
}

// TestBacklogIsCoalesced: with Coalesce, the full responses of a backlog are handed over together (up to
// about Coalesce events, so one REST read serves them), in order and with nothing lost; the response
// after the backlog, not full, is handed over at once.
func TestBacklogIsCoalesced(t *testing.T) {
	o := newOrg(t, sfemu.Options{})
	acc := insertAccount(t, o.emu)
	for i := range 60 {
		if _, err := o.emu.Insert("Opportunity", map[string]any{"Name": fmt.Sprintf("B%d", i), "StageName": "Prospecting",
			"CloseDate": "2027-01-31", "AccountId": acc}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := sfpubsub.New(sfpubsub.Config{Endpoint: "http://" + o.grpcAddr, BatchSize: 7, Coalesce: 30, MaxBackoff: 50 * time.Millisecond}, &login{o: o}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	col := subscribe(t, c, sfemu.ChannelName("Opportunity"), sfpubsub.Start{Preset: pubsubpb.ReplayPreset_EARLIEST})
	evs := col.waitFor(t, 60)
	for i, e := range evs {
		if want := fmt.Sprintf("B%d", i); e.Fields["Name"] != want {
			t.Fatalf("event %d is %v, want %s: out of order or repeated", i, e.Fields["Name"], want)
		}
	}
	col.mu.Lock()
	batches := slices.Clone(col.batches)
	col.mu.Unlock()
	if slices.Max(batches) <= 7 || slices.Max(batches) > 30+6 {
		t.Fatalf("batches %v: want full responses of 7 handed over together, up to about 30 events", batches)
	}
	// A change after the backlog (one event, not a full response) comes on its own.
	if _, err := o.emu.Insert("Opportunity", map[string]any{"Name": "After", "StageName": "Prospecting", "CloseDate": "2027-01-31", "AccountId": acc}); err != nil {
		t.Fatal(err)
	}
	if evs = col.waitFor(t, 61); evs[60].Fields["Name"] != "After" || len(evs) != 61 {
		t.Fatalf("after the backlog: %d events, last %v", len(evs), evs[len(evs)-1].Fields["Name"])
	}
}

// TestLeadCompoundFields: a Lead's change events carry its Name and Address as compound fields (a nested
// record each, Change Data Capture Developer Guide, "Get Compound Fields in Change Events"): the client
// names their components "Name.FirstName", "Address.City" in the bitmaps and the values alike.
func TestLeadCompoundFields(t *testing.T) {
	o := newOrg(t, sfemu.Options{})
	c := o.client(t, &login{o: o}, 100)
	col := subscribe(t, c, sfemu.ChannelName("Lead"), sfpubsub.Start{Preset: pubsubpb.ReplayPreset_EARLIEST})
	id, err := o.emu.Insert("Lead", map[string]any{"FirstName": "Ada", "LastName": "Lovelace", "Company": "Analytical",
		"Street": "1 Engine Way", "City": "London"})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.emu.Update("Lead", id, map[string]any{"FirstName": "Augusta", "Street": nil, "Status": "Working - Contacted"}); err != nil {
		t.Fatal(err)
	}
	evs := col.waitFor(t, 2)
	create, upd := evs[0], evs[1]
	if create.Header.EntityName != "Lead" || create.Fields["Name.FirstName"] != "Ada" || create.Fields["Name.LastName"] != "Lovelace" ||
		create.Fields["Address.City"] != "London" || create.Fields["Company"] != "Analytical" {
		t.Fatalf("create: %+v %v", create.Header, create.Fields)
	}
	if _, flat := create.Fields["FirstName"]; flat {
		t.Errorf("a compound's component is no top-level field: %v", create.Fields)
	}
	for _, f := range []string{"Name.FirstName", "Address.Street", "Status", "LastModifiedDate"} {
		if !slices.Contains(upd.Header.ChangedFields, f) {
			t.Errorf("changedFields %v lacks %s", upd.Header.ChangedFields, f)
		}
	}
	if !slices.Equal(upd.Header.NulledFields, []string{"Address.Street"}) || upd.Fields["Name.FirstName"] != "Augusta" {
		t.Errorf("update: nulled %v, fields %v", upd.Header.NulledFields, upd.Fields)
	}
	if v, ok := upd.Fields["Address.Street"]; !ok || v != nil {
		t.Errorf("the nulled component: %v", upd.Fields)
	}
	if _, ok := upd.Fields["Name.LastName"]; ok {
		t.Errorf("an update carries only the changed components: %v", upd.Fields)
	}
}
