// Command sf-writer carries out Opportunity commands against Salesforce with go-salesforce.
package main

import (
	"os"

	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/sf-writer/sfwriter"
)

func main() { os.Exit(stage.Main(sfwriter.Stage)) }
