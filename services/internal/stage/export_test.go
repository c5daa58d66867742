package stage

import "github.com/cosell-dev/cosell/services/internal/platform/natsembed"

// Run is run, for the external tests of every stage's command line.
var Run = run

// The tests run stages as a binary built with -tags embeddednats does: COSELL_NATS_EMBEDDED starts a server.
func init() { connectEmbedded = natsembed.Connect }
