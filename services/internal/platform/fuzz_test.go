package platform

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// FuzzDecodeMsg feeds arbitrary headers and bodies to the CloudEvent decoder: it must refuse or decode,
// never panic, and whatever it decodes must encode again to the same id and type.
func FuzzDecodeMsg(f *testing.F) {
	f.Add("1.0", "pc/r-1/e1", "pc-ingest", "cosell.pc.referral.observed.v1", "r-1", "2026-11-24T15:04:05Z", "application/json", `{"referral":{"id":"r-1"}}`, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("0.3", "", "", "", "", "not a time", "text/plain", "", "")
	f.Add("1.0", "id", "src", "t", "", "", "", "{", "x")
	f.Fuzz(func(t *testing.T, spec, id, source, typ, subject, tm, ctype, body, traceparent string) {
		h := nats.Header{}
		for k, v := range map[string]string{
			"ce-specversion": spec, "ce-id": id, "ce-source": source, "ce-type": typ, "ce-subject": subject,
			"ce-time": tm, "content-type": ctype, "ce-traceparent": traceparent,
		} {
			if v != "" {
				h.Set(k, v)
			}
		}
		e, err := DecodeMsg("cosell.test."+strings.ReplaceAll(id, ".", "_"), h, []byte(body))
		if err != nil {
			return
		}
		m, err := EncodeMsg("cosell.test.x", e)
		if err != nil {
			t.Fatalf("decoded event does not encode again: %v", err)
		}
		again, err := DecodeMsg("cosell.test.x", m.Header, m.Data)
		if err != nil {
			t.Fatalf("round trip refused: %v", err)
		}
		if again.ID() != e.ID() || again.Type() != e.Type() {
			t.Fatalf("round trip changed id/type: %s/%s → %s/%s", e.ID(), e.Type(), again.ID(), again.Type())
		}
	})
}
