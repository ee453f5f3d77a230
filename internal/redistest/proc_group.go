//go:build unix

package redistest

import (
	"syscall"
	"time"
)

// reapGroup kills what is left of the process group led by pid (fork children of an exited
// redis-server) and waits up to d until none is left.
func reapGroup(pid int, d time.Duration) {
	if syscall.Kill(-pid, syscall.SIGKILL) != nil {
		return // no such group: nothing left
	}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if syscall.Kill(-pid, 0) != nil {
			return
		}
	}
}
