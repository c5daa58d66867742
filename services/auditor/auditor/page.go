package auditor

import (
	"html/template"

	"github.com/cosell-dev/cosell/contracts"
)

const pageStyle = `<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2rem 2rem;color:#1b1f24;background:#fff}
h1{font-size:1.35rem;margin:0 0 .3rem} h2{font-size:1.05rem;margin:1.6rem 0 .5rem} h3{font-size:.9rem;margin:.8rem 0 .3rem;color:#57606a}
p.meta{color:#57606a;margin:.2rem 0 .8rem;font-size:.85rem}
nav a{margin-right:.9rem;font-size:.9rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:.28rem .55rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f6f8fa;font-weight:600} .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.k{font-weight:600} .bad{color:#b42318} .ok{color:#067647} .warn{color:#b54708} .dim{color:#6b7280}
.cards{display:flex;gap:.7rem;flex-wrap:wrap;margin-bottom:.4rem} .card{border:1px solid #d0d7de;border-radius:6px;padding:.45rem .8rem;min-width:7.5rem;font-size:.8rem;color:#57606a}
.card b{display:block;font-size:1.35rem;color:#1b1f24} .card b.bad{color:#b42318} .card b.ok{color:#067647} .card b.warn{color:#b54708}
.charts{display:flex;gap:1.5rem;flex-wrap:wrap;margin-top:.8rem} .chart{border:1px solid #e5e7eb;border-radius:6px;padding:.4rem;background:#fff}
button{font:inherit;font-size:.8rem;padding:.15rem .6rem;border:1px solid #1f6feb;background:#1f6feb;color:#fff;border-radius:4px;cursor:pointer}
button:disabled{background:#eaeef2;border-color:#d0d7de;color:#6b7280;cursor:not-allowed}
.flash{background:#ecfdf3;border:1px solid #abefc6;padding:.4rem .8rem;border-radius:6px}
.flash.bad{background:#fef3f2;border-color:#fecdca}
form.find input{font:inherit;padding:.25rem .45rem;width:26rem}
form.inline{display:inline}
code{font-size:.8rem;background:#f6f8fa;padding:0 .2rem;border-radius:3px;white-space:nowrap}
.deal{font-weight:600} .sub{color:#57606a;font-size:.8rem}
.pill{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.75rem;border:1px solid #d0d7de}
.pill.written,.pill.linked{background:#ecfdf3;border-color:#abefc6;color:#067647}
.pill.failed,.pill.dead{background:#fef3f2;border-color:#fecdca;color:#b42318}
.pill.conflict,.pill.held,.pill.flight{background:#fffaeb;border-color:#fedf89;color:#b54708}
.filters a{margin-right:.6rem;font-size:.85rem} .filters a.on{font-weight:700;text-decoration:none;color:#1b1f24}
.chg{white-space:nowrap} .before{color:#6b7280;text-decoration:line-through} .after{font-weight:600}
.who{float:right;font-size:.85rem}
</style>`

// kindLabels are the card labels of the decision counts: each says what was counted, so no two cards
// read alike (a failed write is not a failed link).
var kindLabels = map[string]string{
	contracts.DecisionApplied:    "changes sent",
	contracts.DecisionCreated:    "creates sent",
	contracts.DecisionWritten:    "writes done",
	contracts.DecisionFailed:     "writes failed or refused",
	contracts.DecisionEcho:       "own writes seen back (echo)",
	contracts.DecisionNoChange:   "snapshots with no change",
	contracts.DecisionStale:      "stale snapshots skipped",
	contracts.DecisionConflict:   "conflicts decided",
	contracts.DecisionHeld:       "changes held",
	contracts.DecisionIgnored:    "records ignored (not opted in)",
	contracts.DecisionLinked:     "pairs linked",
	contracts.DecisionDeadLetter: "messages parked",
	contracts.DecisionRedriven:   "dead letters re-driven",
}

