// Package sfpubsub is cosell's client of Salesforce's Pub/Sub API (gRPC, service eventbus.v1.PubSub) for
// Change Data Capture: it subscribes to a change channel with pull flow control (num_requested), fetches
// each writer schema once by schema id (GetSchema) and decodes the Avro payloads into typed change events
// (the ChangeEventHeader, with the changedFields / nulledFields / diffFields bitmaps turned into field
// names, and the values of the fields the event carries). A stream that fails is opened again with
// exponential back-off from the last replay id handled; a refused token is refreshed first
// (sfdc.platform.eventbus.grpc.service.auth.error). An invalid or expired replay id is reported as
// ErrReplayInvalid: only the caller can heal that gap (by REST) and decide where to resume.
//
// Sources: Salesforce's pubsub_api.proto (package pubsubpb), the Pub/Sub API developer guide ("Handle
// Errors", "Event Message Durability", "Flow Control") and the Change Data Capture developer guide
// ("Change Event Header Fields", "Bitmap Fields"), as summarised in shared/reference/salesforce.md.
package sfpubsub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
)

// Error codes of the Pub/Sub API's "error-code" trailer that the client acts on.
const (
	ErrCodeAuth     = "sfdc.platform.eventbus.grpc.service.auth.error"
	ErrCodeReplayID = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
)

// ErrReplayInvalid means the replay id to resume from is malformed or past the 72-hour retention window:
// events may have been missed, and the subscriber must catch up another way before subscribing from LATEST.
var ErrReplayInvalid = errors.New("pub/sub api: replay id invalid or outside the retention window")

// Session is what the gRPC metadata of every call carries.
type Session struct {
	AccessToken, InstanceURL, TenantID string
}

// Auth supplies the session: the REST login's (sfapi.Client).
type Auth interface {
	// Session returns the current session.
	Session(ctx context.Context) (Session, error)
	// Refresh logs in again after the Pub/Sub API refused the token.
	Refresh(ctx context.Context) (Session, error)
}

// Config says where the Pub/Sub API is and how much to ask for at a time.
type Config struct {
	// Endpoint is host:port (TLS), https://host:port (TLS) or http://host:port (plaintext: the emulator).
	Endpoint string `env:"COSELL_SF_PUBSUB_URL" default:"api.pubsub.salesforce.com:7443" help:"the Salesforce Pub/Sub API endpoint: host:port (TLS), or http://host:port for the emulator"`
	// BatchSize is num_requested: how many events may be in flight (1..100).
	BatchSize int `env:"COSELL_SF_PUBSUB_BATCH" default:"100" help:"events requested from the Pub/Sub API at a time (1..100)"`
	// Coalesce bounds the events handed over at once: the responses that arrived while the last batch was
	// handled go to the handler together (one REST read for all of them), and after a response as full
	// as num_requested (a backlog) the next is waited for a moment too, up to Coalesce events. 0 hands
	// over every response alone. A quiet stream's response is handed over at once, whatever the setting.
	Coalesce int `env:"COSELL_SF_PUBSUB_COALESCE" default:"1000" help:"most change events handed over at once (the responses already waiting, and in a backlog the ones that follow a full response), so one REST read serves them; 0 = one response at a time"`
	// MaxBackoff caps the wait between reconnects.
	MaxBackoff time.Duration `env:"COSELL_SF_PUBSUB_MAX_BACKOFF" default:"30s" help:"longest wait between Pub/Sub API reconnects"`
}

// Client is a connection to the Pub/Sub API; safe for concurrent use.
type Client struct {
	cfg  Config
	conn *grpc.ClientConn
	api  pubsubpb.PubSubClient
	auth Auth
	log  *slog.Logger

	mu      sync.Mutex
	session Session
	schemas map[string]*Schema
	calls   map[string]int
}

