package platform

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ReleaseStartupPages unmaps the read-only pages of the process's own binary (code, read-only data, the
// function tables) so that only those used from here on come back. A Go binary's start-up — ~270 package
// initialisers spread over its 30 MB, the config loader, provisioning — touches pages all over it, and the
// kernel maps every page fault's whole 64 KiB neighbourhood (fault-around): a stage held ~20 MiB of its
// binary resident, of which it never runs again most. The pages stay in the page cache (shared, clean,
// the kernel's to reclaim); a page used again is mapped back by its next fault. Writable mappings (the
// binary's data, its heap) are left alone: MADV_DONTNEED would throw their changes away. It returns the
// bytes of the mappings released.
func ReleaseStartupPages() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	defer maps.Close()
	var released int64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// address perms offset dev inode path, e.g. "00400000-012be000 r-xp 00000000 fe:00 10 /app/mapper"
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[5] != exe || f[1][1] == 'w' || f[1][3] != 'p' {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("release start-up pages: madvise %s: %w", f[0], errno)
		}
		released += int64(end - start)
	}
	if err := sc.Err(); err != nil {
		return released, fmt.Errorf("release start-up pages: %w", err)
	}
	return released, nil
}
