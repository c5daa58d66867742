package fleet

import (
	"os/exec"
	"testing"
)

// TestMemorySplitsTheResidentSet reads a running process's VmRSS and its anonymous part from /proc: both
// present, the part no larger than the whole (the rest is file pages: the binary's own).
func TestMemorySplitsTheResidentSet(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &Proc{Name: "sleep", cmd: cmd}
	rss, anon, err := p.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || anon <= 0 || anon > rss {
		t.Fatalf("VmRSS %d, RssAnon %d: want 0 < RssAnon ≤ VmRSS", rss, anon)
	}
	if got, err := p.RSS(); err != nil || got <= 0 {
		t.Fatalf("RSS() = %d, %v", got, err)
	}
}
