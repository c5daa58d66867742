//go:build embeddednats

package stage

import "github.com/cosell-dev/cosell/services/internal/platform/natsembed"

// Built with -tags embeddednats (make build), a stage runs a nats-server of its own under
// COSELL_NATS_EMBEDDED=true; the images are built without it.
func init() { connectEmbedded = natsembed.Connect }
