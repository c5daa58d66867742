package platform

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of handling one event, the values of the outcome label.
const (
	OutcomeAck        = "ack"
	OutcomeRetry      = "retry"
	OutcomeDeadLetter = "dead_letter"
)

// Metrics are the runtime's Prometheus collectors, one namespace (cosell) with fixed labels so every
// stage's dashboards and alerts look the same.
type Metrics struct {
	// Handled counts handled deliveries by stage, consumer and outcome (ack|retry|dead_letter).
	Handled *prometheus.CounterVec
	// Duration is the handler's run time by stage, consumer and outcome.
	Duration *prometheus.HistogramVec
	// Published counts events the stream stored (duplicates dropped by the server are not counted).
	Published *prometheus.CounterVec
	// DeadLetters counts messages parked in the dead-letter stream.
	DeadLetters *prometheus.CounterVec
}

// NewMetrics builds the collectors and registers them on reg; reg nil leaves them unregistered (tests,
// or a bus without an admin port).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosell", Name: "events_handled_total",
			Help: "Deliveries handled, by stage, consumer and outcome (ack, retry, dead_letter).",
		}, []string{"stage", "consumer", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cosell", Name: "handler_duration_seconds",
			Help:    "Handler run time, by stage, consumer and outcome.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"stage", "consumer", "outcome"}),
		Published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosell", Name: "events_published_total",
			Help: "Events stored by JetStream (server-side duplicates excluded), by stage and CloudEvent type.",
		}, []string{"stage", "type"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosell", Name: "dead_letters_total",
			Help: "Messages parked in the dead-letter stream, by stage and consumer.",
		}, []string{"stage", "consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.Handled, m.Duration, m.Published, m.DeadLetters)
	}
	return m
}
