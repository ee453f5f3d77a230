package upstream

import (
	"net"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"go.uber.org/zap/zaptest"
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
	m := newScripted(t)
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := m.ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // never answered
		}
	}()
	l := startLink(t, Config{Master: Master{Addr: m.addr}, Timeout: func() time.Duration { return time.Minute }})
	first := <-accepted
	defer first.Close()
	if l.Follow(Master{Addr: m.addr}, "test") {
		t.Fatal("Follow of the master followed now reported a change")
	}
	if sw := l.Status().Switch; sw.Changes != 0 || sw.Resync != "" {
		t.Fatalf("after a no-op Follow: %+v", sw)
	}
	// Another address of the same listener: a different master to the link.
	_, port, _ := net.SplitHostPort(m.addr)
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

// A master dies in the middle of a command: the proxy holds its start, staged and never
// published. A promoted replica only counts whole commands, so the first PSYNC to the new
// master asks for the byte after the last whole command, not after the partial one, and the
// new master's +CONTINUE <new id> continues the history from there.
func TestFollowDropsUnfinishedCommand(t *testing.T) {
	log := zaptest.NewLogger(t).Sugar()
	h := openHistory(t, t.TempDir(), log)
	oldMaster, newMaster := newScripted(t), newScripted(t)
	l := startLink(t, Config{Master: Master{Addr: oldMaster.addr}, History: h, AnnouncePort: 6380,
		Timeout: func() time.Duration { return time.Minute }, Log: log})

	const id, newID = "8de1787ba490483314a4d30f1c628bc5025eb761", "1111111111111111111111111111111111111111"
	m := oldMaster.accept(t)
	m.handshake(t, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
	m.send(t, "+FULLRESYNC "+id+" 0\r\n$18\r\nREDIS0010\xff\x00\x00\x00\x00\x00\x00\x00\x00")
	m.send(t, "*1\r\n$4\r\nping\r\n*3\r\n$3\r\nSET\r\n") // a whole command (offsets 1..14), then the start of one
	_, bl := waitHistory(t, h, id)
	deadline := time.Now().Add(10 * time.Second)
	for bl.End() != 14 || bl.Staged() != 13 {
		if time.Now().After(deadline) {
			t.Fatalf("backlog end %d, staged %d; want 14 and 13", bl.End(), bl.Staged())
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.conn.Close() // the old master dies

	if !l.Follow(Master{Addr: newMaster.addr}, "test") {
		t.Fatal("no change")
	}
	n := newMaster.accept(t)
	n.handshake(t, "*3\r\n$5\r\nPSYNC\r\n$40\r\n"+id+"\r\n$2\r\n15\r\n")
	n.send(t, "+CONTINUE "+newID+"\r\n*1\r\n$4\r\nping\r\n")
	deadline = time.Now().Add(10 * time.Second)
	for {
		replid, bl := h.Current()
		if replid == newID && bl.End() == 28 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history %s ending at %d, want %s at 28", replid, bl.End(), newID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := h.View(); v.Replid2 != id || v.SecondOff != 15 {
		t.Errorf("replid2 %s, second offset %d; want %s and 15", v.Replid2, v.SecondOff, id)
	}
	if sw := l.Status().Switch; sw.Partial != 1 || sw.Resync != ResyncPartial {
		t.Errorf("switch %+v, want one partial", sw)
	}
}

// waitHistory waits until the history has the replication ID id and returns it.
func waitHistory(t *testing.T, h *history.History, id string) (string, backlog.Backlog) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		replid, bl := h.Current()
		if replid == id && bl != nil {
			return replid, bl
		}
		if time.Now().After(deadline) {
			t.Fatalf("history %q, want %s", replid, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
