package stage

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// Two stages in one process (as in `cosell run`) count their own Salesforce calls, not each other's.
func TestStagesCountTheirOwnCalls(t *testing.T) {
	t.Parallel()
	_, domain := emutest.SalesforceServer(t, sfemu.Options{DailyAPILimit: 1000})
	cfg := emutest.SalesforceConfig(domain)
	stage := func() (*Env, *platform.APIMetrics) {
		m := NewClientMetrics(prometheus.NewRegistry())
		return &Env{Clients: m}, m.API
	}
	envA, apiA := stage()
	envB, apiB := stage()
	a, err := envA.SFClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envB.SFClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Query(t.Context(), "SELECT Id FROM Account"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Limits(t.Context()); err != nil {
		t.Fatal(err)
	}
	sys := string(contracts.Salesforce)
	for _, c := range []struct {
		name      string
		api       *platform.APIMetrics
		op        string
		want      float64
		otherOp   string
		remaining float64
	}{
		// Each login costs one call (go-salesforce checks the token with GET /limits): a's last query was
		// call 5 of the org's day (two logins, three queries), b's /limits call 6.
		{"a", apiA, "query", 3, "limits", 1000 - 5},
		{"b", apiB, "limits", 1, "query", 1000 - 6},
	} {
		if got := testutil.ToFloat64(c.api.Requests.WithLabelValues(sys, c.op, "200")); got != c.want {
			t.Errorf("stage %s counted %v %s calls, want %v", c.name, got, c.op, c.want)
		}
		if got := testutil.ToFloat64(c.api.Requests.WithLabelValues(sys, c.otherOp, "200")); got != 0 {
			t.Errorf("stage %s counted %v %s calls made by the other stage", c.name, got, c.otherOp)
		}
		if got := testutil.ToFloat64(c.api.Budget.WithLabelValues(sys)); got != c.remaining {
			t.Errorf("stage %s: budget remaining %v, want %v", c.name, got, c.remaining)
		}
	}
}
