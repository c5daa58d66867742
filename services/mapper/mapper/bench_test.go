package mapper

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// BenchmarkHandleObserved measures one decision on a referral's snapshot as the stage makes it, against an
// embedded server: the link's read, the decision, the link's compare-and-set with its outbox and the
// outbox's publish. Each of 100 referrals is seen first (a create) and then changed (an update), so the
// figure mixes both as a backlog does; run with -cpuprofile to see where a decision's CPU goes.
func BenchmarkHandleObserved(b *testing.B) {
	ns := bustest.Server(b)
	bus := bustest.Bus(b, ns, bustest.Config(8, 30*time.Second), contracts.StageMapper, nil)
	svc := mapperOn(b, bus, time.Now().UTC())
	ctx := context.Background()
	const links = 100
	events := make([]platform.Event, 0, b.N)
	for i := range b.N {
		events = append(events, referralSeen(b, fmt.Sprintf("R-bench-%03d", i%links), 1+i/links))
	}
	b.ResetTimer()
	for _, e := range events {
		if err := svc.HandleObserved(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}
