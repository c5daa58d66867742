// Package contracts is the one place that names what the cosell services exchange: CloudEvent types,
// NATS subjects, JetStream stream, consumer and KV bucket names, and the payload of every event.
//
// It imports nothing of ours, so every service, the CLI and the tests agree on the same names and shapes.
// Payloads are full snapshots that carry their source version (Partner Center eTag and updatedDateTime,
// Salesforce SystemModstamp), so any event can be replayed alone and a stale one can be recognised.
package contracts
