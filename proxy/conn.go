package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// trackedConn, when idle is set, gives every Read a fresh deadline of that length, and records
// when bytes last arrived in lastIO (when set). Liveness is therefore "any byte within the timeout", which is what
// Redis uses for replication links: a loading replica sends only "\n" keep-alives, which redcon
// consumes without surfacing them.
type trackedConn struct {
	net.Conn
	idle   atomic.Int64  // read timeout in nanoseconds; 0 means none
	lastIO *atomic.Int64 // unix nanoseconds of the last read that returned bytes; nil: not kept
	// in frames what a downstream client sends (limits.go); nil on links to the master.
	in *clientInput
}

func newTrackedConn(c net.Conn) *trackedConn {
	return &trackedConn{Conn: c}
}

func (c *trackedConn) setIdleTimeout(d time.Duration) {
	c.idle.Store(int64(d))
	// Also for a Read already waiting: a replica that goes online and then says nothing
	// must still be timed out.
	if d == 0 {
		c.Conn.SetReadDeadline(time.Time{})
	} else {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if c.in != nil {
		return c.readCommand(p)
	}
	return c.readRaw(p)
}

func (c *trackedConn) readRaw(p []byte) (int, error) {
	if d := c.idle.Load(); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.lastIO != nil {
		c.lastIO.Store(time.Now().UnixNano())
	}
	return n, err
}

// Write gives a downstream client's replies the same deadline as its reads (the handshake
// deadline, or --timeout), so a client that never reads its replies is closed in time too. A
// replica's session sets its own write deadlines.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.in != nil && !c.in.replica.Load() {
		c.Conn.SetWriteDeadline(c.in.deadline(time.Duration(c.idle.Load())))
	}
	return c.Conn.Write(b)
}

// becomeReplica hands the connection to a replica session: no handshake deadline, no client
// timeout (repl-timeout applies once it streams), and no reply from the framer ever again.
func (c *trackedConn) becomeReplica() {
	if c.in != nil {
		c.in.replica.Store(true)
		c.in.handshakeDone()
	}
	c.setIdleTimeout(0)
	c.Conn.SetDeadline(time.Time{})
}

// ReadFrom hands io.Copy to the TCP connection so that copying from an *os.File (or an
// io.LimitedReader around one) uses sendfile. A TLS connection must encrypt every byte, so
// it gets plain Writes.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if tcp, ok := c.rawTCP(); ok {
		return tcp.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// rawTCP returns the TCP socket when the connection is plain TCP, the only case where the
// fast paths may touch the socket directly (sendfile, writev, raw fd writes and reads). On a
// TLS connection they would send plaintext or read ciphertext.
func (c *trackedConn) rawTCP() (*net.TCPConn, bool) {
	tcp, ok := c.Conn.(*net.TCPConn)
	return tcp, ok
}

// isTLS reports whether the connection speaks TLS.
func (c *trackedConn) isTLS() bool {
	_, ok := c.Conn.(*tls.Conn)
	return ok
}

// handshakeFailed reports whether this is a TLS connection whose handshake did not complete.
func (c *trackedConn) handshakeFailed() bool {
	t, ok := c.Conn.(*tls.Conn)
	return ok && !t.ConnectionState().HandshakeComplete
}

// Close closes a TLS connection's socket without a close_notify alert, which could wait for
// a full socket buffer while the caller holds locks (kickReplicasLocked). Redis does not
// send one either.
func (c *trackedConn) Close() error {
	if t, ok := c.Conn.(*tls.Conn); ok {
		return t.NetConn().Close()
	}
	return c.Conn.Close()
}

// trackedListener wraps every accepted connection in a trackedConn that frames and bounds
// what the client sends (see limits.go).
type trackedListener struct {
	net.Listener
	lim *inputLimits
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := acceptWithBackoff(l.Listener, l.logf)
	if err != nil {
		return nil, err
	}
	tc := newTrackedConn(c)
	tc.in = &clientInput{lim: l.lim}
	return tc, nil
}

func (l trackedListener) logf(format string, a ...any) { l.lim.log.Warnf(format, a...) }

// Accept backoff bounds, as net/http's: redcon's accept loop retries at once on any error,
// so without them running out of file descriptors (EMFILE) would spin a core until a
// connection closes.
const (
	acceptMinDelay = 5 * time.Millisecond
	acceptMaxDelay = time.Second
)

// acceptWithBackoff accepts the next connection. On an error other than the listener's
// closing it logs, at most once a second, in Redis's words, waits (5 ms doubling up to 1 s)
// and tries again, so that the process keeps serving the connections it has.
func acceptWithBackoff(ln net.Listener, logf func(string, ...any)) (net.Conn, error) {
	var delay time.Duration
	var logged time.Time
	for {
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		delay = min(max(delay*2, acceptMinDelay), acceptMaxDelay)
		if time.Since(logged) >= time.Second {
			logf("Error accepting a client connection: %v (retrying in %v)", err, delay)
			logged = time.Now()
		}
		time.Sleep(delay)
	}
}

// isLoopback reports whether a remote address ("ip:port") is on the loopback interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
