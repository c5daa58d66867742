package auditor

import "html/template"

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{"short": short}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell status</title>
<meta http-equiv="refresh" content="5">
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd}
th{background:#f3f4f6} .k{font-weight:600} .bad{color:#b42318} .ok{color:#067647}
.cards{display:flex;gap:1rem;flex-wrap:wrap} .card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.4rem}
</style></head><body>
<h1>cosell — Partner Center ⇄ Salesforce</h1>
<p>As of {{.Now}} (refreshes every 5 s). JSON: <a href="/api/status">/api/status</a>, <a href="/api/links">/api/links</a>, <a href="/api/decisions">/api/decisions</a>.</p>
<div class="cards">
<div class="card">links<b>{{.Status.Links}}</b></div>
<div class="card">dead letters<b class="{{if .Status.DeadLetters}}bad{{else}}ok{{end}}">{{.Status.DeadLetters}}</b></div>
{{range .Kinds}}<div class="card">{{.}}<b>{{index $.Status.Decisions .}}</b></div>{{end}}
</div>
<h2>Consumer lag</h2>
<table><tr><th>stage</th><th>consumer</th><th>pending</th><th>ack pending</th></tr>
{{range .Status.Lag}}<tr><td>{{.Stage}}</td><td>{{.Consumer}}</td><td>{{.Pending}}</td><td>{{.AckPending}}</td></tr>{{end}}
</table>
<h2>Links</h2>
<table><tr><th>link</th><th>state</th><th>referral</th><th>opportunity</th><th>last error</th><th>updated</th></tr>
{{range .Links}}<tr><td><a href="/api/links?id={{.ID}}">{{.ID | short}}</a></td><td>{{.State}}</td><td>{{.ReferralID}}</td><td>{{.OpportunityID}}</td><td class="bad">{{.LastError}}</td><td>{{.UpdatedAt.Format "15:04:05"}}</td></tr>{{end}}
</table>
<h2>Recent decisions</h2>
<table><tr><th>at</th><th>kind</th><th>link</th><th>fields</th><th>detail</th></tr>
{{range .Recent}}<tr><td>{{.At.Format "15:04:05.000"}}</td><td class="k">{{.Kind}}</td><td>{{.LinkID | short}}</td><td>{{range .Fields}}{{.}} {{end}}</td><td>{{.Detail}}</td></tr>{{end}}
</table>
</body></html>`))
