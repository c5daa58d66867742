package platform

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// changedAtRun is in the binary's writable data: releasing the start-up pages must not take its change back.
var changedAtRun = []string{"as built"}

// exeReadOnly returns the address ranges of the test binary's own read-only mappings and the kB of them resident.
func exeReadOnly(t *testing.T) (spans [][2]uintptr, residentKB int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			in = len(fs) >= 6 && fs[5] == exe && fs[1][1] != 'w'
			if in {
				lo, hi, _ := strings.Cut(fs[0], "-")
				a, _ := strconv.ParseUint(lo, 16, 64)
				b, _ := strconv.ParseUint(hi, 16, 64)
				spans = append(spans, [2]uintptr{uintptr(a), uintptr(b)})
			}
			continue
		}
		if in && len(fs) >= 2 && fs[0] == "Rss:" {
			kb, _ := strconv.Atoi(fs[1])
			residentKB += kb
		}
	}
	return spans, residentKB
}

// TestReleaseStartupPages: the binary's read-only pages, all resident, are unmapped but for the few the
// process uses again at once; its writable data keeps what the run wrote; and the code goes on running.
func TestReleaseStartupPages(t *testing.T) {
	changedAtRun[0] = "changed"
	spans, _ := exeReadOnly(t)
	if len(spans) == 0 {
		t.Fatal("no read-only mapping of the test binary in /proc/self/smaps")
	}
	var sum byte
	// Every page of the code and read-only data resident, as a long start-up leaves them: read through
	// /proc/self/mem, which faults each page into this process's own mapping.
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	page := make([]byte, 1)
	for _, s := range spans {
		for p := s[0]; p < s[1]; p += 4096 {
			if _, err := mem.ReadAt(page, int64(p)); err != nil {
				t.Fatalf("read %#x: %v", p, err)
			}
			sum += page[0]
		}
	}
	_, before := exeReadOnly(t)
	n, err := ReleaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	_, after := exeReadOnly(t)
	var mapped int64
	for _, s := range spans {
		mapped += int64(s[1] - s[0])
	}
	if n != mapped {
		t.Errorf("released %d bytes of mappings, the read-only ones span %d", n, mapped)
	}
	if after*4 > before {
		t.Errorf("resident read-only pages of the binary: %d kB before, %d kB after the release; want under a quarter", before, after)
	}
	if changedAtRun[0] != "changed" {
		t.Errorf("writable data lost its change: %q (checksum %d)", changedAtRun[0], sum)
	}
	t.Logf("resident read-only pages: %d kB → %d kB", before, after)
}
