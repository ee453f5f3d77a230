package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy/history"
)

// scripted is a loopback listener standing in for a master: the test plays the master's side
// of each connection the link makes, byte by byte.
type scripted struct {
	ln   net.Listener
	addr string
}

func newScripted(t *testing.T) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &scripted{ln: ln, addr: ln.Addr().String()}
}

// scriptedConn is one connection from the link, with a deadline so that a test that waits for
// bytes never sent fails instead of hanging.
type scriptedConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func newScriptedConn(c net.Conn, timeout time.Duration) *scriptedConn {
	c.SetDeadline(time.Now().Add(timeout))
	return &scriptedConn{conn: c, br: bufio.NewReader(c)}
}

// accept waits for the link's next connection; it is closed when the test ends.
func (s *scripted) accept(t *testing.T) *scriptedConn {
	t.Helper()
	c, err := s.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newScriptedConn(c, 10*time.Second)
}

// serveEach runs serve for every connection the link makes, each on its own goroutine (so
// serve must not call t.Fatal), closing it after; the test's end waits for them all.
func (s *scripted) serveEach(t *testing.T, serve func(c *scriptedConn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		s.ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(newScriptedConn(c, 30*time.Second))
			})
		}
	})
}

// expect reads len(want) bytes and fails unless they are want.
func (c *scriptedConn) expect(t *testing.T, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != want {
		t.Fatalf("proxy sent %q (%v), want %q", got, err, want)
	}
}

func (c *scriptedConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// handshake expects the link's handshake byte for byte (PING, then REPLCONF listening-port
// 6380 and capa eof psync2, each answered), then psync.
func (c *scriptedConn) handshake(t *testing.T, psync string) {
	t.Helper()
	c.expect(t, "*1\r\n$4\r\nPING\r\n")
	c.send(t, "+PONG\r\n")
	c.expect(t, "*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n")
	c.expect(t, "*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n")
	c.send(t, "+OK\r\n+OK\r\n")
	c.expect(t, psync)
}

// answerHandshake answers PING and every REPLCONF until PSYNC, which it returns. It does not
// fail the test, so a serveEach goroutine can call it.
func (c *scriptedConn) answerHandshake() (string, error) {
	for {
		line, err := readCommandLine(c.br)
		if err != nil {
			return "", err
		}
		switch {
		case line == "PING":
			c.conn.Write([]byte("+PONG\r\n"))
		case strings.HasPrefix(line, "REPLCONF"):
			c.conn.Write([]byte("+OK\r\n"))
		case strings.HasPrefix(line, "PSYNC"):
			return line, nil
		}
	}
}

// readCommandLine reads one multibulk command and returns its arguments joined by spaces.
func readCommandLine(br *bufio.Reader) (string, error) {
	var args []string
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	var n int
	for _, c := range strings.TrimSpace(line[1:]) {
		n = n*10 + int(c-'0')
	}
	for range n {
		if _, err := br.ReadString('\n'); err != nil {
			return "", err
		}
		arg, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		args = append(args, strings.TrimSuffix(arg, "\r\n"))
	}
	return strings.Join(args, " "), nil
}

// openHistory opens a history with a 1 MiB backlog in dir, closed when the test ends.
func openHistory(t *testing.T, dir string, log *zap.SugaredLogger) *history.History {
	t.Helper()
	h, err := history.Open(history.Options{Dir: dir, BacklogSize: 1 << 20, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// startLink runs a link with cfg until the test ends (before a history opened earlier closes).
func startLink(t *testing.T, cfg Config) *Link {
	l := NewLink(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l
}
