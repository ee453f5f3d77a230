package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy"
)

// FuzzDownstream throws arbitrary bytes at a proxy's downstream port, as any client could:
// the proxy must not panic, must answer with a bounded amount of bytes, must end the
// connection once the client has (half-)closed it, and must keep serving the next client.
// The proxy has no master (its upstream keeps failing to connect) and so no snapshot.
func FuzzDownstream(f *testing.F) {
	for _, s := range []string{
		"PING\r\n", "*1\r\n$4\r\nPING\r\n", "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n",
		"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n",
		"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n", "SYNC\r\nPING\r\n",
		"*3\r\n$5\r\nPSYNC\r\n$40\r\n8de1787ba490483314a4d30f1c628bc5025eb761\r\n$2\r\n52\r\n",
		"*4\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n$8\r\nFAILOVER\r\n",
		"REPLCONF rdb-only 1\r\nPSYNC ? -1\r\n", "REPLCONF ACK 10\r\nREPLCONF GETACK *\r\n",
		"INFO\r\nINFO replication\r\nROLE\r\n", "CONFIG GET *\r\nCONFIG SET repl-timeout 5\r\n",
		"CLIENT SETNAME x\r\nCLIENT GETNAME\r\nCLIENT ID\r\n", "HELLO 3\r\nAUTH x\r\nAUTH a b c\r\n",
		"COMMAND DOCS\r\nSELECT 1\r\nSET k v\r\n", "*-1\r\n*0\r\n$-1\r\n", "*2\r\n$4\r\nPING\r\n$9999\r\n",
		"*99999999999\r\n", "$5\r\nhello\r\n", "\"unbalanced\r\n", "\r\n\r\n\n", "\x00\xff*\r\n",
	} {
		f.Add([]byte(s))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	master := dead.Addr().String()
	dead.Close() // nothing listens there: the proxy never gets a master
	p, err := proxy.New(proxy.Config{MasterAddr: master, Dir: f.TempDir(), Logger: zap.NewNop()})
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	f.Cleanup(func() {
		p.Shutdown(context.Background())
		<-done
	})
	addr := ln.Addr().String()
	f.Fuzz(func(t *testing.T, in []byte) {
		low := strings.ToLower(string(in))
		if strings.Contains(low, "shutdown") || strings.Contains(low, "requirepass") {
			t.Skip("would stop or lock the shared proxy")
		}
		// Each command gets at most one reply, INFO's being the largest (a few KiB).
		limit := int64(64<<10) * int64(1+bytes.Count(in, []byte("\n")))
		if got, err := exchange(addr, in, limit); err != nil {
			t.Fatalf("%q: %v", in, err)
		} else if got > limit {
			t.Fatalf("%q: %d bytes of replies, over %d", in, got, limit)
		}
		if got, err := exchange(addr, []byte("PING\r\n"), 64); err != nil || got != int64(len("+PONG\r\n")) {
			t.Fatalf("after %q the proxy no longer answers PING: %d bytes, %v", in, got, err)
		}
	})
}

// exchange sends in to the proxy, half-closes, and reads the replies (at most limit+1
// bytes) until the proxy closes the connection. It returns how many bytes it read.
func exchange(addr string, in []byte, limit int64) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(in); err != nil {
		return 0, err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, io.LimitReader(c, limit+1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return n, errors.New("the proxy kept the connection open after the client closed it")
	}
	return n, nil
}
