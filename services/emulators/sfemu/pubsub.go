package sfemu

// The Pub/Sub API (service eventbus.v1.PubSub, Salesforce's pubsub_api.proto in
// services/internal/clients/sfpubsub/pubsubpb) over the emulated event bus of cdc.go: GetTopic, GetSchema,
// Subscribe (pull-based: the client asks for num_requested events and asks again as they arrive; replay
// from LATEST, EARLIEST or a stored replay id) and Publish, refused for change channels, which only
// Salesforce publishes to. Every call is authenticated from its gRPC metadata (accesstoken, instanceurl,
// tenantid) against the sessions the REST side issued; failures carry Salesforce's error code in the
// "error-code" trailer and an rpcId in the message (Pub/Sub API guide: "Handle Errors").

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
)

// Pub/Sub API error codes (the "error-code" trailer). The auth and replay id codes are the documented ones;
// the others name the emulator's refusals in the same style.
const (
	ErrCodeAuth            = "sfdc.platform.eventbus.grpc.service.auth.error"
	ErrCodeReplayID        = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
	ErrCodeTopic           = "sfdc.platform.eventbus.grpc.service.topic.not.found"
	ErrCodeSchema          = "sfdc.platform.eventbus.grpc.service.schema.not.found"
	ErrCodePublish         = "sfdc.platform.eventbus.grpc.publish.not.allowed"
	ErrCodeFetchRequest    = "sfdc.platform.eventbus.grpc.fetch.request.invalid"
	ErrCodeStreamReset     = "sfdc.platform.eventbus.grpc.service.unavailable"
	maxNumRequested        = 100 // events one FetchRequest may ask for
	defaultPubSubKeepAlive = 60 * time.Second
)

// PubSubServer returns a gRPC server serving the Pub/Sub API (with server reflection, so grpcurl can list
// and describe it) over this emulator's change events.
func (e *Emulator) PubSubServer() *grpc.Server {
	s := grpc.NewServer()
	pubsubpb.RegisterPubSubServer(s, &pubSub{e: e})
	reflection.Register(s)
	return s
}

// ServePubSub serves the Pub/Sub API on l (plaintext HTTP/2; Salesforce's endpoint is TLS on port 7443)
// until ctx ends.
func (e *Emulator) ServePubSub(ctx context.Context, l net.Listener) error {
	s := e.PubSubServer()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	if err := s.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

type pubSub struct {
	pubsubpb.UnimplementedPubSubServer
	e *Emulator
}

// rpcError builds a Pub/Sub API error: the gRPC status, the message with its rpcId, and the error-code and
// rpc-id trailers, set through setTrailer.
func rpcError(setTrailer func(metadata.MD), code codes.Code, errorCode, msg string) error {
	rpcID := newUUID()
	setTrailer(metadata.Pairs("error-code", errorCode, "rpc-id", rpcID))
	return status.Error(code, msg+" rpcId: "+rpcID)
}

func unaryTrailer(ctx context.Context) func(metadata.MD) {
	return func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) }
}

// authenticate checks the call's metadata; it returns the access token. Call with e.mu held.
func (e *Emulator) authenticatePubSub(md metadata.MD, token string) (string, string) {
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	if token == "" {
		token = get("accesstoken")
	}
	instance, tenant := get("instanceurl"), get("tenantid")
	switch {
	case token == "" || instance == "" || tenant == "":
		return "", "missing accesstoken, instanceurl or tenantid metadata"
	case !e.sessionValid(token):
		return "", "the access token is invalid or has expired; log in again"
	}
	if u, err := url.Parse(instance); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		e.opts.InstanceURL != "" && strings.TrimRight(instance, "/") != strings.TrimRight(e.opts.InstanceURL, "/") {
		return "", "instanceurl " + instance + " is not this org's instance URL"
	}
	if id, ok := NormalizeID(tenant); !ok || id != e.orgID {
		return "", "tenantid " + tenant + " is not the org of the access token"
	}
	return token, ""
}

// sessionValid reports whether token is a live session. Call with e.mu held.
func (e *Emulator) sessionValid(token string) bool {
	s, ok := e.sessions[token]
	return ok && e.now().Before(s.expires)
}