// linkStateLabels are the card labels of the link states.
var linkStateLabels = map[string]string{
	contracts.LinkLinked:              "linked pairs",
	contracts.LinkCreatingOpportunity: "Opportunity being created",
	contracts.LinkCreatingReferral:    "referral being created",
	contracts.LinkFailed:              "creates failed",
}

func label(m map[string]string, k string) string {
	if l, ok := m[k]; ok {
		return l
	}
	return k
}

// pillClass is the CSS class of an outcome.
func pillClass(outcome string) string {
	switch outcome {
	case "written", "linked":
		return "written"
	case "failed":
		return "failed"
	case "dead letter":
		return "dead"
	case "conflict", "held":
		return outcome
	case "in flight":
		return "flight"
	}
	return ""
}

var funcs = template.FuncMap{
	"short":      short,
	"kindLabel":  func(k string) string { return label(kindLabels, k) },
	"stateLabel": func(k string) string { return label(linkStateLabels, k) },
	"pill":       pillClass,
	"side":       sideName,
	"bad": func(k string) bool {
		return k == contracts.DecisionFailed || k == contracts.DecisionDeadLetter || k == contracts.DecisionConflict
	},
}

// header is the top of every page: who is signed in, the search, the sections.
const header = `<form class="who" method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}">Signed in as <b>{{.Who.Name}}</b> ({{.Who.Role}}) {{if eq .Who.Via "session"}}<button type="submit">Sign out</button>{{end}}</form>
<h1>cosell — Partner Center ⇄ Salesforce</h1>
<nav><a href="/#overview">Overview</a><a href="/#attention">Needs attention</a><a href="/#deadletters">Dead letters</a><a href="/#changes">Recent changes</a><a href="/#links">All deals</a><a href="/#stages">Stages</a></nav>
<form class="find" action="/link" method="get"><p><label>Find a deal: <input name="id" value="{{.ID}}" placeholder="deal or customer name, referral id, opportunity id or link id"></label> <button type="submit">Find</button></p></form>`

