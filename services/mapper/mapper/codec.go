package mapper

import (
	"bytes"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// The link record and its outbox's events are encoded and decoded with JSON v2
// (github.com/go-json-experiment/json, the Go team's encoding/json/v2, which Go 1.25+ ships behind
// GOEXPERIMENT=jsonv2; the events the mapper reads are decoded so by platform.DataAs): it walks a
// map[string]any (a link's synced and latest values, a command's fields) without reflection, where
// encoding/json copies every key and value through reflect (half of a decision's allocations), and decodes
// in a quarter to a third of the allocations. All of it stays what encoding/json writes and reads
// (TestLinkCodecAgreesWithEncodingJSON, TestOutboxCodecAgreesWithEncodingJSON): the same fields, omitted
// when empty as encoding/json omits them, nil maps and slices as null; map keys are not sorted (nothing hashes these bytes: event ids are built
// from their parts, fingerprints by decide's own encoder).
var (
	linkEncoding = jsonv2.JoinOptions(jsonv1.OmitEmptyWithLegacySemantics(true),
		jsonv2.FormatNilMapAsNull(true), jsonv2.FormatNilSliceAsNull(true))
	linkDecoding = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true))
)

// encodeLink encodes st into buf (emptied first), by encodeJSON's rules: the link is written from a buffer
// the store reuses (linkBuffers), since it is the largest thing a decision encodes, twice per change.
func encodeLink(buf *bytes.Buffer, st *stored) error {
	buf.Reset()
	return jsonv2.MarshalWrite(buf, st, linkEncoding)
}

// linkBuffers are the buffers links are encoded into for their store: the KV write has copied the bytes
// onto the connection when it returns (synchronously), so the buffer serves the next decision.
var linkBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// linkBufferKeep is the largest buffer kept for reuse, so one huge link does not stay pinned.
const linkBufferKeep = 64 << 10

// encodeJSON is v as encoding/json encodes it (but for the order of map keys), by JSON v2.
func encodeJSON(v any) ([]byte, error) { return jsonv2.Marshal(v, linkEncoding) }

func decodeLink(b []byte, st *stored) error { return jsonv2.Unmarshal(b, st, linkDecoding) }
