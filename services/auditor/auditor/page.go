package auditor

import "html/template"

const pageStyle = `<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem 2rem;color:#1b1f24;background:#fff}
h1{font-size:1.35rem;margin:0 0 .3rem} h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
p.meta{color:#57606a;margin:.2rem 0 1rem;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:.28rem .55rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f6f8fa;font-weight:600} .num{text-align:right;font-variant-numeric:tabular-nums}
.k{font-weight:600} .bad{color:#b42318} .ok{color:#067647} .warn{color:#b54708}
.cards{display:flex;gap:.8rem;flex-wrap:wrap} .card{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .9rem;min-width:7rem;font-size:.85rem}
.card b{display:block;font-size:1.35rem}
.charts{display:flex;gap:1.5rem;flex-wrap:wrap} .chart{border:1px solid #e5e7eb;border-radius:6px;padding:.4rem;background:#fff}
button{font:inherit;font-size:.8rem;padding:.15rem .6rem;border:1px solid #1f6feb;background:#1f6feb;color:#fff;border-radius:4px;cursor:pointer}
.flash{background:#ecfdf3;border:1px solid #abefc6;padding:.4rem .8rem;border-radius:6px}
form.find input{font:inherit;padding:.2rem .4rem;width:22rem}
code{font-size:.8rem}
</style>`

var funcs = template.FuncMap{"short": short}

