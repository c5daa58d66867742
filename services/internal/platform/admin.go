package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin is a service's one operations port: /metrics (Prometheus), /healthz (the process is alive),
// /readyz (it can do its job; Kubernetes routes and scales on it) and any extra routes a stage adds.
type Admin struct {
	// Registry holds the runtime's metrics and the Go/process collectors; stages may register their own.
	Registry *prometheus.Registry
	// Metrics are the runtime's collectors, registered on Registry; pass them to Connect.
	Metrics *Metrics

	addr string
	log  *slog.Logger
	mux  *http.ServeMux
	srv  *http.Server

	mu     sync.Mutex
	ready  bool
	reason string
	checks map[string]func(context.Context) error
}

// NewAdmin prepares the admin port on addr (host:port, port 0 = any); nothing listens until Start.
func NewAdmin(addr string, log *slog.Logger) *Admin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &Admin{
		Registry: reg,
		Metrics:  NewMetrics(reg),
		addr:     addr,
		log:      log,
		mux:      http.NewServeMux(),
		reason:   "starting",
		checks:   map[string]func(context.Context) error{},
	}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	a.mux.HandleFunc("GET /readyz", a.serveReady)
	return a
}

// Handle adds a route (e.g. the auditor's status page); it may be called before or after Start.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// SetReady flips /readyz; a service sets it once its connections and consumers are up, and clears it when
// it starts draining so no new work is routed to it.
func (a *Admin) SetReady(ready bool) {
	if ready {
		a.setReady(true, "")
		return
	}
	a.setReady(false, "not started or shutting down")
}

// SetNotReady clears readiness with a reason shown on /readyz.
func (a *Admin) SetNotReady(reason string) { a.setReady(false, reason) }

func (a *Admin) setReady(ready bool, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready, a.reason = ready, reason
}

// AddCheck adds a readiness check run on every /readyz request (e.g. the bus connection); a failing
// check makes /readyz answer 503 with the check's name and error.
func (a *Admin) AddCheck(name string, check func(ctx context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = check
}

func (a *Admin) serveReady(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ready, reason := a.ready, a.reason
	names := make([]string, 0, len(a.checks))
	for n := range a.checks {
		names = append(names, n)
	}
	checks := make([]func(context.Context) error, 0, len(names))
	sort.Strings(names)
	for _, n := range names {
		checks = append(checks, a.checks[n])
	}
	a.mu.Unlock()

	if ready {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		for i, check := range checks {
			if err := check(ctx); err != nil {
				ready, reason = false, names[i]+": "+err.Error()
				break
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: "+reason)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Start listens on the configured address and serves in a goroutine; it returns the bound address, so
// port 0 works in tests and in the all-in-one runner.
func (a *Admin) Start() (string, error) {
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return "", fmt.Errorf("admin: listen %s: %w", a.addr, err)
	}
	a.srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin server stopped", "err", err)
		}
	}()
	addr := ln.Addr().String()
	a.log.Info("admin listening", "addr", addr)
	return addr, nil
}

// Shutdown marks the service not ready and stops the server, waiting for open requests up to ctx.
func (a *Admin) Shutdown(ctx context.Context) error {
	a.setReady(false, "shutting down")
	if a.srv == nil {
		return nil
	}
	return a.srv.Shutdown(ctx)
}
