// Command auditor consumes every audited decision and dead letter, writes the Audit summary back to each
// linked Opportunity through sf-writer, and serves the status API, page and JetStream lag metrics on its
// admin port.
package main

import (
	"os"

	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

func main() { os.Exit(stage.Main(auditor.Stage)) }
