package sentinel_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/sentinel"
	"github.com/psync-proxy/psync-proxy/resp"
)

// hostile listens on loopback and answers every connection with reply, after
// reading the first command's bytes, then keeps the connection open until the
// test ends. It stands for a broken or malicious peer, not for Sentinel.
func hostile(t *testing.T, reply func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			_, _ = bufio.NewReader(c).Peek(1)
			reply(c)
		}
	}()
	return ln.Addr().String()
}

// TestHostilePeer: replies that are too long or malformed fail the lookup at
// once, with at most a buffer's worth read, and a peer that never answers fails
// it after the timeout.
func TestHostilePeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(c net.Conn)
		want  error
		text  string
	}{
		{"huge bulk", func(c net.Conn) { c.Write([]byte("$1000000000\r\n")) }, resp.ErrTooLarge, ""},
		{"huge array", func(c net.Conn) { c.Write([]byte("*100000\r\n")) }, resp.ErrTooLarge, ""},
		{"endless line", func(c net.Conn) {
			// The '+' first: were the goroutine's bytes to go first, the reply would start
			// with 'x', a protocol error rather than a line too long.
			c.Write([]byte("+"))
			go func() { // writes until the client gives up and the test closes c
				b := []byte(strings.Repeat("x", 4096))
				for {
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
		}, resp.ErrTooLarge, ""},
		{"not RESP", func(c net.Conn) { c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) }, resp.ErrProtocol, ""},
		{"silent", func(net.Conn) {}, nil, "i/o timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostile(t, tc.reply)
			wt := newWatcher(t, sentinel.Config{Addrs: []string{addr}, Timeout: 500 * time.Millisecond})
			start := time.Now()
			_, err := wt.w.Lookup(context.Background())
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Lookup: %v; want %v %q", err, tc.want, tc.text)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Lookup took %v", d)
			}
		})
	}
}

// TestLookupCanceled: Lookup returns when its context ends, even while a
// Sentinel says nothing.
func TestLookupCanceled(t *testing.T) {
	addr := hostile(t, func(net.Conn) {})
	wt := newWatcher(t, sentinel.Config{Addrs: []string{addr}, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := wt.w.Lookup(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup: %v, want context.DeadlineExceeded", err)
	}
}
