package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reading one subject of a stream without a consumer: the auditor's timelines. ReadStream creates (and
// deletes) an ordered consumer per read, which is right for a read across subjects or one that follows;
// a link's timeline is one literal subject whose newest part is all that is new since the last read, and
// JetStream's batched direct get (ADR-31: seq + next_by_subj + batch) returns exactly that in one request.

// subjectBatch caps the messages one direct-get request asks for; a longer read asks again.
const subjectBatch = 256

// subjectIdle is how long a direct-get read waits for the server's next reply before it gives up.
const subjectIdle = 5 * time.Second

// ReadSubject hands fn, in stream order, every message stored on subject (a literal subject, no
// wildcards) with a sequence after `after` and, when upTo > 0, at most upTo; with upTo 0 it reads to the
// last message stored when each request is answered. It uses batched direct gets (no consumer is created)
// and returns the sequence of the last message handed to fn (after itself when there was none). Like
// ReadStream, an error from fn ends the read and is returned, except ErrStopReading.
//
// A direct get may be answered by any replica of the stream, which can be a moment behind the leader:
// a caller that must see everything the stream holds passes upTo from LastSeqOnSubject and checks that
// the read reached it.
func (b *Bus) ReadSubject(ctx context.Context, stream, subject string, after, upTo uint64, fn func(Stored) error) (last uint64, err error) {
	last = after
	if upTo > 0 && upTo <= after {
		return last, nil
	}
	// A channel of one batch's replies and its end marker, not SubscribeSync's: a sync subscription
	// allocates a 65,536-message channel (512 KiB) each time, which was most of sf-writer's CPU per
	// command (its later-command read, one per update) and the garbage behind it.
	replies := make(chan *nats.Msg, subjectBatch+2)
	sub, err := b.conn.ChanSubscribe(b.conn.NewInbox(), replies)
	if err != nil {
		return last, fmt.Errorf("read %s on %s: %w", subject, stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	api := "$JS.API.DIRECT.GET." + stream
	for {
		req, _ := json.Marshal(directBatchRequest{Seq: last + 1, NextFor: subject, Batch: subjectBatch})
		if err := b.conn.PublishRequest(api, sub.Subject, req); err != nil {
			return last, fmt.Errorf("read %s on %s: %w", subject, stream, err)
		}
		more, err := readBatch(ctx, replies, func(m Stored) error {
			if upTo > 0 && m.Seq > upTo {
				return ErrStopReading // the server's batch takes no upper bound with next_by_subj
			}
			last = m.Seq
			return fn(m)
		})
		if errors.Is(err, ErrStopReading) {
			return last, nil
		}
		if err != nil {
			return last, fmt.Errorf("read %s on %s: %w", subject, stream, err)
		}
		if !more || (upTo > 0 && last >= upTo) {
			return last, nil
		}
	}
}

// directBatchRequest is the direct-get request of a batch (nats-server's JSApiMsgGetRequest).
type directBatchRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// readBatch reads one batch's replies up to its end-of-batch marker; more says the server has more
// messages matching the request than it sent (the batch or its byte limit was reached).
func readBatch(ctx context.Context, replies <-chan *nats.Msg, fn func(Stored) error) (more bool, err error) {
	var stop error
	idle := time.NewTimer(subjectIdle)
	defer idle.Stop()
	for {
		var m *nats.Msg
		select {
		case m = <-replies:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-idle.C:
			return false, nats.ErrTimeout
		}
		idle.Reset(subjectIdle)
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			switch m.Header.Get("Status") {
			case "404": // nothing after the requested sequence
				return false, stop
			case "204": // end of batch
				pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return pending > 0 && stop == nil, stop
			default:
				return false, fmt.Errorf("direct get: %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
			}
		}
		if stop != nil {
			continue // drain the rest of the batch so the next request's replies are its own
		}
		s, err := directStored(m)
		if err != nil {
			return false, err
		}
		stop = fn(s)
	}
}

// directStored is a direct-get reply as the message the stream stored: its own headers without the
// ones the server added to the reply.
func directStored(m *nats.Msg) (Stored, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Stored{}, fmt.Errorf("direct get reply without a sequence: %w", err)
	}
	at, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	s := Stored{Subject: m.Header.Get(jetstream.SubjectHeader), Seq: seq, Time: at, Data: m.Data, Header: nats.Header{}}
	for k, v := range m.Header {
		if !strings.HasPrefix(k, "Nats-") || k == jetstream.MsgIDHeader {
			s.Header[k] = v
		}
	}
	return s, nil
}

// LastSeqOnSubject is the sequence of the newest message stored on subject as the stream's leader has
// it (0 when there is none): the stream's message-get API, which only the leader answers, unlike a
// direct get.
func (b *Bus) LastSeqOnSubject(ctx context.Context, stream, subject string) (uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	msg, err := b.conn.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, fmt.Errorf("last sequence on %s: %w", subject, err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("last sequence on %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("last sequence on %s: %w", subject, resp.Error)
	case resp.Message == nil:
		return 0, fmt.Errorf("last sequence on %s: %w", subject, jetstream.ErrInvalidJetStreamResponse)
	}
	return resp.Message.Seq, nil
}

// Replicated reports whether stream has more than one replica (then a direct get may come from a
// follower a moment behind its leader).
func (b *Bus) Replicated(ctx context.Context, stream string) (bool, error) {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return false, err
	}
	info := st.CachedInfo()
	return info != nil && info.Config.Replicas > 1, nil
}
