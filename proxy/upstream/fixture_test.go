package upstream

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// The upstream link speaks the byte-exact exchange of protocol.md §11.3: handshake, a full
// resync with an EOF-marked RDB, ACK 0 right after the mark, then GETACK answered with the
// offset before the GETACK's own bytes. The peer is a script on a loopback socket.
func TestUpstreamFixture(t *testing.T) {
	m := newScripted(t)
	dir := t.TempDir()
	log := zaptest.NewLogger(t).Sugar()
	h := openHistory(t, dir, log)
	startLink(t, Config{Master: Master{Addr: m.addr}, History: h, AnnouncePort: 6380,
		Timeout: func() time.Duration { return time.Minute }, Log: log})
	c := m.accept(t)

	const id = "8de1787ba490483314a4d30f1c628bc5025eb761"
	const mark = "0123456789abcdef0123456789abcdef01234567"
	rdb := "REDIS0010\xff\x00\x00\x00\x00\x00\x00\x00\x00"

	c.handshake(t, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
	c.send(t, "\n\n+FULLRESYNC "+id+" 0\r\n")
	c.send(t, "$EOF:"+mark+"\r\n"+rdb+mark)
	c.expect(t, "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
	c.send(t, "*1\r\n$4\r\nping\r\n")                                // offsets 1..14
	c.send(t, "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n") // offsets 15..51
	// The periodic ACK may come first; the GETACK answer reports 14, never 51.
	for {
		line, err := readCommandLine(c.br)
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
	c.conn.Close()
	c = m.accept(t)
	c.handshake(t, "*3\r\n$5\r\nPSYNC\r\n$40\r\n"+id+"\r\n$2\r\n52\r\n")
}
