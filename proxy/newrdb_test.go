package proxy_test

import (
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"strconv"
	"testing"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// withVersion rewrites an RDB's header to REDIS<v> and its CRC64 trailer to match: an RDB of
// a version the proxy does not know yet, framed correctly.
func withVersion(rdb string, v int) string {
	b := []byte(fmt.Sprintf("REDIS%04d", v) + rdb[9:len(rdb)-8])
	t := crc64.MakeTable(0x95ac9329ac4bc9b5) // Redis's crc64 (Jones), reflected
	return string(binary.LittleEndian.AppendUint64(b, ^crc64.Update(^uint64(0), t, b)))
}

// TestNewerRDBVersion: an RDB whose version is above every one the proxy knows, with correct
// framing, is received, served byte for byte and loaded again after a restart, each time
// with a warning naming its format.
func TestNewerRDBVersion(t *testing.T) {
	rdb := withVersion(fixtureRDB(t), 99)
	const warning = "its RDB format REDIS0099 is newer than this proxy knows"
	fm := startFakeMaster(t, func(n int, l *fakeLink) {
		args, ok := l.handshake("+OK\r\n")
		if !ok {
			return
		}
		reply := "+CONTINUE " + fakeReplid + "\r\n"
		if args[1] == "?" {
			reply = fmt.Sprintf("+FULLRESYNC %s %d\r\n$%d\r\n%s", fakeReplid, fakeOffset, len(rdb), rdb)
		}
		if l.send(reply) {
			l.drain()
		}
	})
	log, logs := observedLogger(t)
	p := startProxyVia(t, fm.Addr(), proxy.Config{Logger: log})
	waitLog(t, logs, "The RDB received from master for "+fakeReplid+":"+strconv.Itoa(fakeOffset)+": "+warning, 1)

	c := redistest.Dial(t, p.Addr())
	defer c.Close()
	expectReply(t, c, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n",
		fmt.Sprintf("+FULLRESYNC %s %d\r\n$%d\r\n%s", fakeReplid, fakeOffset, len(rdb), rdb))
	waitLog(t, logs, warning, 2)
	if n := logs.FilterMessageSnippet("Full resync of replica").FilterMessageSnippet(warning).Len(); n != 1 {
		t.Errorf("%d warnings when serving the snapshot, want 1", n)
	}

	p.stop()
	p.start(p.port)
	p.waitLinkUp()
	waitLog(t, logs, "The snapshot in "+p.cfg.Dir+": "+warning, 1)
	if got := p.info("replication")["master_repl_offset"]; got != strconv.Itoa(fakeOffset) {
		t.Errorf("master_repl_offset %s after the restart, want %d (resumed from the snapshot)", got, fakeOffset)
	}
}
