package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/proxy/history"
)

func TestCheckReplicaVersion(t *testing.T) {
	for _, v := range []string{"9.0.4", "8.1.0", "255.255.255", "0.0.0"} {
		if err := CheckReplicaVersion(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	for _, v := range []string{"", "9", "9.0", "9.0.4.1", "9.0.256", "9.0.-1", "9.0.+1", "9..4", "v9.0.4", "9.0.4 "} {
		if err := CheckReplicaVersion(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

// TestUpstreamAnnounceVersion: with AnnounceVersion the handshake sends REPLCONF version
// after capa, in the same write, exactly as a Valkey replica does, and an error reply to it
// (a Redis master) is not critical: PSYNC follows.
func TestUpstreamAnnounceVersion(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	log := zaptest.NewLogger(t).Sugar()
	h, err := history.Open(history.Options{Dir: t.TempDir(), BacklogSize: 1 << 20, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l := NewLink(Config{Master: Master{Addr: ln.Addr().String()}, History: h, AnnouncePort: 6380,
		AnnounceVersion: "9.0.4", Timeout: func() time.Duration { return time.Minute }, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("proxy sent %q (%v), want %q", got, err, want)
		}
	}
	expect("*1\r\n$4\r\nPING\r\n")
	c.Write([]byte("+PONG\r\n"))
	expect("*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n" +
		"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n" +
		"*3\r\n$8\r\nREPLCONF\r\n$7\r\nversion\r\n$5\r\n9.0.4\r\n")
	c.Write([]byte("+OK\r\n+OK\r\n-ERR Unrecognized REPLCONF option: version\r\n"))
	expect("*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
}
