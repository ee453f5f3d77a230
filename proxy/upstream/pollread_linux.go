//go:build linux

package upstream

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// upstreamReader returns what the stream loop reads the master from. On Linux that is a
// pollReader on the connection's socket, and the calling goroutine is locked to its thread
// until the returned release is called: it sleeps in ppoll(2) rather than in Go's netpoller,
// so the kernel wakes this very thread when bytes arrive, as it wakes a C relay. On this
// kind of VM the netpoller's wake-up costs about 10 µs per hop more (measured with relays).
// Together with the inline fan-out, a byte from the master then reaches a caught-up replica
// with no goroutine wake-up at all. A TLS link is read through its tls.Conn instead: the
// socket carries ciphertext.
func upstreamReader(c *conn.Conn, timeout time.Duration) (io.Reader, func(), bool) {
	tcp, ok := c.RawTCP()
	if !ok {
		return nil, nil, false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil, nil, false
	}
	// RawConn.Read fails once the poller's read deadline passes; this reader keeps time itself.
	if err := tcp.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, false
	}
	runtime.LockOSThread()
	return &pollReader{raw: raw, timeout: timeout, lastIO: c.LastIO(), last: time.Now()}, runtime.UnlockOSThread, true
}

// pollReader reads a non-blocking socket, waiting in ppoll(2) on the caller's thread. It wakes
// at least every pollEvery to notice a closed connection (RawConn.Read then fails) and to
// enforce timeout, the longest silence allowed (Redis's repl-timeout; 0: none).
type pollReader struct {
	raw     syscall.RawConn
	timeout time.Duration
	lastIO  *atomic.Int64
	last    time.Time
}

const pollEvery = 50 * time.Millisecond

func (r *pollReader) Read(p []byte) (int, error) {
	for {
		var n int
		var rerr error
		// RawConn.Read holds the descriptor, so a concurrent Close cannot reuse it under us;
		// returning true every time keeps the netpoller out of the wait.
		err := r.raw.Read(func(fd uintptr) bool {
			k, e := syscall.Read(int(fd), p)
			switch {
			case e == syscall.EAGAIN:
				ppoll(int(fd), pollEvery)
			case e == syscall.EINTR:
			case e != nil:
				rerr = os.NewSyscallError("read", e)
			case k == 0:
				rerr = io.EOF
			default:
				n = k
			}
			return true
		})
		if err != nil {
			return 0, err
		}
		if n > 0 {
			r.last = time.Now()
			if r.lastIO != nil {
				r.lastIO.Store(r.last.UnixNano())
			}
			return n, nil
		}
		if rerr != nil {
			return 0, rerr
		}
		if r.timeout > 0 && time.Since(r.last) > r.timeout {
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
		}
	}
}

// ppoll waits until fd is readable (or has an error or hang-up) or d has passed.
func ppoll(fd int, d time.Duration) {
	pfd := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd), events: 0x1} // POLLIN
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}
