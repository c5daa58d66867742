package platform

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go"
)

type sample struct {
	Name  string `json:"name"`
	Value int    `json:"value"`
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	e, err := NewEvent("pc/ref-1/etag-7", contracts.TypeReferralObserved, contracts.StagePCIngest, "ref-1", sample{"a", 1})
	if err != nil {
		t.Fatal(err)
	}
	e.SetExtension(ExtTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	e.SetExtension(ExtCorrelationID, "corr-9")

	m, err := EncodeMsg("cosell.pc.referral.observed.ref-1", e)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"Nats-Msg-Id", "ce-correlationid", "ce-id", "ce-source", "ce-specversion", "ce-subject",
		"ce-time", "ce-traceparent", "ce-type", "content-type"}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Fatalf("headers = %v\nwant      %v", keys, want)
	}
	if got := m.Header.Get("Nats-Msg-Id"); got != e.ID() {
		t.Errorf("Nats-Msg-Id = %q", got)
	}
	if got := m.Header.Get("content-type"); got != "application/json" {
		t.Errorf("content-type = %q", got)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Header.Get("ce-time")); err != nil {
		t.Errorf("ce-time: %v", err)
	}
	if string(m.Data) != `{"name":"a","value":1}` {
		t.Errorf("body = %s", m.Data)
	}

	got, err := DecodeMsg(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != e.ID() || got.Type() != e.Type() || got.Source() != e.Source() || got.Subject() != e.Subject() ||
		!got.Time().Equal(e.Time()) || got.SpecVersion() != "1.0" || got.DataContentType() != "application/json" {
		t.Fatalf("decoded %s\nwant %s", got, e)
	}
	if got.Extensions()[ExtTraceParent] != e.Extensions()[ExtTraceParent] || got.Extensions()[ExtCorrelationID] != "corr-9" {
		t.Fatalf("extensions = %v", got.Extensions())
	}
	data, err := DataAs[sample](got)
	if err != nil || data != (sample{"a", 1}) {
		t.Fatalf("DataAs = %+v, %v", data, err)
	}
}

func TestDecodeMsgErrors(t *testing.T) {
	t.Parallel()
	e, err := NewEvent("id-1", "t.v1", "src", "s", sample{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := EncodeMsg("x.y", e)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(h nats.Header)
		want   string
	}{
		{"no specversion", func(h nats.Header) { h.Del("ce-specversion") }, "ce-specversion missing"},
		{"bad specversion", func(h nats.Header) { h.Set("ce-specversion", "0.3") }, "ce-specversion"},
		{"no id", func(h nats.Header) { h.Del("ce-id") }, "ce-id missing"},
		{"no source", func(h nats.Header) { h.Del("ce-source") }, "ce-source missing"},
		{"no type", func(h nats.Header) { h.Del("ce-type") }, "ce-type missing"},
		{"bad time", func(h nats.Header) { h.Set("ce-time", "yesterday") }, "ce-time"},
		{"bad extension", func(h nats.Header) { h.Set("ce-Bad_Name", "v") }, "ce-bad_name"},
		{"no headers", func(h nats.Header) {
			for k := range h {
				delete(h, k)
			}
		}, "ce-specversion missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := nats.Header{}
			for k, v := range good.Header {
				h[k] = append([]string(nil), v...)
			}
			tt.mutate(h)
			_, err := DecodeMsg("x.y", h, good.Data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
	t.Run("header case ignored", func(t *testing.T) {
		h := nats.Header{}
		for k, v := range good.Header {
			h[strings.ToUpper(k[:1])+k[1:]] = v
		}
		got, err := DecodeMsg("x.y", h, good.Data)
		if err != nil || got.ID() != "id-1" {
			t.Fatalf("got %v, %v", got.ID(), err)
		}
	})
}

func TestNewEventValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewEvent("", "t", "s", "", nil); err == nil {
		t.Error("empty id accepted")
	}
	if _, err := NewEvent("i", "", "s", "", nil); err == nil {
		t.Error("empty type accepted")
	}
	if _, err := NewEvent("i", "t", "s", "", func() {}); err == nil {
		t.Error("unencodable data accepted")
	}
}

func TestDataAsNamesEvent(t *testing.T) {
	t.Parallel()
	e, err := NewEvent("ev-42", "t.v1", "src", "", "not an object")
	if err != nil {
		t.Fatal(err)
	}
	_, err = DataAs[sample](e)
	if err == nil || !strings.Contains(err.Error(), "ev-42") || !strings.Contains(err.Error(), "t.v1") {
		t.Fatalf("err = %v", err)
	}
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StagePCIngest, m)
	ctx := context.Background()
	e, err := NewEvent("pc/ref-1/v1", contracts.TypeReferralObserved, contracts.StagePCIngest, "ref-1", sample{"a", 1})
	if err != nil {
		t.Fatal(err)
	}
	subj := contracts.Subject(contracts.SubjectReferralObserved, "ref-1")
	dup, err := b.Publish(ctx, subj, e)
	if err != nil || dup {
		t.Fatalf("first publish: dup=%v err=%v", dup, err)
	}
	dup, err = b.Publish(ctx, subj, e)
	if err != nil || !dup {
		t.Fatalf("second publish: dup=%v err=%v, want duplicate", dup, err)
	}
	s, err := b.js.Stream(ctx, contracts.StreamObserved)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	raw, err := s.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMsg(raw.Subject, raw.Header, raw.Data)
	if err != nil || got.ID() != e.ID() {
		t.Fatalf("stored event %v, %v", got.ID(), err)
	}
}
