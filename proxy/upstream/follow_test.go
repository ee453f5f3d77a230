package upstream

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestSameMaster(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:6379", "127.0.0.1:6379", true},
		{"Redis-A.example:6379", "redis-a.example:6379", true}, // Redis compares hosts with strcasecmp
		{"127.0.0.1:6379", "127.0.0.1:6380", false},
		{"127.0.0.1:6379", "localhost:6379", false}, // no resolution: Sentinel's string is what INFO must show
		{"[::1]:6379", "[::1]:6379", true},
	} {
		if got := SameMaster(Master{Addr: c.a}, Master{Addr: c.b}); got != c.want {
			t.Errorf("SameMaster(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

// Follow ignores the master followed now, counts a real change as pending until the new
// master answers, and ends the attempt in progress at once: here a handshake stalled on a
// master that accepted the connection and never answers PING.
func TestFollowCutsTheAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // never answered
		}
	}()
	l := NewLink(Config{Master: Master{Addr: ln.Addr().String()}, Timeout: func() time.Duration { return time.Minute }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		l.Run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	first := <-accepted
	defer first.Close()
	if l.Follow(Master{Addr: ln.Addr().String()}, "test") {
		t.Fatal("Follow of the master followed now reported a change")
	}
	if sw := l.Status().Switch; sw.Changes != 0 || sw.Resync != "" {
		t.Fatalf("after a no-op Follow: %+v", sw)
	}
	// Another address of the same listener: a different master to the link.
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	other := net.JoinHostPort("localhost", port)
	if !l.Follow(Master{Addr: other}, "test") {
		t.Fatal("Follow of another master reported no change")
	}
	if sw := l.Status().Switch; sw.Changes != 1 || sw.Resync != ResyncPending || sw.Source != "test" {
		t.Fatalf("after a change: %+v", sw)
	}
	buf := make([]byte, 1)
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := first.Read(buf); err != nil {
			break // the stalled attempt was closed
		}
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no new attempt after Follow")
	}
	if got := l.Master().Addr; got != other {
		t.Fatalf("Master() = %s, want %s", got, other)
	}
}
