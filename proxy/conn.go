package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// trackedConn, when idle is set, gives every Read a fresh deadline of that length, and records
// when bytes last arrived in lastIO (when set). Liveness is therefore "any byte within the timeout", which is what
// Redis uses for replication links: a loading replica sends only "\n" keep-alives, which redcon
// consumes without surfacing them.
type trackedConn struct {
	net.Conn
	idle   atomic.Int64  // read timeout in nanoseconds; 0 means none
	lastIO *atomic.Int64 // unix nanoseconds of the last read that returned bytes; nil: not kept
	// guard, on downstream connections, checks the client's framing before redcon sees it;
	// only the connection's one reader uses it. log reports what it stops.
	guard *requestGuard
	log   *zap.SugaredLogger
	// streaming is set once the connection carries a replication stream: from then on
	// nothing but the master's bytes may be written to it, not even an error reply.
	streaming atomic.Bool
}

func newTrackedConn(c net.Conn) *trackedConn {
	return &trackedConn{Conn: c}
}

func (c *trackedConn) setIdleTimeout(d time.Duration) {
	c.idle.Store(int64(d))
	if d == 0 {
		c.Conn.SetReadDeadline(time.Time{})
	}
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if g := c.guard; g != nil && g.err != nil {
		// The replies to the whole commands before the error are out: Redis's reply comes
		// last, and the connection ends.
		if !c.streaming.Load() {
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.Conn.Write([]byte("-ERR Protocol error: " + g.detail + "\r\n"))
		}
		return 0, g.err
	}
	if d := c.idle.Load(); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.lastIO != nil {
		c.lastIO.Store(time.Now().UnixNano())
	}
	if c.guard != nil && n > 0 {
		if k, gerr := c.guard.feed(p[:n]); gerr != nil {
			c.log.Infof("Protocol error (%s) from client: addr=%s. Closing the connection", gerr, c.RemoteAddr())
			return k, err
		}
	}
	return n, err
}

// ReadFrom hands io.Copy to the TCP connection so that copying from an *os.File (or an
// io.LimitedReader around one) uses sendfile.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// trackedListener wraps every accepted connection in a trackedConn with a requestGuard.
type trackedListener struct {
	net.Listener
	log *zap.SugaredLogger
}

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := newTrackedConn(c)
	tc.guard, tc.log = newRequestGuard(), l.log
	return tc, nil
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
