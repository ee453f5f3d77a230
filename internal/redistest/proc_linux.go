package redistest

import (
	"os"
	"syscall"
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
