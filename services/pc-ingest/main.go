// Command pc-ingest receives Partner Center's signed webhook notifications and polls referrals as a
// backstop, publishing full referral snapshots to JetStream.
package main

import (
	"os"

	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/pc-ingest/pcingest"
)

func main() { os.Exit(stage.Main(pcingest.Stage)) }
