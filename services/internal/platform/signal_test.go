package platform

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestRunUntilSignalCancelsOnSIGTERM(t *testing.T) {
	ctx, stop := RunUntilSignal(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled by SIGTERM")
	}
}
