package upstream

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
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
	m := newScripted(t)
	log := zaptest.NewLogger(t).Sugar()
	startLink(t, Config{Master: Master{Addr: m.addr}, History: openHistory(t, t.TempDir(), log), AnnouncePort: 6380,
		AnnounceVersion: "9.0.4", Timeout: func() time.Duration { return time.Minute }, Log: log})
	c := m.accept(t)
	c.expect(t, "*1\r\n$4\r\nPING\r\n")
	c.send(t, "+PONG\r\n")
	c.expect(t, "*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n"+
		"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n"+
		"*3\r\n$8\r\nREPLCONF\r\n$7\r\nversion\r\n$5\r\n9.0.4\r\n")
	c.send(t, "+OK\r\n+OK\r\n-ERR Unrecognized REPLCONF option: version\r\n")
	c.expect(t, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
}