// topic resolves a channel name to the objects it carries and, for a single-object channel, its schema.
func (e *Emulator) topic(name string) ([]string, *changeSchema, bool) {
	if name == AllChangeEvents {
		var all []string
		for _, o := range cdcObjects {
			if e.bus.byObject[o] != nil {
				all = append(all, o)
			}
		}
		return all, nil, true
	}
	for obj, cs := range e.bus.byObject {
		if ChannelName(obj) == name {
			return []string{obj}, cs, true
		}
	}
	return nil, nil, false
}

func (p *pubSub) auth(ctx context.Context, setTrailer func(metadata.MD)) error {
	md, _ := metadata.FromIncomingContext(ctx)
	p.e.mu.Lock()
	_, msg := p.e.authenticatePubSub(md, "")
	p.e.mu.Unlock()
	if msg != "" {
		return rpcError(setTrailer, codes.Unauthenticated, ErrCodeAuth, msg)
	}
	return nil
}

// GetTopic describes a change channel; change channels can be subscribed to, not published to.
func (p *pubSub) GetTopic(ctx context.Context, req *pubsubpb.TopicRequest) (*pubsubpb.TopicInfo, error) {
	if err := p.auth(ctx, unaryTrailer(ctx)); err != nil {
		return nil, err
	}
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	_, cs, ok := p.e.topic(req.GetTopicName())
	if !ok {
		return nil, rpcError(unaryTrailer(ctx), codes.NotFound, ErrCodeTopic, "topic "+req.GetTopicName()+" not found")
	}
	info := &pubsubpb.TopicInfo{TopicName: req.GetTopicName(), TenantGuid: p.e.orgID, CanSubscribe: true, RpcId: newUUID()}
	if cs != nil {
		info.SchemaId = cs.id
	}
	return info, nil
}

// GetSchema returns the Avro schema (JSON) of a schema id.
func (p *pubSub) GetSchema(ctx context.Context, req *pubsubpb.SchemaRequest) (*pubsubpb.SchemaInfo, error) {
	if err := p.auth(ctx, unaryTrailer(ctx)); err != nil {
		return nil, err
	}
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	cs := p.e.bus.schemas[req.GetSchemaId()]
	if cs == nil {
		return nil, rpcError(unaryTrailer(ctx), codes.NotFound, ErrCodeSchema, "schema "+req.GetSchemaId()+" not found")
	}
	return &pubsubpb.SchemaInfo{SchemaJson: cs.json, SchemaId: cs.id, RpcId: newUUID()}, nil
}

// Publish is refused: change events are published by Salesforce only.
func (p *pubSub) Publish(ctx context.Context, req *pubsubpb.PublishRequest) (*pubsubpb.PublishResponse, error) {
	return nil, p.refusePublish(ctx, unaryTrailer(ctx), req.GetTopicName())
}

// PublishStream is refused like Publish.
func (p *pubSub) PublishStream(stream pubsubpb.PubSub_PublishStreamServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	return p.refusePublish(stream.Context(), stream.SetTrailer, req.GetTopicName())
}

func (p *pubSub) refusePublish(ctx context.Context, setTrailer func(metadata.MD), topic string) error {
	if err := p.auth(ctx, setTrailer); err != nil {
		return err
	}
	p.e.mu.Lock()
	_, _, ok := p.e.topic(topic)
	p.e.mu.Unlock()
	if !ok {
		return rpcError(setTrailer, codes.NotFound, ErrCodeTopic, "topic "+topic+" not found")
	}
	return rpcError(setTrailer, codes.PermissionDenied, ErrCodePublish,
		"publishing to "+topic+" is not allowed: change events are published by Salesforce when records change")
}

