package redistest

import (
	"os"
	"syscall"
	"time"
)

// sysProcAttr puts the child in its own process group and has the kernel
// kill it if the test binary dies without running its cleanups (a panic or
// a go test -timeout), so no redis-server outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

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
