package redistest

import (
	"os"
	"os/exec"
	"time"
)

// proc is one child process (redis-server or redis-benchmark) and the
// goroutine that reaps it. done is closed once the process has been reaped;
// err is valid after that.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts bin with args in dir, sending stdout and stderr to out.
// The process gets its own process group so that kill also ends any child
// it forked (redis-server forks for BGSAVE and full syncs).
func startProc(bin string, args []string, dir string, out *os.File) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended and been reaped.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}

// kill sends SIGKILL to the process group unless the process has already
// been reaped (its pid could then belong to someone else).
func (p *proc) kill() {
	if p.exited() {
		return
	}
	killGroup(p.cmd.Process)
}
