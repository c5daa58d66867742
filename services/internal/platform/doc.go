// Package platform is the shared runtime every cosell service is built on: one config loader, one JSON
// logger, one admin HTTP port (health, readiness, Prometheus metrics), one NATS/JetStream connection
// (or an embedded nats-server), idempotent provisioning of the streams, consumers and KV buckets named in
// contracts, one CloudEvents codec (binary content mode over JetStream) and one consumer loop.
//
// A stage is a Handler: it returns nil when its effect is durable, Permanent(err) when retrying cannot
// help, RetryAfter(err, d) when the far side asked for a delay, or any other error to be retried with
// exponential back-off. The consumer loop acks, naks with delay or dead-letters accordingly, so business
// code never holds a JetStream message.
package platform
