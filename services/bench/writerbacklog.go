package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
)

// writerBacklogRun is sf-writer's own backlog: n new referrals shared while sf-writer is stopped, so their
// commands wait in its durable (a Salesforce outage, a deploy, the writer scaled to zero), then sf-writer
// started again. Unlike the PC → SF backlog, whose commands reach sf-writer as a stream at the rate the
// mapper decides them (so a batch holds what arrived while it lingered), here every command is waiting when
// the writer starts: what it costs in Salesforce calls to write a real backlog.
type writerBacklogRun struct {
	n        int
	rate     float64
	from, to snapshot
}

// writerBacklog stops sf-writer, shares n referrals, waits until all their commands wait in sf-writer's
// durable, starts it again and reports the Salesforce calls it made until every one is linked.
func (b *bench) writerBacklog(ctx context.Context, n int) (run writerBacklogRun, err error) {
	run.n = n
	f := b.f
	before, err := sfLinked(ctx, f)
	if err != nil {
		return run, err
	}
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.Stop(stopCtx, contracts.StageSFWriter); err != nil {
		return run, err
	}
	started := false
	defer func() {
		if !started {
			if _, serr := f.StartStage(ctx, contracts.StageSFWriter); err == nil {
				err = serr
			}
		}
	}()
	cons, err := b.js.Consumer(ctx, contracts.StreamRequested, contracts.ConsumerSFWriter)
	if err != nil {
		return run, err
	}
	waiting := func(ctx context.Context) (int, error) {
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, err
		}
		return int(info.NumPending + uint64(info.NumAckPending)), nil
	}
	held, err := waiting(ctx)
	if err != nil {
		return run, err
	}
	if _, err := createReferralsNamed(ctx, f, n, "Outage"); err != nil {
		return run, err
	}
	if err := waitRecords(ctx, waiting, held+n, time.Duration(n)*time.Second); err != nil {
		return run, fmt.Errorf("sf-writer's durable never held the %d commands: %w", n, err)
	}
	run.from = counts(ctx, f)
	start := time.Now()
	started = true
	if _, err := f.StartStage(ctx, contracts.StageSFWriter); err != nil {
		return run, err
	}
	if err := waitRecords(ctx, func(ctx context.Context) (int, error) { return sfLinked(ctx, f) }, before+n, time.Duration(n)*time.Second); err != nil {
		return run, err
	}
	run.rate = float64(n) / time.Since(start).Seconds()
	if _, err := quiet(ctx, b.js, f); err != nil {
		return run, err
	}
	run.to = counts(ctx, f)
	writes := sfWriteCalls(run.from, run.to)
	all := run.to.sfAPI() - run.from.sfAPI()
	b.r.add("| sf-writer's own backlog: %d new referrals shared while sf-writer was stopped (their commands waiting in its durable), then sf-writer started | %.1f referrals/s from its start (the process's start included) |", n, run.rate)
	b.r.add("| … Salesforce API calls per 1,000 referrals (from sf-writer's start, its start-up's describe reads and the Audit write-backs included) | %.1f writes %s; all calls %.1f %s|",
		per1000(writes, n), strings.TrimSpace(endpoints(run.from.sf, run.to.sf, isSFWrite)), per1000(all, n), sfEndpoints(run.from, run.to))
	return run, nil
}
