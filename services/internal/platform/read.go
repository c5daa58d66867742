package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stored is one message as a stream holds it, what a stream reader is handed: no ack, no redelivery.
type Stored struct {
	Subject string
	// Seq is the message's sequence in its stream (the handle `cosell dlq` and replays use).
	Seq uint64
	// Time is when the stream stored the message.
	Time   time.Time
	Header nats.Header
	Data   []byte
}

// Event decodes the stored message as the CloudEvent it carries.
func (m Stored) Event() (Event, error) { return DecodeMsg(m.Subject, m.Header, m.Data) }

// ErrStopReading, returned by a reader's callback, ends the read early without an error, as
// filepath.SkipAll ends a walk.
var ErrStopReading = errors.New("stop reading")

// StreamReader reads a stream from a start point to its end (or, with Follow, on and on); *Bus is one.
// Code that only reads takes this instead of the whole bus.
type StreamReader interface {
	Read(ctx context.Context, stream string, fn func(Stored) error, opts ...ReadOption) error
}

// ReadOption chooses what a read covers: which subjects, from where, and whether it stops at the end.
type ReadOption func(*readConfig)

type readConfig struct {
	subjects []string
	fromSeq  uint64
	since    *time.Time
	onlyNew  bool
	follow   bool
}

// Subjects limits the read to messages whose subject matches one of filters (NATS wildcards allowed).
func Subjects(filters ...string) ReadOption {
	return func(c *readConfig) { c.subjects = append(c.subjects, filters...) }
}

// FromSeq starts the read at stream sequence seq (the first message at or after it).
func FromSeq(seq uint64) ReadOption {
	return func(c *readConfig) { c.fromSeq, c.since, c.onlyNew = seq, nil, false }
}

// Since starts the read at the first message stored at or after t.
func Since(t time.Time) ReadOption {
	return func(c *readConfig) { c.since, c.fromSeq, c.onlyNew = &t, 0, false }
}

// OnlyNew starts the read after the last message stored now; with Follow it tails the stream.
func OnlyNew() ReadOption {
	return func(c *readConfig) { c.onlyNew, c.fromSeq, c.since = true, 0, nil }
}

// Follow keeps reading messages as they are stored, after the end, until ctx ends; the read then returns nil.
func Follow() ReadOption { return func(c *readConfig) { c.follow = true } }

const (
	// readerInactive is how long the server keeps a reader's consumer after its process died without
	// deleting it; a live reader deletes its consumer itself.
	readerInactive = time.Minute
	// readerIdle is how long a read waits for a message it counts on before it asks the server whether
	// any is still pending (messages may be deleted while it reads: a dead letter re-driven or purged).
	readerIdle = 2 * time.Second
	// readerBuffer caps how many messages the client buffers ahead of the callback.
	readerBuffer = 500
)

// Read reads stream on this bus's connection; see ReadStream.
func (b *Bus) Read(ctx context.Context, stream string, fn func(Stored) error, opts ...ReadOption) error {
	return ReadStream(ctx, b.js, stream, fn, opts...)
}

// ReadStream hands fn every message of stream (matching Subjects, from FromSeq or Since) in stream order,
// up to the last one stored when the read starts, and returns: the one way to read a stream to its end.
// With Follow it goes on with new messages until ctx ends. It reads through one ordered consumer and
// deletes that consumer before it returns, however the read ends (a consumer left behind would live on
// the server and count against its consumer limit). An error from fn ends the read and is returned,
// except ErrStopReading, which ends it with nil.
func ReadStream(ctx context.Context, js jetstream.JetStream, stream string, fn func(Stored) error, opts ...ReadOption) (err error) {
	var c readConfig
	for _, o := range opts {
		o(&c)
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: c.subjects, InactiveThreshold: readerInactive}
	switch {
	case c.fromSeq > 0:
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, c.fromSeq
	case c.since != nil:
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, c.since
	case c.onlyNew:
		occ.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	cons, err := js.OrderedConsumer(ctx, stream, occ)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() {
		if derr := deleteReader(ctx, js, stream, cons); derr != nil && err == nil {
			err = derr
		}
	}()
	pending := cons.CachedInfo().NumPending // what "the end" is: counted by the server at creation
	if pending == 0 && !c.follow {
		return nil
	}
	buffer := readerBuffer
	if !c.follow {
		buffer = int(min(pending, readerBuffer))
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(buffer))
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	for read := uint64(0); c.follow || read < pending; {
		if err := ctx.Err(); err != nil {
			// Messages already buffered would still come; a cancelled read stops at once.
			if c.follow {
				return nil
			}
			return fmt.Errorf("read %s: %w", stream, err)
		}
		m, err := next(ctx, it, c.follow)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Nothing came for a while: the end is nearer than counted if the rest was deleted meanwhile.
			info, ierr := cons.Info(ctx)
			if ierr != nil {
				return fmt.Errorf("read %s: %w", stream, ierr)
			}
			if info.NumPending == 0 {
				return nil
			}
			continue
		}
		if err != nil {
			if c.follow && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s: %w", stream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		read++
		if err := fn(Stored{Subject: m.Subject(), Seq: meta.Sequence.Stream, Time: meta.Timestamp,
			Header: m.Headers(), Data: m.Data()}); err != nil {
			if errors.Is(err, ErrStopReading) {
				return nil
			}
			return err
		}
		if !c.follow && meta.NumPending == 0 {
			return nil // caught up: nothing was left when this one was delivered
		}
	}
	return nil
}

// next waits for the next message: until ctx ends when following, else for readerIdle at most.
func next(ctx context.Context, it jetstream.MessagesContext, follow bool) (jetstream.Msg, error) {
	if follow {
		return it.Next(jetstream.NextContext(ctx))
	}
	wait, cancel := context.WithTimeout(ctx, readerIdle)
	defer cancel()
	return it.Next(jetstream.NextContext(wait))
}

// deleteReader removes the reader's consumer from the server, even when ctx has ended.
func deleteReader(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) error {
	info := cons.CachedInfo()
	if info == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(dctx, stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("read %s: delete reader consumer %s: %w", stream, info.Name, err)
	}
	return nil
}
