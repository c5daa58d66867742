//go:build deps

// Package deps pins the modules the services build on, so `go mod tidy` keeps them while the code that
// uses them is being written. It is never compiled.
package deps

import (
	_ "github.com/cloudevents/sdk-go/v2/event"
	_ "github.com/k-capehart/go-salesforce/v2"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/oauth2/clientcredentials"
)
