package platform

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// RunUntilSignal returns a context cancelled on SIGINT or SIGTERM (Kubernetes' stop signal), which starts
// every consumer's graceful drain.
func RunUntilSignal(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