// New connects (lazily, as gRPC does) to cfg.Endpoint.
func New(cfg Config, auth Auth, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 || cfg.BatchSize > 100 {
		cfg.BatchSize = 100
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	target, creds := cfg.Endpoint, credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	switch {
	case strings.HasPrefix(target, "http://"):
		target, creds = strings.TrimPrefix(target, "http://"), insecure.NewCredentials()
	case strings.HasPrefix(target, "https://"):
		target = strings.TrimPrefix(target, "https://")
	}
	if target == "" {
		return nil, fmt.Errorf("COSELL_SF_PUBSUB_URL: empty endpoint")
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds),
		// Pings on an idle connection, within what servers allow by default (no more often than every 5 min
		// without streams): a Subscribe stream gets the server's keepalive FetchResponses anyway.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("pub/sub api at %s: %w", cfg.Endpoint, err)
	}
	return &Client{cfg: cfg, conn: conn, api: pubsubpb.NewPubSubClient(conn), auth: auth, log: log,
		schemas: map[string]*Schema{}, calls: map[string]int{}}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Calls returns the RPCs made per method (GetSchema, GetTopic, Subscribe).
func (c *Client) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

func (c *Client) count(method string) {
	c.mu.Lock()
	c.calls[method]++
	c.mu.Unlock()
}

// withAuth puts the session into the outgoing metadata.
func (c *Client) withAuth(ctx context.Context) (context.Context, error) {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s.AccessToken == "" {
		var err error
		if s, err = c.auth.Session(ctx); err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.session = s
		c.mu.Unlock()
	}
	return metadata.AppendToOutgoingContext(ctx, "accesstoken", s.AccessToken, "instanceurl", s.InstanceURL,
		"tenantid", s.TenantID), nil
}

func (c *Client) refresh(ctx context.Context) error {
	s, err := c.auth.Refresh(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.session = s
	c.mu.Unlock()
	return nil
}

// ErrorCode returns the Pub/Sub API error code an RPC failed with (its "error-code" trailer, which gRPC
// hands back in the status details' metadata), or "".
func ErrorCode(trailer metadata.MD) string {
	if v := trailer.Get("error-code"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// unary runs an RPC, refreshing the session once if the token is refused.
func (c *Client) unary(ctx context.Context, method string, call func(context.Context, ...grpc.CallOption) error) error {
	for attempt := 0; ; attempt++ {
		actx, err := c.withAuth(ctx)
		if err != nil {
			return err
		}
		c.count(method)
		var trailer metadata.MD
		err = call(actx, grpc.Trailer(&trailer))
		if err == nil {
			return nil
		}
		if ErrorCode(trailer) == ErrCodeAuth && attempt == 0 {
			if rerr := c.refresh(ctx); rerr != nil {
				return fmt.Errorf("pub/sub api %s: %w (and the session refresh failed: %v)", method, err, rerr)
			}
			continue
		}
		return fmt.Errorf("pub/sub api %s: %w", method, err)
	}
}

// Topic describes a channel.
func (c *Client) Topic(ctx context.Context, name string) (*pubsubpb.TopicInfo, error) {
	var out *pubsubpb.TopicInfo
	err := c.unary(ctx, "GetTopic", func(ctx context.Context, opts ...grpc.CallOption) error {
		var err error
		out, err = c.api.GetTopic(ctx, &pubsubpb.TopicRequest{TopicName: name}, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", name, err)
	}
	return out, nil
}

// Schema is a parsed writer schema.
type Schema struct {
	ID     string
	Avro   *avro.RecordSchema
	fields []string // top-level field names by position
	// compounds are the top-level fields holding a nested record: a compound field (a Lead's Name, an
	// Address) whose components the event carries nested.
	compounds map[string]bool
}

// Schema returns the writer schema of id, fetched once and cached.
func (c *Client) Schema(ctx context.Context, id string) (*Schema, error) {
	c.mu.Lock()
	s := c.schemas[id]
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	var info *pubsubpb.SchemaInfo
	err := c.unary(ctx, "GetSchema", func(ctx context.Context, opts ...grpc.CallOption) error {
		var err error
		info, err = c.api.GetSchema(ctx, &pubsubpb.SchemaRequest{SchemaId: id}, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", id, err)
	}
	parsed, err := avro.Parse(info.GetSchemaJson())
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", id, err)
	}
	rec, ok := parsed.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("schema %s: a %s, not a record", id, parsed.Type())
	}
	s = &Schema{ID: id, Avro: rec, compounds: map[string]bool{}}
	for _, f := range rec.Fields() {
		s.fields = append(s.fields, f.Name())
		if compound(f.Type()) != nil && f.Name() != "ChangeEventHeader" {
			s.compounds[f.Name()] = true
		}
	}
	c.mu.Lock()
	c.schemas[id] = s
	c.mu.Unlock()
	return s, nil
}

// Header is the ChangeEventHeader, with the bitmaps decoded into field names (a compound field's
// sub-fields as "Parent.Sub").
type Header struct {
	EntityName      string
	RecordIDs       []string
	ChangeType      string
	ChangeOrigin    string
	TransactionKey  string
	SequenceNumber  int
	CommitTimestamp time.Time
	CommitNumber    int64
	CommitUser      string
	ChangedFields   []string
	NulledFields    []string
	DiffFields      []string
}

// IsGap reports a gap event (GAP_CREATE, ..., GAP_OVERFLOW): it carries no field data, and the records
// it names (for GAP_OVERFLOW: every record of the entity changed around its commit time) must be re-read.
func (h Header) IsGap() bool { return strings.HasPrefix(h.ChangeType, "GAP_") }

// Client returns the client name a writer put in Sforce-Call-Options (changeOrigin "...;client=NAME"),
// or "".
func (h Header) Client() string {
	for _, part := range strings.Split(h.ChangeOrigin, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "client="); ok {
			return v
		}
	}
	return ""
}

// ChangeEvent is one decoded change event.
type ChangeEvent struct {
	ReplayID []byte
	EventID  string
	SchemaID string
	Header   Header
	// Fields holds the values the event carries: every non-null field on CREATE and UNDELETE, the changed
	// fields on UPDATE (nulled ones as nil), nothing on DELETE and gap events. A compound field's components
	// are keyed "Compound.Component" (Name.FirstName, Address.City), as the bitmaps name them.
	Fields map[string]any
}

// Decode turns one event of a FetchResponse into a ChangeEvent.
func (c *Client) Decode(ctx context.Context, ev *pubsubpb.ConsumerEvent) (ChangeEvent, error) {
	return c.decode(ctx, ev, nil)
}

// decode is Decode with the map the Avro record is read into passed in (nil: a new one): a stream reuses
// one for all its events (the record holds every field of the schema, most of them null; what the event
// carries is copied out of it), which saves a map of ~50 entries per event.
func (c *Client) decode(ctx context.Context, ev *pubsubpb.ConsumerEvent, rec map[string]any) (ChangeEvent, error) {
	pe := ev.GetEvent()
	out := ChangeEvent{ReplayID: ev.GetReplayId(), EventID: pe.GetId(), SchemaID: pe.GetSchemaId()}
	s, err := c.Schema(ctx, pe.GetSchemaId())
	if err != nil {
		return out, fmt.Errorf("event %s: %w", pe.GetId(), err)
	}
	clear(rec)
	if err := avro.Unmarshal(s.Avro, pe.GetPayload(), &rec); err != nil {
		return out, fmt.Errorf("event %s: avro payload: %w", pe.GetId(), err)
	}
	hm, _ := rec["ChangeEventHeader"].(map[string]any)
	if hm == nil {
		return out, fmt.Errorf("event %s: no ChangeEventHeader (not a change event)", pe.GetId())
	}
	h := Header{EntityName: asString(hm["entityName"]), RecordIDs: asStrings(hm["recordIds"]),
		ChangeType: asString(hm["changeType"]), ChangeOrigin: asString(hm["changeOrigin"]),
		TransactionKey: asString(hm["transactionKey"]), SequenceNumber: int(asInt(hm["sequenceNumber"])),
		CommitTimestamp: time.UnixMilli(asInt(hm["commitTimestamp"])).UTC(), CommitNumber: asInt(hm["commitNumber"]),
		CommitUser: asString(hm["commitUser"])}
	if h.ChangedFields, err = s.FieldNames(asStrings(hm["changedFields"])); err == nil {
		if h.NulledFields, err = s.FieldNames(asStrings(hm["nulledFields"])); err == nil {
			h.DiffFields, err = s.FieldNames(asStrings(hm["diffFields"]))
		}
	}
	if err != nil {
		return out, fmt.Errorf("event %s (%s %v): %w", pe.GetId(), h.EntityName, h.RecordIDs, err)
	}
	out.Header = h
	out.Fields = map[string]any{}
	for k, v := range rec {
		if k == "ChangeEventHeader" || v == nil {
			continue
		}
		if s.compounds[k] {
			for sub, sv := range nested(v) {
				if sv != nil {
					out.Fields[k+"."+sub] = sv
				}
			}
			continue
		}
		out.Fields[k] = v
	}
	for _, f := range h.NulledFields {
		out.Fields[f] = nil
	}
	return out, nil
}

// Names lists the fields of the schema's events as Decode keys them: the top-level fields but the
// header, a compound's components as "Compound.Component".
func (s *Schema) Names() []string {
	var out []string
	for _, f := range s.Avro.Fields() {
		switch {
		case f.Name() == "ChangeEventHeader":
		case s.compounds[f.Name()]:
			for _, sub := range compound(f.Type()).Fields() {
				out = append(out, f.Name()+"."+sub.Name())
			}
		default:
			out = append(out, f.Name())
		}
	}
	return out
}

// FieldNames decodes a bitmap field: the first entry is a hex bitmap of the top-level fields (bit i =
// field i of the schema), each further "p-0x..." entry a bitmap of the sub-fields of compound field p.
func (s *Schema) FieldNames(bitmaps []string) ([]string, error) {
	var out []string
	for _, b := range bitmaps {
		parent, hexBits, nested := strings.Cut(b, "-")
		if !nested {
			hexBits, parent = parent, ""
		}
		n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(hexBits), "0x"), 16)
		if !ok {
			return nil, fmt.Errorf("bitmap %q is not hex", b)
		}
		names := s.fields
		prefix := ""
		if parent != "" {
			p, err := strconv.Atoi(parent)
			if err != nil || p < 0 || p >= len(s.fields) {
				return nil, fmt.Errorf("bitmap %q names no compound field", b)
			}
			prefix = s.fields[p] + "."
			names = nil
			if sub := compound(s.Avro.Fields()[p].Type()); sub != nil {
				for _, f := range sub.Fields() {
					names = append(names, f.Name())
				}
			}
		}
		for i := 0; i < n.BitLen(); i++ {
			if n.Bit(i) == 0 {
				continue
			}
			if i >= len(names) {
				return nil, fmt.Errorf("bitmap %q: bit %d beyond the schema's %d fields", b, i, len(names))
			}
			out = append(out, prefix+names[i])
		}
	}
	return out, nil
}

// nested reads a compound field's value: a record in a nullable union, which the Avro decoder hands back
// keyed by the record's full name.
func nested(v any) map[string]any {
	m, _ := v.(map[string]any)
	if len(m) == 1 {
		for _, inner := range m {
			if r, ok := inner.(map[string]any); ok {
				return r
			}
		}
	}
	return m
}

// compound finds the record inside a field's type (a nullable union of a record).
func compound(t avro.Schema) *avro.RecordSchema {
	switch x := t.(type) {
	case *avro.RecordSchema:
		return x
	case *avro.UnionSchema:
		for _, u := range x.Types() {
			if r, ok := u.(*avro.RecordSchema); ok {
				return r
			}
		}
	}
	return nil
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	}
	return 0
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Start says where a subscription begins.
type Start struct {
	Preset   pubsubpb.ReplayPreset
	ReplayID []byte // with CUSTOM: resume after this event
}

// Batch is what one FetchResponse brought (or, with Config.Coalesce, several that followed each other in
// a backlog): its events (possibly none: a keepalive) and the replay id of the stream's position after them.
type Batch struct {
	Events   []ChangeEvent
	LatestID []byte
}

// Subscribe reads topic from start until ctx ends, calling handle for every FetchResponse (or run of them,
// Config.Coalesce) in order; when
// handle returns nil the batch is done and the stream resumes after it, also across reconnects. A handle
// error ends Subscribe with that error. Stream failures reconnect with exponential back-off (a refused token
// is refreshed first); an invalid or expired replay id returns ErrReplayInvalid.
func (c *Client) Subscribe(ctx context.Context, topic string, start Start, handle func(context.Context, Batch) error) error {
	backoff := 200 * time.Millisecond
	for {
		progressed, err := c.subscribeOnce(ctx, topic, &start, handle)
		if ctx.Err() != nil {
			return nil
		}
		var he handlerError
		if errors.As(err, &he) {
			return he.err
		}
		if errors.Is(err, ErrReplayInvalid) {
			return err
		}
		if progressed {
			backoff = 200 * time.Millisecond
		}
		code := ""
		var te trailerError
		if errors.As(err, &te) {
			code = te.code
		}
		if code == ErrCodeAuth {
			if rerr := c.refresh(ctx); rerr != nil {
				c.log.Warn("pub/sub api: session refresh failed", "topic", topic, "err", rerr)
			} else {
				continue
			}
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("pub/sub api: subscription ended; reconnecting", "topic", topic, "err", err, "code", code, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

type handlerError struct{ err error }

func (h handlerError) Error() string { return h.err.Error() }

type trailerError struct {
	code string
	err  error
}

func (t trailerError) Error() string { return t.err.Error() }
func (t trailerError) Unwrap() error { return t.err }

// coalesceWait is how long a full response waits for the next one before it is handed over alone: the
// next is already requested, so in a backlog it comes within a round trip.
const coalesceWait = 100 * time.Millisecond

// received is one Recv of a stream.
type received struct {
	resp *pubsubpb.FetchResponse
	err  error
}

// subscribeOnce runs one Subscribe stream; start moves forward as batches are handled. Each response's
// events are requested again as soon as it arrives (so the next can come while this one is handled);
// at most two requests' worth are in flight.
func (c *Client) subscribeOnce(ctx context.Context, topic string, start *Start, handle func(context.Context, Batch) error) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	actx, err := c.withAuth(sctx)
	if err != nil {
		return false, err
	}
	c.count("Subscribe")
	stream, err := c.api.Subscribe(actx)
	if err != nil {
		return false, err
	}
	n := int32(c.cfg.BatchSize)
	if err := stream.Send(&pubsubpb.FetchRequest{TopicName: topic, ReplayPreset: start.Preset, ReplayId: start.ReplayID,
		NumRequested: n}); err != nil {
		return false, c.streamError(stream, err)
	}
	// Read ahead (within num_requested), so responses that came while one was handled are there to take:
	// every response in flight fits (each carries at least one of the n events requested, plus keepalives).
	recv := make(chan received, n+16)
	go func() {
		for {
			resp, err := stream.Recv()
			select {
			case recv <- received{resp, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// next takes one response, re-requesting its events; wait > 0 gives up after wait, wait < 0 at once
	// when none is there (nil, nil).
	next := func(wait time.Duration) (*pubsubpb.FetchResponse, error) {
		r, ok, err := receive(ctx, recv, wait)
		if err != nil || !ok {
			return nil, err
		}
		if r.err != nil {
			return nil, c.streamError(stream, r.err)
		}
		if k := int32(len(r.resp.GetEvents())); k > 0 {
			if err := stream.Send(&pubsubpb.FetchRequest{TopicName: topic, NumRequested: k}); err != nil {
				return nil, c.streamError(stream, err)
			}
		}
		return r.resp, nil
	}
	progressed := false
	rec := map[string]any{} // what each event's Avro record is read into (decode)
	for {
		resp, err := next(0)
		if err != nil {
			return progressed, err
		}
		progressed = true
		responses := []*pubsubpb.FetchResponse{resp}
		for total := len(resp.GetEvents()); total > 0 && total < c.cfg.Coalesce; total += len(resp.GetEvents()) {
			// Responses already there are taken with it (events that came while the last batch was
			// handled); after a full one (a backlog) the next is waited for a moment.
			wait := time.Duration(-1)
			if len(resp.GetEvents()) >= int(n) {
				wait = coalesceWait
			}
			if resp, err = next(wait); err != nil {
				return progressed, err
			}
			if resp == nil {
				break
			}
			responses = append(responses, resp)
		}
		batch := Batch{LatestID: responses[len(responses)-1].GetLatestReplayId()}
		for _, r := range responses {
			for _, ev := range r.GetEvents() {
				ce, err := c.decode(ctx, ev, rec)
				if err != nil {
					return progressed, handlerError{fmt.Errorf("topic %s: %w", topic, err)}
				}
				batch.Events = append(batch.Events, ce)
			}
		}
		if err := handle(ctx, batch); err != nil {
			return progressed, handlerError{err}
		}
		if len(batch.LatestID) > 0 {
			*start = Start{Preset: pubsubpb.ReplayPreset_CUSTOM, ReplayID: batch.LatestID}
		}
	}
}

// receive takes the next response read ahead: waiting for it (wait 0), for at most wait (wait > 0), or
// only one already there (wait < 0); ok is false when none came. A response already there is always
// taken: a select between it and an expired timeout would pick either at random, and hand a backlog's
// responses over one or two at a time instead of together (one REST read each).
func receive(ctx context.Context, recv <-chan received, wait time.Duration) (received, bool, error) {
	if wait < 0 {
		select {
		case r := <-recv:
			return r, true, nil
		default:
			return received{}, false, nil
		}
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-recv:
		return r, true, nil
	case <-timeout:
		return received{}, false, nil
	case <-ctx.Done():
		return received{}, false, ctx.Err()
	}
}

// streamError classifies a stream failure by its status and error-code trailer.
func (c *Client) streamError(stream grpc.ClientStream, err error) error {
	code := ErrorCode(stream.Trailer())
	if code == ErrCodeReplayID || status.Code(err) == codes.InvalidArgument && strings.Contains(err.Error(), "replay") {
		return fmt.Errorf("%w: %v", ErrReplayInvalid, err)
	}
	return trailerError{code: code, err: err}
}
