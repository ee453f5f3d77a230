package clientport

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// emfileListener fails Accept with EMFILE a number of times, then hands out one end of a pipe.
type emfileListener struct {
	net.Listener
	fails, calls atomic.Int64
	closed       atomic.Bool
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	c, _ := net.Pipe()
	return c, nil
}

// Out of file descriptors, Accept waits between tries instead of spinning, logs in Redis's
// words at most once a second, and returns the next connection once there is one.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	ln := &emfileListener{}
	ln.fails.Store(8) // 5+10+20+40+80+160+320+640 ms of waiting
	var logs atomic.Int64
	start := time.Now()
	c, err := acceptWithBackoff(ln, func(format string, a ...any) { logs.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if calls := ln.calls.Load(); calls != 9 {
		t.Errorf("%d calls to Accept, want 9", calls)
	}
	d := time.Since(start)
	if d < 1200*time.Millisecond {
		t.Errorf("8 failures were retried within %v, want about 1.3 s of backoff", d)
	}
	// At most one line a second, however long a loaded machine stretched the waits.
	if n, most := logs.Load(), int64(d/time.Second)+1; n < 1 || n > most {
		t.Errorf("%d log lines for 8 failures over %v, want 1 to %d", n, d, most)
	}

	ln.closed.Store(true)
	if _, err := acceptWithBackoff(ln, func(string, ...any) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("closed listener: %v, want net.ErrClosed at once", err)
	}
}
