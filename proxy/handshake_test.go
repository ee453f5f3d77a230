package proxy_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// replicaHandshakes are the bytes newer replicas send a master after PING's +PONG, in one
// write, and the exact replies the proxy owes them. From the sources: Redis 8.8
// syncWithMaster (rdb-no-compress and rdb-no-checksum only with diskless load; capa
// rdb-channel-repl while repl-rdb-channel is on, the default), Valkey 9.0.4
// syncWithPrimaryHandleSendHandshakeState (capa skip-rdb-checksum with diskless load over
// TLS, capa dual-channel when enabled, version always), and protocol.md §13.1 for Redis
// 8.10's REPLCONF compression. Every REPLCONF error is "non critical" to them; a +OK to
// compression would switch the link to compressed frames.
var replicaHandshakes = []struct {
	name, send, want string
}{
	{"redis-8.8 diskless load",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6381\r\n" +
			"*5\r\n$8\r\nREPLCONF\r\n$15\r\nrdb-no-compress\r\n$1\r\n1\r\n$15\r\nrdb-no-checksum\r\n$1\r\n1\r\n" +
			"*7\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$4\r\ncapa\r\n$16\r\nrdb-channel-repl\r\n",
		"+OK\r\n+OK\r\n+OK\r\n"},
	{"redis-8.8 disk load",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6381\r\n" +
			"*7\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$4\r\ncapa\r\n$16\r\nrdb-channel-repl\r\n",
		"+OK\r\n+OK\r\n"},
	{"valkey-9.0 dual-channel, diskless over TLS",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6381\r\n" +
			"*9\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$4\r\ncapa\r\n$17\r\nskip-rdb-checksum\r\n$4\r\ncapa\r\n$12\r\ndual-channel\r\n" +
			"*3\r\n$8\r\nREPLCONF\r\n$7\r\nversion\r\n$5\r\n9.0.4\r\n",
		"+OK\r\n+OK\r\n+OK\r\n"},
	{"valkey-8.1 announced ip, unknown capa",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6381\r\n" +
			"*3\r\n$8\r\nREPLCONF\r\n$10\r\nip-address\r\n$8\r\n10.0.0.7\r\n" +
			"*7\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$4\r\ncapa\r\n$8\r\nlz4-sync\r\n" +
			"*3\r\n$8\r\nREPLCONF\r\n$7\r\nversion\r\n$5\r\n8.1.4\r\n",
		"+OK\r\n+OK\r\n+OK\r\n+OK\r\n"},
	{"redis-8.10 compression",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6381\r\n" +
			"*3\r\n$8\r\nREPLCONF\r\n$11\r\ncompression\r\n$1\r\n1\r\n" +
			"*7\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$4\r\ncapa\r\n$16\r\nrdb-channel-repl\r\n",
		"+OK\r\n-ERR Unrecognized REPLCONF option: compression\r\n+OK\r\n"},
	{"bad values",
		"*3\r\n$8\r\nREPLCONF\r\n$15\r\nrdb-no-compress\r\n$1\r\n2\r\n" +
			"*3\r\n$8\r\nREPLCONF\r\n$15\r\nrdb-no-checksum\r\n$2\r\nno\r\n" +
			"*3\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n",
		"-ERR value is out of range, value must between 0 and 1\r\n-ERR value is out of range, value must between 0 and 1\r\n+OK\r\n"},
}

var (
	fullResyncLine = regexp.MustCompile(`^\+FULLRESYNC ([0-9a-f]{40}) ([0-9]+)\r\n$`)
	payloadLine    = regexp.MustCompile(`^\$([0-9]+)\r\n$`)
)

// TestReplicaHandshakeFixtures: byte for byte, the proxy's replies to the handshakes of Redis
// 8.x and Valkey 8.1 to 9.x replicas, then a single-channel full sync for PSYNC ? -1
// (+FULLRESYNC and a $<len> payload: never +RDBCHANNELSYNC, +DUALCHANNELSYNC, $EOF or
// $ENDOFF) and +CONTINUE for a PSYNC it can serve.
func TestReplicaHandshakeFixtures(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{BacklogSize: 16 << 20})
	redistest.WriteBytes(t, m, 256<<10)
	for _, hs := range replicaHandshakes {
		t.Run(hs.name, func(t *testing.T) {
			c := redistest.Dial(t, p.Addr())
			defer c.Close()
			expectReply(t, c, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n")
			expectReply(t, c, hs.send, hs.want)
			c.SendRaw([]byte("*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"))
			head := readRawLine(t, c)
			f := fullResyncLine.FindStringSubmatch(head)
			if f == nil {
				t.Fatalf("reply to PSYNC ? -1: %q, want +FULLRESYNC <replid> <offset>", head)
			}
			pl := payloadLine.FindStringSubmatch(readRawLine(t, c))
			if pl == nil {
				t.Fatal("the payload does not start with $<len>")
			}
			n, _ := strconv.Atoi(pl[1])
			rdb, err := c.ReadFull(n)
			if err != nil || string(rdb[:5]) != "REDIS" {
				t.Fatalf("RDB of %d bytes: %q... (%v)", n, rdb[:min(len(rdb), 9)], err)
			}
			c.Close()

			// The same replica back with the offset it loaded: +CONTINUE, exactly.
			c = redistest.Dial(t, p.Addr())
			defer c.Close()
			expectReply(t, c, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n")
			expectReply(t, c, hs.send, hs.want)
			off := strconv.Itoa(mustAtoi(t, f[2]) + 1)
			expectReply(t, c, "*3\r\n$5\r\nPSYNC\r\n$40\r\n"+f[1]+"\r\n$"+strconv.Itoa(len(off))+"\r\n"+off+"\r\n",
				"+CONTINUE "+f[1]+"\r\n")
		})
	}
}

// expectReply sends bytes and expects exactly want back.
func expectReply(t *testing.T, c *redistest.Client, send, want string) {
	t.Helper()
	if err := c.SendRaw([]byte(send)); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadFull(len(want))
	if err != nil || string(got) != want {
		t.Fatalf("sent %q, got %q (%v), want %q", send, got, err, want)
	}
}

// readRawLine reads one line with its CRLF, skipping the keep-alive newlines a master may send
// before the reply.
func readRawLine(t *testing.T, c *redistest.Client) string {
	t.Helper()
	for {
		line, err := c.Reader().ReadString('\n')
		if err != nil {
			t.Fatalf("reading a line: %v (%q)", err, line)
		}
		if line != "\n" {
			return line
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
