package mapper

import (
	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// The link record is encoded and decoded with JSON v2 (github.com/go-json-experiment/json, the Go team's
// encoding/json/v2, which Go 1.25+ ships behind GOEXPERIMENT=jsonv2): it walks a map[string]any (a link's
// synced and latest values, a command's fields) without reflection, where encoding/json copies every key
// and value through reflect (half of a decision's allocations), and decodes a record in a third of the
// allocations. The record stays what encoding/json writes and reads (TestLinkCodecAgreesWithEncodingJSON):
// the same fields, omitted when empty as encoding/json omits them, nil maps and slices as null; its map
// keys are not sorted (nothing hashes a record).
var (
	linkEncoding = jsonv2.JoinOptions(jsonv1.OmitEmptyWithLegacySemantics(true),
		jsonv2.FormatNilMapAsNull(true), jsonv2.FormatNilSliceAsNull(true))
	linkDecoding = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true))
)

func encodeLink(st *stored) ([]byte, error) { return jsonv2.Marshal(st, linkEncoding) }

func decodeLink(b []byte, st *stored) error { return jsonv2.Unmarshal(b, st, linkDecoding) }
