//go:build unix

package clientport

import (
	"syscall"
	"time"
)

// cpuTimes is the CPU time the process has used, in user and system mode.
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
