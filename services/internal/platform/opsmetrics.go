package platform

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
)

// APIMetrics count the calls cosell makes to Partner Center and Salesforce and the API allowance left, in
// the one cosell namespace: cosell_external_api_requests_total{system,endpoint,status},
// cosell_external_api_request_duration_seconds{system,endpoint} and cosell_api_budget_remaining{system}.
type APIMetrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	// Budget is the calls left in the current allowance (Salesforce: daily API requests from Sforce-Limit-Info).
	Budget *prometheus.GaugeVec
	// BudgetLimit is the size of that allowance.
	BudgetLimit *prometheus.GaugeVec
}

// NewAPIMetrics builds the collectors and registers them on reg (nil: unregistered).
func NewAPIMetrics(reg prometheus.Registerer) *APIMetrics {
	m := &APIMetrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosell", Name: "external_api_requests_total",
			Help: "Calls to Partner Center (pc) and Salesforce (sf), by system, endpoint and status (HTTP status, Salesforce error code, ok or error).",
		}, []string{"system", "endpoint", "status"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cosell", Name: "external_api_request_duration_seconds",
			Help:    "Latency of calls to Partner Center and Salesforce, by system and endpoint.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"system", "endpoint"}),
		Budget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cosell", Name: "api_budget_remaining",
			Help: "API calls left in the current allowance, by system (Salesforce: daily API requests, from Sforce-Limit-Info).",
		}, []string{"system"}),
		BudgetLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cosell", Name: "api_budget_limit",
			Help: "Size of the current API allowance, by system.",
		}, []string{"system"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Duration, m.Budget, m.BudgetLimit)
	}
	return m
}

// ObserveCall records one external call; status is an HTTP status, an error code, "ok" or "error".
func (m *APIMetrics) ObserveCall(system contracts.System, endpoint, status string, elapsed time.Duration) {
	m.Requests.WithLabelValues(string(system), endpoint, status).Inc()
	m.Duration.WithLabelValues(string(system), endpoint).Observe(elapsed.Seconds())
}

// ObserveHTTPCall is ObserveCall with an HTTP status (0 = no response).
func (m *APIMetrics) ObserveHTTPCall(system contracts.System, endpoint string, status int, elapsed time.Duration) {
	s := "error"
	if status > 0 {
		s = strconv.Itoa(status)
	}
	m.ObserveCall(system, endpoint, s, elapsed)
}

// SetBudget records the allowance: used calls out of limit.
func (m *APIMetrics) SetBudget(system contracts.System, used, limit int) {
	m.Budget.WithLabelValues(string(system)).Set(float64(max(limit-used, 0)))
	m.BudgetLimit.WithLabelValues(string(system)).Set(float64(limit))
}

// LagCollector reports, at scrape time, each durable consumer's backlog and the depth of every stream,
// read from JetStream: cosell_consumer_pending_messages, cosell_consumer_ack_pending_messages,
// cosell_consumer_redelivered_messages, cosell_stream_messages and cosell_dead_letter_messages. Register it in
// one process (the auditor), not in every stage.
type LagCollector struct {
	bus                                    *Bus
	pending, ackPending, redelivered, msgs *prometheus.Desc
	dlq, up                                *prometheus.Desc
}

// NewLagCollector builds the collector on a connected bus.
func NewLagCollector(b *Bus) *LagCollector {
	labels := []string{"stage", "consumer", "stream"}
	return &LagCollector{
		bus: b,
		pending: prometheus.NewDesc("cosell_consumer_pending_messages",
			"Messages in the stream the durable consumer has not delivered yet (its lag).", labels, nil),
		ackPending: prometheus.NewDesc("cosell_consumer_ack_pending_messages",
			"Messages delivered to the consumer and not yet acknowledged (in flight or waiting for a retry).", labels, nil),
		redelivered: prometheus.NewDesc("cosell_consumer_redelivered_messages",
			"Messages the consumer is redelivering right now.", labels, nil),
		msgs: prometheus.NewDesc("cosell_stream_messages", "Messages stored in the stream.", []string{"stream"}, nil),
		dlq: prometheus.NewDesc("cosell_dead_letter_messages",
			"Messages parked in the dead-letter stream (the DLQ depth).", nil, nil),
		up: prometheus.NewDesc("cosell_jetstream_up", "1 when JetStream answered the last scrape.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.ackPending, c.redelivered, c.msgs, c.dlq, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	up := 1.0
	for _, spec := range contracts.Consumers() {
		cons, err := c.bus.js.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			up = 0
			continue
		}
		info, err := cons.Info(ctx)
		if err != nil {
			up = 0
			continue
		}
		lv := []string{spec.Stage, spec.Durable, spec.Stream}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), lv...)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), lv...)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), lv...)
	}
	for _, s := range contracts.Streams() {
		st, err := c.bus.js.Stream(ctx, s.Name)
		if err != nil {
			up = 0
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			up = 0
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(info.State.Msgs), s.Name)
		if s.Name == contracts.StreamDeadLetter {
			ch <- prometheus.MustNewConstMetric(c.dlq, prometheus.GaugeValue, float64(info.State.Msgs))
		}
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
}

// SyncLatency is cosell_sync_latency_seconds{to}: from the source change (its version time on the side
// where it was made) to the write on the other side, as the writer's outcome reports it.
func SyncLatency() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "cosell", Name: "sync_latency_seconds",
		Help:    "End-to-end sync latency: source change (its version time) to the other side written, by the system written to.",
		Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600},
	}, []string{"to"})
}
