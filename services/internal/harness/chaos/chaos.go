// Package chaos is the fault-injection suite: it runs every stage as its own OS process (internal/harness/fleet),
// drives a mixed workload from both sides, kills stages with SIGKILL, restarts the nats-server on the same
// store, and injects upstream faults into both emulators (429 storms, 5xx, latency, token and session
// expiry, row locks, a spent daily allowance, dropped webhooks). Then it waits for quiescence and checks,
// from the emulators' own stores and the streams, that nothing was lost, duplicated or left unexplained.
package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

// Config sizes a run.
type Config struct {
	// Bin holds the built binaries (fleet.Build); Dir is the work directory.
	Bin, Dir string
	// Duration is how long the workload and the faults last.
	Duration time.Duration
	// Rate is workload operations per second.
	Rate float64
	// Kills is how many times a random stage is killed with SIGKILL (and restarted).
	Kills int
	// NATSRestart restarts the nats-server once, on the same store, mid-run.
	NATSRestart bool
	// Faults turns on the upstream faults in both emulators.
	Faults bool
	// SFCDC is sf-ingest's COSELL_SF_CDC: "on" follows Change Data Capture over the Salesforce emulator's
	// Pub/Sub API (the poller only the backstop, 5 minutes away: longer than a run, so change events must
	// carry every change), and the first kill is sf-ingest's, mid-stream; "off" polls only. Empty is "on".
	SFCDC string
	// Quiesce bounds the wait for everything to settle after the workload.
	Quiesce time.Duration
	Seed    int64
	Log     io.Writer
}

// Run executes one chaos run and returns its verdict.
func Run(ctx context.Context, cfg Config) (Verdict, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Quiesce == 0 {
		cfg.Quiesce = 3 * time.Minute
	}
	if cfg.SFCDC == "" {
		cfg.SFCDC = "on"
	}
	if cfg.SFCDC != "on" && cfg.SFCDC != "off" {
		return Verdict{}, fmt.Errorf("chaos: SFCDC %q: on or off", cfg.SFCDC)
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	f, err := fleet.New(cfg.Bin, cfg.Dir)
	if err != nil {
		return Verdict{}, err
	}
	defer f.Close()
	if err := f.StartInfra(ctx); err != nil {
		return Verdict{}, err
	}
	f.Env = append(f.Env,
		"COSELL_SF_POLL_INTERVAL=500ms", "COSELL_PC_POLL_INTERVAL=3s", "COSELL_PC_POLL_OVERLAP=10s",
		"COSELL_ACK_WAIT=5s", "COSELL_MAX_DELIVER=12", "COSELL_SF_LIMIT_PAUSE=2s", "COSELL_LOG_LEVEL=warn",
		"COSELL_AUDIT_SUMMARY_INTERVAL=2s", "COSELL_PC_WRITE_RATE=50",
		"COSELL_SF_CDC="+cfg.SFCDC, "COSELL_SF_BACKSTOP_INTERVAL=5m",
	)
	if err := f.StartStages(ctx); err != nil {
		return Verdict{}, err
	}
	if err := f.RegisterWebhook(ctx); err != nil {
		return Verdict{}, err
	}
	w := &workload{f: f, rng: rand.New(rand.NewSource(cfg.Seed + 1)), log: cfg.Log}
	v := Verdict{}

	// Faults run beside the workload on their own schedule.
	var wg sync.WaitGroup
	var faultErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		faultErr = inject(ctx, f, cfg, rng, &v)
	}()
	ops, err := w.run(ctx, cfg.Duration, cfg.Rate)
	v.Ops = ops
	wg.Wait()
	if err != nil {
		return v, fmt.Errorf("workload: %w", err)
	}
	if faultErr != nil {
		return v, fmt.Errorf("fault injection: %w", faultErr)
	}
	// Heal: no more faults, every stage running.
	if err := clearFaults(ctx, f); err != nil {
		return v, err
	}
	for _, s := range fleet.Stages {
		if done, _ := f.Proc(s).Exited(); done {
			if _, err := f.StartStage(ctx, s); err != nil {
				return v, err
			}
		}
	}
	fmt.Fprintf(cfg.Log, "chaos: workload done (%d ops); waiting for quiescence\n", ops)
	nc, err := nats.Connect("nats://"+f.NATSAddr, nats.MaxReconnects(-1))
	if err != nil {
		return v, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return v, err
	}
	if err := quiesce(ctx, js, f, cfg.Quiesce); err != nil {
		v.Problems = append(v.Problems, err.Error()+"; latest commands: "+latestCommands(ctx, js, 12))
	}
	v.SFCDC = cfg.SFCDC
	if err := check(ctx, js, f, w, &v); err != nil {
		return v, err
	}
	if cfg.SFCDC == "on" && cfg.Kills > 0 && v.SFIngestKills == 0 {
		v.problem("CDC mode: sf-ingest was never killed mid-stream")
	}
	return v, nil
}

