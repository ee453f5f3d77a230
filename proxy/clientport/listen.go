package clientport

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/internal/backoff"
	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// framedListener wraps every accepted connection in a clientConn that frames and bounds what
// the client sends (see input.go).
type framedListener struct {
	net.Listener
	lim *inputLimits
}

func (l framedListener) Accept() (net.Conn, error) {
	c, err := acceptWithBackoff(l.Listener, l.logf)
	if err != nil {
		return nil, err
	}
	return &clientConn{Conn: conn.New(c), in: clientInput{lim: l.lim}}, nil
}

func (l framedListener) logf(format string, a ...any) { l.lim.log.Warnf(format, a...) }

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
	wait := backoff.Backoff{Min: acceptMinDelay, Max: acceptMaxDelay}
	var logged time.Time
	for {
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		delay := wait.Next()
		if time.Since(logged) >= time.Second {
			logf("Error accepting a client connection: %v (retrying in %v)", err, delay)
			logged = time.Now()
		}
		time.Sleep(delay)
	}
}

// TLSListener wraps ln so that it speaks TLS with cfg (Redis's tls-port). The handshake runs
// on the connection's first read or write, in its own goroutine, so a slow or silent peer
// never holds up Accept.
func TLSListener(ln net.Listener, cfg *tls.Config) net.Listener { return tlsListener{ln, cfg} }

type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, l.cfg), nil
}

// IsTLS reports whether ln is a TLSListener.
func IsTLS(ln net.Listener) bool {
	_, ok := ln.(tlsListener)
	return ok
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
