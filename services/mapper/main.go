// Command mapper decides, for every observed snapshot and writer outcome, what to write to the other side,
// keeping the links in JetStream KV.
package main

import (
	"os"

	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/mapper/mapper"
)

func main() { os.Exit(stage.Main(mapper.Stage)) }
