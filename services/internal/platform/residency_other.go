//go:build !linux

package platform

// ReleaseStartupPages does nothing outside Linux (no /proc/self/maps, no fault-around to undo); it
// reports 0 bytes released.
func ReleaseStartupPages() (int64, error) { return 0, nil }
