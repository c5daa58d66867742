// Package sfemu is a Salesforce REST API emulator served as an http.Handler, so cosell's Salesforce services
// and their tests run against the real wire protocol (OAuth token, sObjects, upsert by External ID,
// Collections, Composite, SOQL query and queryAll, /updated and /deleted, /limits, describe) with no
// org. It is strict on purpose: it refuses what Salesforce refuses, with Salesforce's status codes and error
// bodies, so a connector that passes against it does not meet new failures in production.
//
// The custom fields and objects come from the Salesforce DX project in deploy/salesforce, the same files that
// are deployed to real orgs; the standard objects are defined in Go. Faults (latency, 500s, row locks, expired
// sessions, exhausted daily limit) can be switched on at run time, and every call is counted per endpoint.
package sfemu
