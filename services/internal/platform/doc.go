// Package platform is the shared runtime every cosell service is built on: one config loader, one JSON
// logger, one admin HTTP port (health, readiness, Prometheus metrics), one NATS/JetStream connection
// (or an embedded nats-server), idempotent provisioning of the streams, consumers and KV buckets named in
// contracts, one CloudEvents codec (binary content mode over JetStream), one consumer loop and one stream
// reader.
//
// A stage is a Handler: it returns nil when its effect is durable, Permanent(err) when retrying cannot
// help, RetryAfter(err, d) when the far side asked for a delay, or any other error to be retried with
// exponential back-off. The consumer loop acks, naks with delay or dead-letters accordingly, so business
// code never holds a JetStream message. Decoding, tracing, metrics, panic recovery and dead-lettering are
// middleware the loop wraps around every handler once (see middleware.go), for single events (Consume) and
// batches (ConsumeBatch) alike. Nothing after a handler holds its slot: acks, dead letters and the acks of
// the handler's PublishAsync calls overlap the next message's handling, and the message is acked only once
// those publishes are stored.
//
// Publish waits for the stream's ack; PublishAll sends several events with their acks in flight together
// (in order on one connection) and waits for all; PublishAsync, from a handler, waits for none (the consumer
// loop does, before it acks); PutAll is PublishAll's KV put.
//
// ReadStream (Bus.Read) reads a stream, or a subject filter of it, to its end without consuming it: for
// timelines, counts, plans and checks.
package platform