var pageTemplate = template.Must(template.New("status").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell status</title>
<meta http-equiv="refresh" content="10">` + pageStyle + `</head><body>
{{template "header" .}}
<p class="meta">As of {{.Now}} · refreshes every 10 s · JSON: <a href="/api/status">status</a>, <a href="/api/links">links</a>, <a href="/api/changes">changes</a>, <a href="/api/decisions">decisions</a>, <a href="/api/deadletters">dead letters</a>, <a href="/api/history">history</a></p>
{{if .Flash}}<p class="flash" id="flash">{{.Flash}}</p>{{end}}
<section id="overview"><h2>Overview</h2>
<h3>Deals</h3>
<div class="cards">
<div class="card">deals known<b>{{.Status.Links}}</b></div>
<div class="card">both sides in step<b class="ok">{{.Status.InStep}}</b></div>
<div class="card">need attention<b class="{{if .Attention}}warn{{else}}ok{{end}}">{{len .Attention}}</b></div>
{{range $s, $n := .Status.LinkStates}}{{if ne $s "linked"}}<div class="card">{{stateLabel $s}}<b class="{{if eq $s "failed"}}bad{{else}}warn{{end}}">{{$n}}</b></div>{{end}}{{end}}
<div class="card">dead letters parked<b class="{{if .Status.DeadLetters}}bad{{else}}ok{{end}}">{{.Status.DeadLetters}}</b></div>
{{with .Status.Drift}}<div class="card" id="drift-card">drift found by <code>cosell drift</code> at {{.At.Format "15:04"}}<b class="{{if .Findings}}bad{{else}}ok{{end}}">{{len .Findings}}</b></div>{{else}}<div class="card" id="drift-card">drift: not checked yet<b class="warn">?</b><code>cosell drift</code></div>{{end}}
</div>
{{if .Kinds}}<h3>Decisions since the auditor started</h3>
<div class="cards">
{{range .Kinds}}<div class="card">{{kindLabel .}}<b class="{{if bad .}}bad{{end}}">{{index $.Status.Decisions .}}</b></div>{{end}}
</div>{{end}}
</section>
<section id="attention"><h2>Needs attention</h2>
{{if .Attention}}<table><tr><th>deal</th><th>value</th><th>Partner Center</th><th>Salesforce</th><th>why</th><th>see</th></tr>
{{range .Attention}}<tr><td><a class="deal" href="/link?id={{.ID}}">{{or .Deal .ID}}</a><div class="sub">{{.Customer}}</div></td><td class="num">{{.Value}}</td><td>{{template "pc" .}}</td><td>{{template "sf" .}}</td><td class="warn">{{.Attention}}</td><td><code>{{.Fix}}</code></td></tr>{{end}}
</table>{{else}}<p class="ok">Nothing held, failed or waiting for a person.</p>{{end}}
{{with .Status.Drift}}{{if .Findings}}<h3 id="drift">Drift: what <code>cosell drift</code> found at {{.At.Format "2006-01-02 15:04:05"}} (checked {{.Links}} links, {{.Referrals}} referrals, {{.Opportunities}} opted-in Opportunities){{if .Fixed}}, with --fix{{end}}</h3>
<table><tr><th>finding</th><th>deal</th><th>referral</th><th>Opportunity</th><th>fields</th><th>detail</th></tr>
{{range .Findings}}{{$d := index $.Deals .LinkID}}<tr><td class="bad">{{.Kind}}</td><td>{{if .LinkID}}<a href="/link?id={{.LinkID}}">{{or $d.Deal .LinkID}}</a>{{else}}<span class="dim">no link</span>{{end}}</td><td>{{.ReferralID}}</td><td>{{.OpportunityID}}</td><td>{{range .Fields}}{{.}} {{end}}</td><td>{{.Detail}}</td></tr>{{end}}
</table>
<p>{{if .Fixed}}The heal was published; check again: <code>cosell drift</code>{{else}}Heal what re-observing can heal: <code>cosell drift --fix</code>; then check again: <code>cosell drift</code>{{end}}. This list is the last run's: it changes when drift runs again.</p>{{end}}{{end}}
</section>
<section id="deadletters"><h2>Dead letters</h2>
{{if .DeadLetters}}<p>Messages a stage gave up on, with why. Fix the cause first (the reason says what failed), then re-drive: the message is published again on its subject and handled as usual.</p>
<table><tr><th class="num">seq</th><th>parked at</th><th>deal</th><th>stage</th><th class="num">deliveries</th><th>reason</th><th>command</th><th></th></tr>
{{range .DeadLetters}}{{$d := index $.Deals .LinkID}}<tr><td class="num">{{.Seq}}</td><td>{{.At.Format "2006-01-02 15:04:05"}}</td><td><a href="/link?id={{.LinkID}}">{{or $d.Deal .LinkID}}</a><div class="sub">{{$d.Customer}}</div></td><td>{{.Stage}}</td><td class="num">{{.Deliveries}}</td><td class="bad">{{.Reason}}</td><td><code>cosell dlq show {{.Seq}}</code><br><code>cosell dlq retry {{.Seq}}</code></td>
<td><form method="post" action="/deadletters/{{.Seq}}/retry"><input type="hidden" name="csrf" value="{{$.CSRF}}">{{if $.Who.Operator}}<button type="submit">Re-drive</button>{{else}}<button type="submit" disabled title="re-drive needs the operator role">Re-drive (operators only)</button>{{end}}</form></td></tr>{{end}}
</table>
<p><form class="inline" method="post" action="/deadletters/retry"><input type="hidden" name="csrf" value="{{$.CSRF}}">{{if $.Who.Operator}}<button type="submit" id="redrive-all">Re-drive all {{len .DeadLetters}}</button>{{else}}<button type="submit" disabled>Re-drive all (operators only)</button>{{end}}</form> · the same from a shell: <code>cosell dlq retry --all</code> (list: <code>cosell dlq ls</code>)</p>
{{else}}<p class="ok">No dead letters.</p>{{end}}
</section>
<section id="changes"><h2>Recent changes</h2>
<p class="filters">Outcome: <a href="/#changes" class="{{if not .Outcome}}on{{end}}">all</a>{{range .Outcomes}}<a href="/?outcome={{.}}#changes" class="{{if eq . $.Outcome}}on{{end}}">{{.}}</a>{{end}}</p>
{{if .Changes}}<table><tr><th>at</th><th>deal</th><th>from</th><th>fields (before → after)</th><th>outcome</th><th>decided / written by</th><th>steps</th></tr>
{{range .Changes}}{{$d := index $.Deals .LinkID}}<tr><td>{{.At.Format "15:04:05"}}</td><td><a href="/link?id={{.LinkID}}">{{or $d.Deal .LinkID}}</a></td><td>{{.From}}</td><td>{{if and .Values (le (len .Values) 3)}}{{range .Values}}<div class="chg">{{.Field}}: <span class="before">{{.Before}}</span> → <span class="after">{{.After}}</span></div>{{end}}{{else}}{{range .Fields}}{{.}} {{end}}{{end}}</td><td><span class="pill {{pill .Outcome}}">{{.Outcome}}</span></td><td>{{range $i, $s := .Stages}}{{if $i}} → {{end}}{{$s}}{{end}}</td><td class="sub">{{range $i, $s := .Steps}}{{if $i}} · {{end}}{{$s.Kind}}{{end}}{{with .Detail}}<br>{{.}}{{end}}</td></tr>{{end}}
</table><p class="meta">The latest 25 changes; all the auditor keeps: <a href="/api/changes{{with .Outcome}}?outcome={{.}}{{end}}">/api/changes</a>.</p>{{else}}<p class="dim">No {{.Outcome}} changes among the latest decisions.</p>{{end}}
</section>
<section id="links"><h2>All deals</h2>
{{if .Links}}<table><tr><th>deal</th><th>customer</th><th class="num">value</th><th>Partner Center</th><th>Salesforce</th><th>sync</th><th>updated</th></tr>
{{range .Links}}<tr><td><a class="deal" href="/link?id={{.ID}}">{{or .Deal .ID}}</a></td><td>{{.Customer}}</td><td class="num">{{.Value}}</td><td>{{template "pc" .}}</td><td>{{template "sf" .}}</td><td class="{{if .Attention}}warn{{else}}ok{{end}}">{{if .Attention}}needs attention{{else}}{{or .Status "✔"}}{{end}}</td><td>{{.UpdatedAt.Format "15:04:05"}}</td></tr>{{end}}
</table>{{else}}<p class="dim">No deals yet.</p>{{end}}
</section>
<section id="stages"><h2>Stages</h2>
<table><tr><th>stage</th><th>consumer</th><th>stream</th><th class="num">pending</th><th class="num">in flight</th><th class="num">being retried</th><th class="num">per minute</th><th>replicas pulling</th><th>last delivery</th></tr>
{{range .Status.Lag}}<tr><td>{{.Stage}}</td><td>{{.Consumer}}</td><td>{{.Stream}}</td><td class="num {{if .Pending}}warn{{end}}">{{.Pending}}</td><td class="num">{{.AckPending}}</td><td class="num {{if .Redelivered}}bad{{end}}">{{.Redelivered}}</td><td class="num">{{printf "%.1f" .PerMinute}}</td><td class="{{if .Waiting}}ok{{else}}bad{{end}}">{{if .Waiting}}yes{{else}}none{{end}}</td><td>{{with .LastActive}}{{.Format "15:04:05"}}{{else}}—{{end}}</td></tr>{{end}}
</table>
<div class="charts">{{.LagChart}}{{.ThroughputChart}}</div>
</section>
</body></html>`))

// sides renders each side's status with a link into that system.
const sides = `{{define "pc"}}{{if .ReferralID}}{{if .ReferralURL}}<a href="{{.ReferralURL}}" target="_blank" rel="noopener">{{or .PCStatus "referral"}}</a>{{else}}{{or .PCStatus "referral"}}{{end}}<div class="sub">{{.ReferralID}}</div>{{else}}<span class="dim">none yet</span>{{end}}{{end}}
{{define "sf"}}{{if .OpportunityID}}{{if .OpportunityURL}}<a href="{{.OpportunityURL}}" target="_blank" rel="noopener">{{or .SFStatus "Opportunity"}}</a>{{else}}{{or .SFStatus "Opportunity"}}{{end}}<div class="sub">{{.OpportunityID}}</div>{{else}}<span class="dim">none yet</span>{{end}}{{end}}`

var linkTemplate = template.Must(template.New("link").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell — {{with .Deal}}{{or .Deal .ID}}{{else}}{{.ID}}{{end}}</title>
{{if .Steps}}<meta http-equiv="refresh" content="10">{{end}}` + pageStyle + `</head><body>
{{template "header" .}}
{{if .Err}}<p class="bad">{{.Err}}</p>{{end}}
{{with .Found}}<h2>Deals matching “{{$.ID}}”</h2>
<table><tr><th>deal</th><th>customer</th><th class="num">value</th><th>Partner Center</th><th>Salesforce</th></tr>
{{range .}}<tr><td><a class="deal" href="/link?id={{.ID}}">{{or .Deal .ID}}</a></td><td>{{.Customer}}</td><td class="num">{{.Value}}</td><td>{{template "pc" .}}</td><td>{{template "sf" .}}</td></tr>{{end}}
</table>{{end}}
{{with .Deal}}<section id="deal"><h2>{{or .Deal .ID}}</h2>
<table>
<tr><th>customer</th><td>{{.Customer}}</td><th>value</th><td>{{.Value}}</td><th>link</th><td>{{.ID}} ({{.State}}, started in {{side .Origin}})</td></tr>
<tr><th>Partner Center</th><td>{{template "pc" .}}</td><th>Salesforce</th><td>{{template "sf" .}}</td><th>sync status</th><td class="{{if .Attention}}warn{{else}}ok{{end}}">{{or .Status "✔"}}{{if .Paused}} (paused){{end}}</td></tr>
{{if .Attention}}<tr><th>needs attention</th><td colspan="5" class="warn">{{.Attention}} · <code>{{.Fix}}</code></td></tr>{{end}}
</table></section>{{end}}
{{if .Steps}}<section id="timeline"><h2>Timeline, newest last</h2>
<p class="meta">As of {{.Now}} · refreshes every 10 s · the same from a shell: <code>cosell links get {{with .Deal}}{{.ID}}{{else}}{{.ID}}{{end}}</code> · JSON: <a href="/api/timeline?id={{with .Deal}}{{.ID}}{{else}}{{.ID}}{{end}}">/api/timeline</a></p>
<table><tr><th>at</th><th>by</th><th>from</th><th>what</th><th>field: before → after</th><th>why</th></tr>
{{range .Steps}}<tr><td>{{.At.Format "2006-01-02 15:04:05"}}</td><td>{{.By}}</td><td>{{.From}}</td><td class="k {{if bad .Kind}}bad{{end}}">{{.What}}</td>
<td>{{if .Changes}}{{range .Changes}}<div class="chg">{{.Field}}: <span class="before">{{.Before}}</span> → <span class="after">{{.After}}</span> <span class="sub">({{.From}})</span></div>{{end}}{{else}}{{range .Fields}}{{.}} {{end}}{{end}}</td>
<td>{{.Detail}}</td></tr>{{end}}
</table></section>{{end}}
</body></html>`))

func init() {
	for _, t := range []*template.Template{pageTemplate, linkTemplate} {
		template.Must(t.New("header").Parse(header))
		template.Must(t.New("sides").Parse(sides))
	}
}
