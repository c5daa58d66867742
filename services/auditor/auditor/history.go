package auditor

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
)

// Sample is one reading of every consumer: its lag (pending + ack pending) and its deliveries per minute
// since the previous reading, plus the dead-letter depth.
type Sample struct {
	At          time.Time          `json:"at"`
	Lag         map[string]uint64  `json:"lag"`
	Throughput  map[string]float64 `json:"throughput"`
	DeadLetters uint64             `json:"deadLetters"`
}

// history keeps the samples of the last hour and the previous delivered counters.
type history struct {
	samples   []Sample
	delivered map[string]uint64
	lastAt    time.Time
}

func (a *Auditor) sampleLoop(ctx context.Context) {
	a.Sample(ctx)
	t := time.NewTicker(a.Options.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Sample(ctx)
		}
	}
}

// Sample reads every consumer once and appends a sample to the history.
func (a *Auditor) Sample(ctx context.Context) {
	now := time.Now().UTC()
	s := Sample{At: now, Lag: map[string]uint64{}, Throughput: map[string]float64{}}
	delivered := map[string]uint64{}
	a.eachConsumer(ctx, func(c contracts.ConsumerSpec, info *jetstream.ConsumerInfo) {
		s.Lag[c.Durable] = info.NumPending + uint64(info.NumAckPending)
		delivered[c.Durable] = info.Delivered.Consumer
	})
	s.DeadLetters = a.deadLetterDepth(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.history == nil {
		a.history = &history{}
	}
	h := a.history
	if h.delivered != nil {
		mins := now.Sub(h.lastAt).Minutes()
		for k, v := range delivered {
			prev, ok := h.delivered[k]
			if ok && v >= prev && mins > 0 {
				s.Throughput[k] = float64(v-prev) / mins
			}
		}
	}
	h.delivered, h.lastAt = delivered, now
	h.samples = append(h.samples, s)
	keep := a.Options.withDefaults().History
	for len(h.samples) > 0 && now.Sub(h.samples[0].At) > keep {
		h.samples = h.samples[1:]
	}
}

// History returns the samples of the last hour, oldest first.
func (a *Auditor) History() []Sample {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.history == nil {
		return nil
	}
	return append([]Sample(nil), a.history.samples...)
}

// throughput is each consumer's deliveries per minute over the last minute of samples.
func (a *Auditor) throughput() map[string]float64 {
	samples := a.History()
	out := map[string]float64{}
	if len(samples) == 0 {
		return out
	}
	cut := samples[len(samples)-1].At.Add(-time.Minute)
	n := map[string]int{}
	for _, s := range samples {
		if s.At.Before(cut) {
			continue
		}
		for k, v := range s.Throughput {
			out[k] += v
			n[k]++
		}
	}
	for k := range out {
		out[k] /= float64(n[k])
	}
	return out
}

var chartColors = []string{"#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"}

// chart draws one inline SVG line chart (no script, no external asset) of a value per consumer, its time
// axis spanning the samples there are (not the configured history), its value axis the largest value, and
// only the consumers that had any: the others are named as idle under it.
func chart(title, unit string, samples []Sample, value func(Sample, string) float64) template.HTML {
	const w, h, left, bottom, top = 560.0, 180.0, 44.0, 22.0, 18.0
	var names, idle []string
	for _, c := range contracts.Consumers() {
		active := false
		for _, s := range samples {
			if value(s, c.Durable) > 0 {
				active = true
				break
			}
		}
		if active {
			names = append(names, c.Durable)
		} else {
			idle = append(idle, c.Durable)
		}
	}
	maxV := 4.0
	for _, s := range samples {
		for _, n := range names {
			maxV = math.Max(maxV, value(s, n))
		}
	}
	maxV = niceCeil(maxV)
	maxV = math.Ceil(maxV/4) * 4 // the four grid lines fall on whole numbers
	rows := (len(names) + 3) / 4
	height := h + 24 + 14*float64(rows)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(title), w, height, w, height)
	fmt.Fprintf(&b, `<text x="0" y="12" font-size="12" font-weight="600">%s</text>`, template.HTMLEscapeString(title))
	plotW, plotH := w-left-8, h-bottom-top
	for i := 0; i <= 4; i++ {
		y := top + plotH - plotH*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e7eb"/>`, left, y, w-8, y)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="10" text-anchor="end" fill="#6b7280">%s</text>`, left-4, y+3, fmtNum(maxV*float64(i)/4))
	}
	if len(samples) == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" fill="#6b7280">no samples yet</text>`, left+8, top+plotH/2)
	} else {
		start, end := samples[0].At, samples[len(samples)-1].At
		span := end.Sub(start)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" fill="#6b7280">%s</text>`, left, h+2, start.Format("15:04:05"))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" text-anchor="middle" fill="#6b7280">%s · %d samples over %s</text>`,
			left+plotW/2, h+2, template.HTMLEscapeString(unit), len(samples), spanLabel(span))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" text-anchor="end" fill="#6b7280">%s</text>`, w-8, h+2, end.Format("15:04:05"))
		for i, n := range names {
			var pts []string
			for _, s := range samples {
				x := left + plotW
				if span > 0 {
					x = left + plotW*s.At.Sub(start).Seconds()/span.Seconds()
				}
				y := top + plotH - plotH*value(s, n)/maxV
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			}
			col := chartColors[i%len(chartColors)]
			if len(pts) == 1 {
				fmt.Fprintf(&b, `<circle cx="%s" r="2.5" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), col)
			} else {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, col, strings.Join(pts, " "))
			}
		}
	}
	for i, n := range names {
		x := left + float64(i%4)*130
		y := h + 20 + float64(i/4)*14
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="3" fill="%s"/><text x="%.0f" y="%.0f" font-size="10">%s</text>`,
			x, y-4, chartColors[i%len(chartColors)], x+14, y, template.HTMLEscapeString(n))
	}
	if len(idle) > 0 {
		label := "idle: " + strings.Join(idle, ", ")
		if len(names) == 0 {
			label = "every consumer idle"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" fill="#6b7280">%s</text>`, left, height-4, template.HTMLEscapeString(label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every dynamic part above is escaped or numeric
}

func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func spanLabel(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
