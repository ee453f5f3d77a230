// Package conn wraps the proxy's TCP and TLS connections, to the master and to replicas,
// with what both links need: Redis's liveness rule (any byte within the timeout), the last
// time bytes arrived, and access to the raw socket for the fast paths (sendfile, writev,
// raw reads and writes), which only plain TCP may take.
package conn

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Conn gives every Read a fresh deadline of its idle timeout, when set, and records when
// bytes last arrived, when asked to. Liveness is therefore "any byte within the timeout",
// which is what Redis uses for replication links: a loading replica sends only "\n"
// keep-alives, which redcon consumes without surfacing them.
type Conn struct {
	net.Conn
	idle   atomic.Int64  // read timeout in nanoseconds; 0 means none
	lastIO *atomic.Int64 // unix nanoseconds of the last read that returned bytes; nil: not kept
}

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// TrackIO makes reads record the time bytes last arrived in last. Call it before reading.
func (c *Conn) TrackIO(last *atomic.Int64) { c.lastIO = last }

// LastIO is the variable TrackIO set; nil when not kept.
func (c *Conn) LastIO() *atomic.Int64 { return c.lastIO }

// SetIdleTimeout sets the longest silence a Read allows; 0: none. It also applies to a Read
// already waiting: a replica that goes online and then says nothing must still be timed out.
func (c *Conn) SetIdleTimeout(d time.Duration) {
	c.idle.Store(int64(d))
	if d == 0 {
		c.Conn.SetReadDeadline(time.Time{})
	} else {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
}

// IdleTimeout is the timeout SetIdleTimeout set.
func (c *Conn) IdleTimeout() time.Duration { return time.Duration(c.idle.Load()) }

// StoreIdleTimeout sets the timeout for the next Reads without touching a Read already
// waiting (a new client's --timeout, armed before it is read from).
func (c *Conn) StoreIdleTimeout(d time.Duration) { c.idle.Store(int64(d)) }

func (c *Conn) Read(p []byte) (int, error) {
	if d := c.idle.Load(); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.lastIO != nil {
		c.lastIO.Store(time.Now().UnixNano())
	}
	return n, err
}

// ReadFrom hands io.Copy to the TCP connection so that copying from an *os.File (or an
// io.LimitedReader around one) uses sendfile. A TLS connection must encrypt every byte, so
// it gets plain Writes.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if tcp, ok := c.RawTCP(); ok {
		return tcp.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// RawTCP returns the TCP socket when the connection is plain TCP, the only case where the
// fast paths may touch the socket directly (sendfile, writev, raw fd writes and reads). On a
// TLS connection they would send plaintext or read ciphertext.
func (c *Conn) RawTCP() (*net.TCPConn, bool) {
	tcp, ok := c.Conn.(*net.TCPConn)
	return tcp, ok
}

// IsTLS reports whether the connection speaks TLS.
func (c *Conn) IsTLS() bool {
	_, ok := c.Conn.(*tls.Conn)
	return ok
}

// HandshakeFailed reports whether this is a TLS connection whose handshake did not complete.
func (c *Conn) HandshakeFailed() bool {
	t, ok := c.Conn.(*tls.Conn)
	return ok && !t.ConnectionState().HandshakeComplete
}

// Close closes a TLS connection's socket without a close_notify alert, which could wait for
// a full socket buffer while the caller holds locks (disconnecting replicas on a new
// history). Redis does not send one either.
func (c *Conn) Close() error {
	if t, ok := c.Conn.(*tls.Conn); ok {
		return t.NetConn().Close()
	}
	return c.Conn.Close()
}
