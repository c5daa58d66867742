package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// adminFlags are the connection flags every admin command shares.
type adminFlags struct {
	nats   *string
	config *string
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		nats: fs.String("nats", os.Getenv("COSELL_NATS_URL"), "NATS URL (env COSELL_NATS_URL); credentials and TLS from COSELL_NATS_CREDS / COSELL_NATS_TLS_*"),
		config: fs.String("config", os.Getenv(platform.ConfigFileEnv),
			"KEY=VALUE file with COSELL_PC_* and COSELL_SF_* settings (env "+platform.ConfigFileEnv+"); the environment wins"),
	}
}

// lookup reads settings from the environment, then from the --config file.
func (f adminFlags) lookup(name string) (string, bool) {
	if name == platform.ConfigFileEnv && *f.config != "" {
		return *f.config, true
	}
	return os.LookupEnv(name)
}

// bus connects to NATS as the cli; it never starts an embedded server.
func (f adminFlags) bus(ctx context.Context) (*platform.Bus, error) {
	var cfg platform.BusConfig
	if err := platform.LoadConfig(&cfg, f.lookup); err != nil {
		return nil, err
	}
	if *f.nats != "" {
		cfg.URL = *f.nats
	}
	if cfg.URL == "" {
		return nil, errors.New("no NATS URL: pass --nats or set COSELL_NATS_URL (e.g. nats://127.0.0.1:4222 while `cosell run` is up)")
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return platform.Connect(cctx, cfg, "cli", slog.New(slog.DiscardHandler), nil)
}

// auditorOn builds a read-only auditor view over the bus (links, timelines, dead letters, status).
func auditorOn(ctx context.Context, bus *platform.Bus) (*auditor.Auditor, error) {
	return auditor.New(ctx, bus, slog.New(slog.DiscardHandler))
}

func (f adminFlags) pc(ctx context.Context) (*pcapi.Client, error) {
	c, _, err := pcClient(ctx, f.lookup, f.bus)
	return c, err
}

// pcClient builds the Partner Center client the way the stages do. With COSELL_PC_AUTH=refresh-token it reads
// the shared token store over a NATS connection from connect (closed when ctx ends).
func pcClient(ctx context.Context, lookup func(string) (string, bool), connect func(context.Context) (*platform.Bus, error)) (*pcapi.Client, stage.PCConfig, error) {
	var cfg stage.PCConfig
	if err := platform.LoadConfig(&cfg, lookup); err != nil {
		return nil, cfg, err
	}
	if cfg.TokenURL != "" {
		return nil, cfg, stage.ErrAppOnly
	}
	var kv stage.KVOpener
	if cfg.Auth == string(pcapi.AuthRefreshToken) {
		bus, err := connect(ctx)
		if err != nil {
			return nil, cfg, fmt.Errorf("the Partner Center refresh token is kept in NATS (bucket %s): %w", contracts.BucketPCCredentials, err)
		}
		context.AfterFunc(ctx, bus.Close)
		kv = bus
	}
	c, err := cfg.Client(ctx, slog.New(slog.DiscardHandler), kv, nil)
	return c, cfg, err
}

func (f adminFlags) sf(ctx context.Context) (*sfapi.Client, error) {
	var cfg sfapi.Config
	if err := platform.LoadConfig(&cfg, f.lookup); err != nil {
		return nil, err
	}
	return sfapi.New(ctx, cfg)
}

const statusSummary = "one screen: services, lag per consumer, dead-letter depth, links, API budget left on each side"

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("status", statusSummary+`

Reads consumer state from NATS. The API budget needs the Partner Center and Salesforce settings (env or
--config); it costs one call on each side (Salesforce /limits, Partner Center webhook registration read).`, stderr)
	af := addAdminFlags(fs)
	noAPI := fs.Bool("no-api", false, "skip the API budget (no calls to Partner Center or Salesforce)")
	asJSON := fs.Bool("json", false, "print JSON instead of the table")
	if done, code := parse(fs, args); done {
		return code
	}
	bus, err := af.bus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell status: %v\n", err)
		return 1
	}
	defer bus.Close()
	a, err := auditorOn(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "cosell status: %v\n", err)
		return 1
	}
	st := a.Status(ctx)
	ingest := ingestActivity(ctx, bus)
	var budget []apiBudget
	if !*noAPI {
		budget = budgets(ctx, af)
	}
	if *asJSON {
		printJSON(stdout, map[string]any{"status": st, "ingest": ingest, "apiBudget": budget})
		return 0
	}
	fmt.Fprintf(stdout, "cosell status at %s\n\n", time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tDETAIL")
	byStage := map[string][]auditor.StageLag{}
	for _, l := range st.Lag {
		byStage[l.Stage] = append(byStage[l.Stage], l)
	}
	for _, stage := range contracts.Stages() {
		if ls, ok := byStage[stage]; ok {
			pulling, last := 0, time.Time{}
			for _, l := range ls {
				pulling += l.Waiting
				if l.LastActive != nil && l.LastActive.After(last) {
					last = *l.LastActive
				}
			}
			state := "up"
			if pulling == 0 {
				state = "DOWN?"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d pull request(s) waiting; last delivery %s\n", stage, state, pulling, ago(last))
			continue
		}
		if t, ok := ingest[stage]; ok {
			fmt.Fprintf(tw, "%s\t%s\tlast observed event %s\n", stage, "—", ago(t))
		}
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tSTAGE\tPENDING\tIN FLIGHT\tRETRYING\tPER MIN")
	for _, l := range st.Lag {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\n", l.Consumer, l.Stage, l.Pending, l.AckPending, l.Redelivered, l.PerMinute)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nDEAD LETTERS  %d", st.DeadLetters)
	if st.DeadLetters > 0 {
		fmt.Fprint(stdout, "  (cosell dlq ls)")
	}
	var states []string
	for s, n := range st.LinkStates {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(states)
	fmt.Fprintf(stdout, "\nLINKS         %d  (%s)\n", st.Links, strings.Join(states, ", "))
	if !*noAPI {
		fmt.Fprintln(stdout, "\nAPI BUDGET")
		for _, b := range budget {
			fmt.Fprintf(stdout, "  %-15s %s\n", b.System, b.Detail)
		}
	}
	return 0
}

// ingestActivity is when each ingest stage last published an observed event.
func ingestActivity(ctx context.Context, bus *platform.Bus) map[string]time.Time {
	out := map[string]time.Time{}
	for stage, subj := range map[string]string{
		contracts.StagePCIngest: contracts.SubjectReferralObserved + ".>",
		contracts.StageSFIngest: contracts.SubjectOpportunityObserved + ".>",
	} {
		if m, err := bus.LastMsg(ctx, contracts.StreamObserved, subj); err == nil {
			out[stage] = m.Time
		}
	}
	return out
}

type apiBudget struct {
	System    string `json:"system"`
	Remaining *int   `json:"remaining,omitempty"`
	Limit     *int   `json:"limit,omitempty"`
	Detail    string `json:"detail"`
}

func budgets(ctx context.Context, af adminFlags) []apiBudget {
	sfB := apiBudget{System: "salesforce"}
	if c, err := af.sf(ctx); err != nil {
		sfB.Detail = "unknown: " + firstLine(err)
	} else if u, err := c.Limits(ctx); err != nil {
		sfB.Detail = "unknown: " + firstLine(err)
	} else {
		rem, lim := u.Remaining(), u.Max
		sfB.Remaining, sfB.Limit = &rem, &lim
		sfB.Detail = fmt.Sprintf("%d of %d daily API calls left (%.1f%% used)", rem, lim, 100*float64(u.Used)/float64(max(lim, 1)))
	}
	pcB := apiBudget{System: "partner center"}
	if c, err := af.pc(ctx); err != nil {
		pcB.Detail = "unknown: " + firstLine(err)
	} else if _, err := c.GetWebhook(ctx); err != nil && !pcapi.IsNotFound(err) {
		if d, ok := pcapi.IsThrottled(err); ok {
			pcB.Detail = fmt.Sprintf("THROTTLED: Partner Center asks to retry after %s", d)
		} else {
			pcB.Detail = "unknown: " + firstLine(err)
		}
	} else {
		pcB.Detail = "not throttled (Partner Center publishes no quota; it answers 429 + Retry-After when one is spent)"
	}
	return []apiBudget{sfB, pcB}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
