package pcapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KVTokenStore keeps the refresh token record in a JetStream KV bucket (contracts.BucketPCCredentials), under
// Key. Why a bucket rather than a Kubernetes Secret: every replica must see the newest rotated token at once and
// write it back with compare-and-set, which KV revisions give directly; a Secret would need every pc-* pod to hold
// RBAC rights to patch Secrets and would still race. The bucket is readable and writable only by the NATS users
// of the stages that call Partner Center and by cosell-admin (deploy/natsperm), keeps one revision (no history of
// old tokens) and lives on the JetStream store, which should be encrypted at rest (docs/connect.md).
type KVTokenStore struct {
	KV  jetstream.KeyValue
	Key string // default DefaultTokenKey
}

// DefaultTokenKey is the key of the Partner Center refresh token record.
const DefaultTokenKey = "partner-center.refresh-token"

func (s KVTokenStore) key() string {
	if s.Key == "" {
		return DefaultTokenKey
	}
	return s.Key
}

// Load reads the record.
func (s KVTokenStore) Load(ctx context.Context) (StoredToken, uint64, error) {
	e, err := s.KV.Get(ctx, s.key())
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return StoredToken{}, 0, ErrNoRefreshToken
	}
	if err != nil {
		return StoredToken{}, 0, err
	}
	var st StoredToken
	if err := json.Unmarshal(e.Value(), &st); err != nil || st.RefreshToken == "" {
		return StoredToken{}, 0, fmt.Errorf("the record %s in bucket %s is not a refresh token record; run cosell pc login to replace it", s.key(), s.KV.Bucket())
	}
	return st, e.Revision(), nil
}

// Save compares the revision and writes t.
func (s KVTokenStore) Save(ctx context.Context, t StoredToken, rev uint64) (uint64, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return 0, err
	}
	var n uint64
	if rev == 0 {
		n, err = s.KV.Create(ctx, s.key(), b)
	} else {
		n, err = s.KV.Update(ctx, s.key(), b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrTokenConflict
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, ErrTokenConflict
	}
	return n, err
}
