package auditor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything the auditor reads from its environment besides platform.Common.
type StageConfig struct {
	SummaryEvery   time.Duration `env:"COSELL_AUDIT_SUMMARY_INTERVAL" default:"30s" help:"a changed link's Audit field is rewritten this long after its first change (one write per link per interval, none when the text is unchanged); 0 turns the write-back off"`
	SummaryEntries int           `env:"COSELL_AUDIT_SUMMARY_ENTRIES" default:"10" help:"timeline entries shown in the Audit field"`
	SampleEvery    time.Duration `env:"COSELL_AUDIT_SAMPLE_INTERVAL" default:"10s" help:"how often lag and throughput are sampled for the charts"`
	History        time.Duration `env:"COSELL_AUDIT_HISTORY" default:"1h" help:"how far back the status page's charts go"`
	// TimelineCacheMiB and TimelineCacheEntries bound the recent timelines kept in memory (timelines.go).
	TimelineCacheMiB     int `env:"COSELL_AUDIT_TIMELINE_CACHE_MIB" default:"4" help:"memory for the recent timelines the Audit summaries, the status page and links get are served from, in MiB (each brought up to date from the audit and outcomes streams with one request each); 0 keeps none: every timeline is read from the stream"`
	TimelineCacheEntries int `env:"COSELL_AUDIT_TIMELINE_CACHE_ENTRIES" default:"500" help:"the most decisions one link's cached timeline holds; a longer timeline is read from the streams each time"`
	// ReferralURL and OpportunityURL link each record on the status page to its side.
	ReferralURL    string `env:"COSELL_STATUS_REFERRAL_URL" help:"the status page's link to a referral in Partner Center, %s = the referral id; empty = the mapping's referralLink (https://partner.microsoft.com/dashboard/referrals/v2/leads/%s)"`
	OpportunityURL string `env:"COSELL_STATUS_OPPORTUNITY_URL" help:"the status page's link to an Opportunity in Salesforce, %s = its id, e.g. https://MYDOMAIN.lightning.force.com/lightning/r/Opportunity/%s/view; empty = ids without a link"`
	// Auth says who may use the status page and API (see AuthConfig).
	Auth AuthConfig
}

// Stage is the auditor as a component: services/auditor/main.go runs it as a process, the in-process
// system next to the other five.
var Stage = stage.Define(contracts.StageAuditor, "audit trail, Audit field write-back and status page", build)

func build(ctx context.Context, cfg *StageConfig, env *stage.Env) (stage.Runner, error) {
	a, err := New(ctx, env.Bus, env.Log)
	if err != nil {
		return nil, err
	}
	a.Consume = env.Consume
	a.Records = Records{ReferralURL: cfg.ReferralURL, OpportunityURL: cfg.OpportunityURL}
	for name, f := range map[string]string{"COSELL_STATUS_REFERRAL_URL": a.Records.ReferralURL, "COSELL_STATUS_OPPORTUNITY_URL": a.Records.OpportunityURL} {
		if f != "" && strings.Count(f, "%s") != 1 {
			return nil, fmt.Errorf("%s=%q: want a URL with one %%s where the record id goes", name, f)
		}
	}
	if a.Records.ReferralURL == "" {
		a.Records.ReferralURL = mapping.Default().ReferralLinkFormat
	}
	a.Options = Options{SummaryEvery: cfg.SummaryEvery, SummaryEntries: cfg.SummaryEntries, SampleEvery: cfg.SampleEvery, History: cfg.History,
		TimelineBytes: cfg.TimelineCacheMiB << 20, TimelineEntries: cfg.TimelineCacheEntries}
	if cfg.TimelineCacheMiB <= 0 {
		a.Options.TimelineBytes = -1
	}
	if err := a.Register(env.Registry); err != nil {
		return nil, err
	}
	if a.Guard, err = NewGuard(cfg.Auth, env.Log); err != nil {
		return nil, err
	}
	if !cfg.Auth.Open() {
		env.Log.Warn("status page and API refuse everyone", "fix", errNoLogins.Error())
	}
	a.Routes(env.Routes)
	return a.Run, nil
}