var pageTemplate = template.Must(template.New("status").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell status</title>
<meta http-equiv="refresh" content="10">` + pageStyle + `</head><body>
<h1>cosell — Partner Center ⇄ Salesforce</h1>
<form class="who" method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}">Signed in as <b>{{.Who.Name}}</b> ({{.Who.Role}}) {{if eq .Who.Via "session"}}<button type="submit">Sign out</button>{{end}}</form>
<p class="meta">As of {{.Now}} · refreshes every 10 s · JSON: <a href="/api/status">status</a>, <a href="/api/links">links</a>, <a href="/api/decisions">decisions</a>, <a href="/api/deadletters">dead letters</a>, <a href="/api/history">history</a></p>
{{if .Flash}}<p class="flash">{{.Flash}}</p>{{end}}
<form class="find" action="/link" method="get"><label>Timeline of a record: <input name="id" placeholder="referral id, opportunity id or link id"></label> <button type="submit">Show</button></form>
<h2>Overview</h2>
<div class="cards">
<div class="card">links<b>{{.Status.Links}}</b></div>
{{range $s, $n := .Status.LinkStates}}<div class="card">{{$s}}<b class="{{if eq $s "failed"}}bad{{end}}">{{$n}}</b></div>{{end}}
<div class="card">dead letters<b class="{{if .Status.DeadLetters}}bad{{else}}ok{{end}}">{{.Status.DeadLetters}}</b></div>
{{range .Kinds}}<div class="card">{{.}}<b>{{index $.Status.Decisions .}}</b></div>{{end}}
</div>
<h2>Stages</h2>
<table><tr><th>stage</th><th>consumer</th><th>stream</th><th class="num">pending</th><th class="num">in flight</th><th class="num">retrying</th><th class="num">per minute</th><th>replicas pulling</th><th>last delivery</th></tr>
{{range .Status.Lag}}<tr><td>{{.Stage}}</td><td>{{.Consumer}}</td><td>{{.Stream}}</td><td class="num {{if .Pending}}warn{{end}}">{{.Pending}}</td><td class="num">{{.AckPending}}</td><td class="num {{if .Redelivered}}bad{{end}}">{{.Redelivered}}</td><td class="num">{{printf "%.1f" .PerMinute}}</td><td class="{{if .Waiting}}ok{{else}}bad{{end}}">{{if .Waiting}}yes{{else}}none{{end}}</td><td>{{with .LastActive}}{{.Format "15:04:05"}}{{else}}—{{end}}</td></tr>{{end}}
</table>
<div class="charts">{{.LagChart}}{{.ThroughputChart}}</div>
<h2 id="deadletters">Dead letters</h2>
{{if .DeadLetters}}<table><tr><th class="num">seq</th><th>parked at</th><th>stage</th><th>link</th><th>subject</th><th class="num">deliveries</th><th>reason</th><th></th></tr>
{{range .DeadLetters}}<tr><td class="num">{{.Seq}}</td><td>{{.At.Format "15:04:05"}}</td><td>{{.Stage}}</td><td><a href="/link?id={{.LinkID}}">{{short .LinkID}}</a></td><td><code>{{.Subject}}</code></td><td class="num">{{.Deliveries}}</td><td class="bad">{{.Reason}}</td>
<td><form method="post" action="/deadletters/{{.Seq}}/retry"><input type="hidden" name="csrf" value="{{$.CSRF}}">{{if $.Who.Operator}}<button type="submit">Re-drive</button>{{else}}operators re-drive{{end}}</form></td></tr>{{end}}
</table>{{else}}<p class="ok">No dead letters.</p>{{end}}
<h2>Links</h2>
<table><tr><th>link</th><th>state</th><th>referral</th><th>opportunity</th><th>PC seen</th><th>SF seen</th><th>last error</th><th>updated</th></tr>
{{range .Links}}<tr><td><a href="/link?id={{.ID}}">{{short .ID}}</a></td><td class="{{if eq .State "linked"}}ok{{else if eq .State "failed"}}bad{{else}}warn{{end}}">{{.State}}</td><td>{{.ReferralID}}</td><td>{{.OpportunityID}}</td><td>{{short .PC.Seen.Tag}}</td><td>{{short .SF.Seen.Tag}}</td><td class="bad">{{.LastError}}</td><td>{{.UpdatedAt.Format "15:04:05"}}</td></tr>{{end}}
</table>
<h2>Recent decisions</h2>
<table><tr><th>at</th><th>stage</th><th>kind</th><th>link</th><th>target</th><th>fields</th><th>detail</th></tr>
{{range .Recent}}<tr><td>{{.At.Format "15:04:05.000"}}</td><td>{{.Stage}}</td><td class="k">{{.Kind}}</td><td><a href="/link?id={{.LinkID}}">{{short .LinkID}}</a></td><td>{{.Target}}</td><td>{{range .Fields}}{{.}} {{end}}</td><td>{{.Detail}}</td></tr>{{end}}
</table>
</body></html>`))

var linkTemplate = template.Must(template.New("link").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell — {{.ID}}</title>` + pageStyle + `</head><body>
<h1>Timeline of {{.ID}}</h1>
<p class="meta"><a href="/">← status</a> · JSON: <a href="/api/timeline?id={{.ID}}">/api/timeline?id={{.ID}}</a></p>
{{if .Err}}<p class="bad">{{.Err}}</p>{{end}}
{{with .Record.Link}}<table>
<tr><th>link</th><td>{{.ID}}</td><th>state</th><td>{{.State}}</td><th>origin</th><td>{{.Origin}}</td></tr>
<tr><th>referral</th><td>{{.ReferralID}}</td><th>PC version seen</th><td>{{.PC.Seen.Tag}} {{.PC.Seen.At.Format "2006-01-02 15:04:05"}}</td><th>PC pending</th><td>{{.PC.Pending}}</td></tr>
<tr><th>opportunity</th><td>{{.OpportunityID}}</td><th>SF version seen</th><td>{{.SF.Seen.Tag}}</td><th>SF pending</th><td>{{.SF.Pending}}</td></tr>
<tr><th>sync status</th><td colspan="5">{{if .Status}}{{.Status}}{{else}}✔{{end}}{{if .Paused}} (link paused){{end}}</td></tr>
<tr><th>last error</th><td colspan="5" class="bad">{{.LastError}}</td></tr>
</table>{{end}}
<h2>Decisions, oldest first</h2>
<table><tr><th>at</th><th>stage</th><th>kind</th><th>target</th><th>fields</th><th>detail</th><th>cause</th></tr>
{{range .Record.Timeline}}<tr><td>{{.At.Format "2006-01-02 15:04:05.000"}}</td><td>{{.Stage}}</td><td class="k {{if or (eq .Kind "failed") (eq .Kind "dead-letter") (eq .Kind "conflict")}}bad{{end}}">{{.Kind}}</td><td>{{.Target}}</td><td>{{range .Fields}}{{.}} {{end}}</td><td>{{.Detail}}</td><td><code>{{short .Cause}}</code></td></tr>{{end}}
</table>
</body></html>`))