// inject spreads the kills, the NATS restart and the upstream faults over the run (cfg.Duration): none
// starts after it, and one under way finishes (a killed stage is started again, a timed fault reset)
// unless ctx ends.
func inject(ctx context.Context, f *fleet.Fleet, cfg Config, rng *rand.Rand, v *Verdict) error {
	schedule, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	type event struct {
		at time.Duration
		do func() error
	}
	var plan []event
	at := func() time.Duration { return time.Duration(rng.Int63n(int64(cfg.Duration * 8 / 10))) }
	// One kill and restart of a stage at a time: a second kill landing while the stage is still starting
	// (a start can wait out an upstream fault) would kill the new process and fail its start, which is
	// the harness's doing, not the stage's. A kill due meanwhile waits for the restart, then kills.
	restarting := map[string]*sync.Mutex{}
	for _, s := range fleet.Stages {
		restarting[s] = &sync.Mutex{}
	}
	var draw sync.Mutex // the events run concurrently; rng is not safe for that
	for i := 0; i < cfg.Kills; i++ {
		first := i == 0
		plan = append(plan, event{at(), func() error {
			draw.Lock()
			s := fleet.Stages[rng.Intn(len(fleet.Stages))]
			if first && cfg.SFCDC == "on" {
				s = "sf-ingest" // kill -9 mid-stream: it must resume from its stored replay id
			}
			pause := time.Duration(300+rng.Intn(1500)) * time.Millisecond
			draw.Unlock()
			restarting[s].Lock()
			defer restarting[s].Unlock()
			if done, _ := f.Proc(s).Exited(); done {
				return nil
			}
			if err := f.Kill(ctx, s); err != nil {
				return err
			}
			v.Kills++
			if s == "sf-ingest" {
				v.SFIngestKills++
			}
			fleet.Pause(ctx, pause)
			_, err := f.StartStage(ctx, s)
			return err
		}})
	}
	if cfg.NATSRestart {
		plan = append(plan, event{cfg.Duration / 2, func() error {
			if err := f.Kill(ctx, "nats"); err != nil {
				return err
			}
			v.NATSRestarts++
			fleet.Pause(ctx, time.Second)
			return f.StartNATS(ctx)
		}})
	}
	if cfg.Faults {
		pcFaults := []map[string]any{
			{"throttle429": 6}, {"fail5xx": 5}, {"latencyMs": 300}, {"dropWebhooks": 3}, {"expireTokens": true},
		}
		sfFaults := []map[string]any{
			{"failNextCalls": 4}, {"lockNextWrites": 4}, {"expireSessions": true}, {"latencyMs": 300}, {"exhaustDailyLimit": true},
		}
		for _, body := range pcFaults {
			body := body
			plan = append(plan, event{at(), func() error {
				v.Faults++
				return fleet.SendJSON(ctx, "POST", f.PCURL()+"/_emulator/faults", body, nil)
			}})
		}
		for _, body := range sfFaults {
			body := body
			plan = append(plan, event{at(), func() error {
				v.Faults++
				if err := fleet.SendJSON(ctx, "POST", f.SFURL()+"/_emulator/faults", body, nil); err != nil {
					return err
				}
				// Latency and a spent allowance last a few seconds, then the org recovers.
				if body["latencyMs"] != nil || body["exhaustDailyLimit"] != nil {
					fleet.Pause(ctx, 3*time.Second)
					return fleet.SendJSON(ctx, "POST", f.SFURL()+"/_emulator/faults", map[string]any{"reset": true}, nil)
				}
				return nil
			}})
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(plan))
	for _, ev := range plan {
		ev := ev
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-schedule.Done():
				return
			case <-time.After(time.Until(start.Add(ev.at))):
			}
			if err := ev.do(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func clearFaults(ctx context.Context, f *fleet.Fleet) error {
	if err := fleet.SendJSON(ctx, "POST", f.PCURL()+"/_emulator/faults", map[string]any{}, nil); err != nil {
		return err
	}
	return fleet.SendJSON(ctx, "POST", f.SFURL()+"/_emulator/faults", map[string]any{"reset": true}, nil)
}

// quiesce waits until every consumer is caught up and neither emulator saw a write for several seconds
// (longer than the reconcile poll, so dropped webhooks are healed too).
func quiesce(ctx context.Context, js jetstream.JetStream, f *fleet.Fleet, within time.Duration) error {
	deadline := time.Now().Add(within)
	calm, last := 0, ""
	for calm < 8 {
		state, busy := progress(ctx, js, f)
		if busy || state != last {
			calm = 0
		} else {
			calm++
		}
		last = state
		if time.Now().After(deadline) {
			return fmt.Errorf("not quiet after %s: %s", within, state)
		}
		time.Sleep(time.Second)
	}
	return nil
}

// progress summarises what is still moving: consumer backlogs and the emulators' write counts.
func progress(ctx context.Context, js jetstream.JetStream, f *fleet.Fleet) (string, bool) {
	busy := false
	state := ""
	for _, c := range contracts.Consumers() {
		cons, err := js.Consumer(ctx, c.Stream, c.Durable)
		if err != nil {
			return "consumer " + c.Durable + ": " + err.Error(), true
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err.Error(), true
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			busy = true
			state += fmt.Sprintf("%s %d/%d ", c.Durable, info.NumPending, info.NumAckPending)
		}
	}
	// A lease not renewed for longer than its renewal period is held by a killed process: its stage's
	// leader work (sf-ingest's change-event catch-up) waits for the key to expire and a standby to take
	// over, up to LeaseTTL with nothing moving. That is not quiet.
	if kv, err := js.KeyValue(ctx, contracts.BucketLeases); err == nil {
		if keys, err := kv.ListKeys(ctx); err == nil {
			for k := range keys.Keys() {
				e, err := kv.Get(ctx, k)
				if err == nil && time.Since(e.Created()) > contracts.LeaseTTL/3+2*time.Second {
					busy = true
					state += fmt.Sprintf("lease %s unrenewed since %s ", k, e.Created().Format(time.TimeOnly))
				}
			}
		}
	}
	var pc, sf map[string]int
	_ = fleet.GetJSON(ctx, f.PCURL()+"/_emulator/counts", &pc)
	_ = fleet.GetJSON(ctx, f.SFURL()+"/_emulator/counts", &sf)
	writes := pc["referrals.create"] + pc["referrals.patch"]
	for k, n := range sf {
		if containsAny(k, "create", "update", "upsert", "delete") {
			writes += n
		}
	}
	return state + fmt.Sprintf("writes %d", writes), busy
}

// latestCommands lists the newest write commands, to show what keeps a run from settling.
func latestCommands(ctx context.Context, js jetstream.JetStream, n int) string {
	s, err := js.Stream(ctx, contracts.StreamRequested)
	if err != nil {
		return err.Error()
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err.Error()
	}
	var out []string
	for seq := info.State.LastSeq; seq > 0 && len(out) < n; seq-- {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, m.Header.Get("ce-id")+" from "+m.Header.Get("ce-source"))
	}
	return strings.Join(out, " | ")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