// Subscribe streams the change events of one channel. The first FetchRequest names the topic and where to
// start; every FetchRequest adds num_requested (at most 100 each) to the events the server may send. With
// nothing to send the server sends a keepalive: a FetchResponse with no events and the latest replay id.
func (p *pubSub) Subscribe(stream pubsubpb.PubSub_SubscribeServer) error {
	ctx := stream.Context()
	e := p.e
	if err := p.auth(ctx, stream.SetTrailer); err != nil {
		return err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	badRequest := func(msg string) error {
		return rpcError(stream.SetTrailer, codes.InvalidArgument, ErrCodeFetchRequest, msg)
	}
	if first.GetNumRequested() <= 0 {
		return badRequest("num_requested must be between 1 and 100")
	}
	e.mu.Lock()
	entities, _, ok := e.topic(first.GetTopicName())
	var cursor uint64
	switch first.GetReplayPreset() {
	case pubsubpb.ReplayPreset_LATEST:
		cursor = e.bus.seq
	case pubsubpb.ReplayPreset_EARLIEST:
		cursor = e.bus.seq
		if len(e.bus.events) > 0 {
			cursor = e.bus.events[0].seq - 1
		}
	case pubsubpb.ReplayPreset_CUSTOM:
		var valid bool
		if cursor, valid = e.bus.position(first.GetReplayId()); !valid && ok {
			e.mu.Unlock()
			return rpcError(stream.SetTrailer, codes.InvalidArgument, ErrCodeReplayID,
				"the replay id is invalid or outside the 72-hour retention window; resubscribe with LATEST or EARLIEST")
		}
	}
	resets := e.bus.resets
	if ok {
		e.counts["pubsub.subscribe"]++
	}
	e.mu.Unlock()
	if !ok {
		return rpcError(stream.SetTrailer, codes.NotFound, ErrCodeTopic, "topic "+first.GetTopicName()+" not found")
	}
	credits := min(first.GetNumRequested(), maxNumRequested)
	token := ""

	requests, recvErr := make(chan *pubsubpb.FetchRequest), make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case requests <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	e.mu.Lock()
	keepalive := e.opts.PubSubKeepAlive
	e.mu.Unlock()
	if keepalive <= 0 {
		keepalive = defaultPubSubKeepAlive
	}
	idle := time.NewTimer(keepalive)
	defer idle.Stop()
	want := map[string]bool{}
	for _, ent := range entities {
		want[ent] = true
	}
	for {
		e.mu.Lock()
		var tok string
		if tok, _ = e.authenticatePubSub(md, token); tok == "" {
			e.mu.Unlock()
			return rpcError(stream.SetTrailer, codes.Unauthenticated, ErrCodeAuth,
				"the session expired; refresh the access token (auth_refresh) or subscribe again")
		}
		if e.bus.resets != resets {
			e.mu.Unlock()
			return rpcError(stream.SetTrailer, codes.Unavailable, ErrCodeStreamReset, "the stream was reset; subscribe again")
		}
		var batch []*pubsubpb.ConsumerEvent
		// The bus holds its events in seq order: start at the first one after the cursor instead of
		// walking the whole log (under the emulator's lock) on every response.
		from, _ := slices.BinarySearchFunc(e.bus.events, cursor+1, func(ev *busEvent, seq uint64) int { return cmp.Compare(ev.seq, seq) })
		for _, ev := range e.bus.events[from:] {
			if int32(len(batch)) >= credits {
				break
			}
			cursor = ev.seq
			if want[ev.entity] {
				batch = append(batch, &pubsubpb.ConsumerEvent{Event: ev.event, ReplayId: e.bus.replayID(ev.seq)})
			}
		}
		if len(batch) == 0 && cursor < e.bus.seq && credits > 0 {
			cursor = e.bus.seq // the rest of the bus holds nothing for this channel
		}
		latest := e.bus.replayID(cursor)
		wake := e.bus.wake
		e.mu.Unlock()

		if len(batch) > 0 {
			credits -= int32(len(batch))
			if err := stream.Send(&pubsubpb.FetchResponse{Events: batch, LatestReplayId: latest, RpcId: newUUID(),
				PendingNumRequested: credits}); err != nil {
				return err
			}
			idle.Reset(keepalive)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case req := <-requests:
			if req.GetAuthRefresh() != "" {
				token = req.GetAuthRefresh()
			}
			if n := req.GetNumRequested(); n < 0 {
				return badRequest("num_requested must not be negative")
			}
			credits += min(req.GetNumRequested(), maxNumRequested)
		case <-wake:
		case <-idle.C:
			if err := stream.Send(&pubsubpb.FetchResponse{LatestReplayId: latest, RpcId: newUUID(),
				PendingNumRequested: credits}); err != nil {
				return err
			}
			idle.Reset(keepalive)
		}
	}
}
