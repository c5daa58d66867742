// Package otlpsink is the tests' OpenTelemetry collector: an OTLP/HTTP receiver on loopback that accepts
// POST /v1/traces (protobuf, as the Collector's otlphttp receiver does) and keeps the spans, so a test can
// name it with the standard OTEL_EXPORTER_OTLP_* variables and check what a real exporter sent.
package otlpsink

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with its resource's string attributes.
type Span struct {
	Name     string
	Resource map[string]string
}

// Export is one export request: its path, its headers and its spans.
type Export struct {
	Path   string
	Header http.Header
	Spans  []Span
}

// Sink is a running receiver.
type Sink struct {
	URL     string // http://127.0.0.1:port, for OTEL_EXPORTER_OTLP_ENDPOINT
	srv     *httptest.Server
	mu      sync.Mutex
	exports []Export
}

// Start starts a receiver; Close stops it.
func Start() *Sink {
	s := &Sink{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.receive))
	s.URL = s.srv.URL
	return s
}

// Close stops the receiver.
func (s *Sink) Close() { s.srv.Close() }

func (s *Sink) receive(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want a POST of application/x-protobuf", http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e := Export{Path: req.URL.Path, Header: req.Header.Clone()}
	for _, rs := range msg.ResourceSpans {
		attrs := map[string]string{}
		for _, kv := range rs.Resource.GetAttributes() {
			attrs[kv.Key] = kv.Value.GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				e.Spans = append(e.Spans, Span{Name: sp.Name, Resource: attrs})
			}
		}
	}
	s.mu.Lock()
	s.exports = append(s.exports, e)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// Exports returns the export requests received so far.
func (s *Sink) Exports() []Export {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Export(nil), s.exports...)
}

// Spans returns every span received so far.
func (s *Sink) Spans() []Span {
	var out []Span
	for _, e := range s.Exports() {
		out = append(out, e.Spans...)
	}
	return out
}
