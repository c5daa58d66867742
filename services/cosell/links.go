package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func cmdLinks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "get" {
		fmt.Fprintln(stderr, "usage: cosell links get <referral-id | opportunity-id | link-id>\nConnects to NATS at COSELL_NATS_URL (credentials: COSELL_NATS_CREDS).")
		return 2
	}
	var cfg platform.BusConfig
	if err := platform.LoadConfig(&cfg, nil); err != nil {
		fmt.Fprintf(stderr, "cosell links: %v\n", err)
		return 2
	}
	if cfg.URL == "" {
		fmt.Fprintln(stderr, "cosell links: COSELL_NATS_URL is not set (e.g. nats://127.0.0.1:4222 while `cosell run` is up)")
		return 2
	}
	bus, err := platform.Connect(ctx, cfg, "cli", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		fmt.Fprintf(stderr, "cosell links: %v\n", err)
		return 1
	}
	defer bus.Close()
	a, err := auditor.New(ctx, bus, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "cosell links: %v\n", err)
		return 1
	}
	l, err := a.Link(ctx, args[1])
	if err != nil {
		fmt.Fprintf(stderr, "cosell links get: %v\n", err)
		return 1
	}
	tl, err := a.Timeline(ctx, l.ID)
	if err != nil {
		fmt.Fprintf(stderr, "cosell links get: timeline: %v\n", err)
		return 1
	}
	printJSON(stdout, map[string]any{"link": l, "timeline": tl})
	return 0
}
