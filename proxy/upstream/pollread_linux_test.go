//go:build linux

package upstream

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// TestPollReader checks the upstream reader's contract: bytes as they come, a net.Error
// timeout after the silence limit, io.EOF when the peer closes, an error once our side is
// closed, and no stale poller deadline.
func TestPollReader(t *testing.T) {
	a, b := redistest.TCPPair(t)
	c := conn.New(a)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond)) // must not leak into the reader
	r, release, ok := upstreamReader(c, 300*time.Millisecond)
	if !ok {
		t.Fatal("no poll reader on a TCP connection")
	}
	defer release()

	time.Sleep(50 * time.Millisecond)
	b.Write([]byte("abc"))
	buf := make([]byte, 16)
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	start := time.Now()
	_, err := r.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read after silence = %v, want a timeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("timed out after %v, want about 300ms", d)
	}

	b.Write([]byte("x"))
	b.Close()
	if n, err := r.Read(buf); err != nil || n != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("Read after the peer closed = %v, want EOF", err)
	}

	c2, d := redistest.TCPPair(t)
	_ = d
	conn2 := conn.New(c2)
	r2, release2, _ := upstreamReader(conn2, time.Minute)
	done := make(chan error, 1)
	go func() {
		defer release2()
		_, err := r2.Read(buf[:1])
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	conn2.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read on a closed connection succeeded")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not notice its connection was closed")
	}
}

// The master link's ppoll reader is taken on plain TCP only: on TLS the socket carries
// ciphertext.
func TestPollReaderPlainTCPOnly(t *testing.T) {
	a, _ := redistest.TCPPair(t)
	if _, release, ok := upstreamReader(conn.New(a), time.Second); !ok {
		t.Fatal("plain TCP: no poll reader")
	} else {
		release()
	}
	if _, _, ok := upstreamReader(conn.New(tls.Client(a, &tls.Config{})), time.Second); ok {
		t.Fatal("TLS: a poll reader on the raw socket")
	}
}
