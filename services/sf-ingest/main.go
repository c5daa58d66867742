// Command sf-ingest polls Salesforce for changed Opportunities by SystemModstamp and publishes full
// snapshots to JetStream.
package main

import (
	"os"

	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/sf-ingest/sfingest"
)

func main() { os.Exit(stage.Main(sfingest.Stage)) }
