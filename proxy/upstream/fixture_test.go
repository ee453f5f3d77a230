package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/proxy/history"
)

// The upstream link speaks the byte-exact exchange of protocol.md §11.3: handshake, a full
// resync with an EOF-marked RDB, ACK 0 right after the mark, then GETACK answered with the
// offset before the GETACK's own bytes. The peer is a script on a loopback socket.
func TestUpstreamFixture(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	log := zaptest.NewLogger(t).Sugar()
	h, err := history.Open(history.Options{Dir: dir, BacklogSize: 1 << 20, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l := NewLink(Config{Master: Master{Addr: ln.Addr().String()}, History: h, AnnouncePort: 6380,
		Timeout: func() time.Duration { return time.Minute }, Log: log})
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

	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	expect := func(want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("proxy sent %q (%v), want %q", got, err, want)
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := conn.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	const id = "8de1787ba490483314a4d30f1c628bc5025eb761"
	const mark = "0123456789abcdef0123456789abcdef01234567"
	rdb := "REDIS0010\xff\x00\x00\x00\x00\x00\x00\x00\x00"

	expect("*1\r\n$4\r\nPING\r\n")
	send("+PONG\r\n")
	expect("*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n")
	expect("*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n")
	send("+OK\r\n+OK\r\n")
	expect("*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
	send("\n\n+FULLRESYNC " + id + " 0\r\n")
	send("$EOF:" + mark + "\r\n" + rdb + mark)
	expect("*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
	send("*1\r\n$4\r\nping\r\n")                                // offsets 1..14
	send("*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n") // offsets 15..51
	// The periodic ACK may come first; the GETACK answer reports 14, never 51.
	for {
		line, err := readCommandLine(br)
		if err != nil {
			t.Fatalf("waiting for the GETACK answer: %v", err)
		}
		if line == "REPLCONF ACK 14" {
			break
		}
		if line != "REPLCONF ACK 0" {
			t.Fatalf("unexpected %q", line)
		}
	}

	saved, err := os.ReadFile(filepath.Join(dir, "snapshot.rdb"))
	if err != nil || string(saved) != rdb {
		t.Fatalf("snapshot file %q (%v), want the RDB bytes without the mark", saved, err)
	}
	replid, bl := h.Current()
	end, first := bl.End(), bl.First()
	if replid != id || first != 1 || end != 51 {
		t.Fatalf("state replid %s backlog [%d, %d], want %s [1, 51]", replid, first, end, id)
	}

	// A cut link resumes with PSYNC <replid> <end+1>.
	conn.Close()
	conn2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(10 * time.Second))
	conn, br = conn2, bufio.NewReader(conn2)
	expect("*1\r\n$4\r\nPING\r\n")
	send("+PONG\r\n")
	expect("*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n")
	expect("*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n")
	send("+OK\r\n+OK\r\n")
	expect("*3\r\n$5\r\nPSYNC\r\n$40\r\n" + id + "\r\n$2\r\n52\r\n")
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
