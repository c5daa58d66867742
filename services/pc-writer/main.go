// Command pc-writer carries out referral create and patch commands against the Partner Center API.
package main

import (
	"os"

	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/pc-writer/pcwriter"
)

func main() { os.Exit(stage.Main(pcwriter.Stage)) }
