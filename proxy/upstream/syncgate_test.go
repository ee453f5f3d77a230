package upstream

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func TestSyncGate(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newSyncGate(5 * time.Second)
	g.now = func() time.Time { return now }
	if g.until() != 0 {
		t.Fatal("a new gate is closed")
	}
	for i, want := range []time.Duration{1, 2, 4, 5, 5} {
		if d := g.failed(errors.New("cut\r\nhere")); d != want*time.Second {
			t.Fatalf("failure %d: delay %v, want %v", i+1, d, want*time.Second)
		}
	}
	now = now.Add(3 * time.Second)
	st := g.status()
	if st.Failures != 5 || st.LastErr != "cut  here" || st.NextIn != 2*time.Second || g.until() != 2*time.Second {
		t.Fatalf("status %+v, until %v", st, g.until())
	}
	g.succeeded()
	if st := g.status(); st.NextIn != 0 || st.LastErr != "" || st.Failures != 5 {
		t.Fatalf("after a success: %+v", st)
	}
	if d := g.failed(errors.New("again")); d != time.Second {
		t.Fatalf("a success does not start the delays over: %v", d)
	}
	if d := newSyncGate(0).failed(errors.New("x")); d != SyncRetryMin {
		t.Fatalf("a ceiling below SyncRetryMin: %v", d)
	}
}

// scriptedMaster answers every handshake of the link and runs serve after each PSYNC,
// recording when each PSYNC arrived.
type scriptedMaster struct {
	*scripted
	mu    sync.Mutex
	psync []time.Time
}

func startScriptedMaster(t *testing.T, serve func(c *scriptedConn, psync string)) *scriptedMaster {
	t.Helper()
	m := &scriptedMaster{scripted: newScripted(t)}
	m.serveEach(t, func(c *scriptedConn) {
		psync, err := c.answerHandshake()
		if err != nil {
			return
		}
		m.mu.Lock()
		m.psync = append(m.psync, time.Now())
		m.mu.Unlock()
		serve(c, psync)
	})
	return m
}

func (m *scriptedMaster) psyncTimes() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.psync...)
}

// runLink runs a link to addr with a fresh history until the test ends.
func runLink(t *testing.T, addr string, retryMax time.Duration) *Link {
	t.Helper()
	log := zaptest.NewLogger(t).Sugar()
	h := openHistory(t, t.TempDir(), log)
	return startLink(t, Config{Master: Master{Addr: addr}, History: h, AnnouncePort: 6380, SyncRetryMax: retryMax,
		Timeout: func() time.Duration { return 10 * time.Second }, Log: log})
}

// waitPsyncs waits until the master has seen n PSYNCs and returns the gaps between them.
func waitPsyncs(t *testing.T, m *scriptedMaster, n int, timeout time.Duration) []time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(m.psyncTimes()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d PSYNCs within %v, want %d", len(m.psyncTimes()), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts := m.psyncTimes()
	var gaps []time.Duration
	for i := 1; i < n; i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]))
	}
	return gaps
}

// TestSyncGateCutTransfers: every RDB transfer is cut midway; the link's PSYNCs then come 1 s,
// 2 s, then 2 s (the ceiling) apart, and INFO's figures say why.
func TestSyncGateCutTransfers(t *testing.T) {
	const id = "8de1787ba490483314a4d30f1c628bc5025eb761"
	m := startScriptedMaster(t, func(c *scriptedConn, psync string) {
		c.conn.Write([]byte("+FULLRESYNC " + id + " 0\r\n$1000\r\nREDIS0011" + strings.Repeat("x", 100)))
	})
	l := runLink(t, m.addr, 2*time.Second)
	gaps := waitPsyncs(t, m, 4, 20*time.Second)
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 2 * time.Second} {
		if gaps[i] < want-50*time.Millisecond || gaps[i] > want+time.Second {
			t.Errorf("gap %d between PSYNCs %v, want about %v (all: %v)", i+1, gaps[i], want, gaps)
		}
	}
	st := l.SyncStatus()
	if st.Failures < 3 || !strings.Contains(st.LastErr, "receiving RDB from master") {
		t.Errorf("sync status %+v", st)
	}
}

// TestSyncGateNotForPartialOrLoading: -LOADING is retried on the link's own short backoff, and
// a refused PSYNC (-ERR) is paced by the gate.
func TestSyncGateNotForPartialOrLoading(t *testing.T) {
	var mu sync.Mutex
	reply := "-LOADING Redis is loading the dataset in memory\r\n"
	m := startScriptedMaster(t, func(c *scriptedConn, psync string) {
		mu.Lock()
		defer mu.Unlock()
		c.conn.Write([]byte(reply))
	})
	l := runLink(t, m.addr, 2*time.Second)
	gaps := waitPsyncs(t, m, 3, 10*time.Second)
	for _, g := range gaps {
		if g > 900*time.Millisecond {
			t.Errorf("-LOADING retried after %v, want the link's short backoff (gaps %v)", g, gaps)
		}
	}
	if st := l.SyncStatus(); st.Failures != 0 {
		t.Errorf("-LOADING counted as a failed sync: %+v", st)
	}
	mu.Lock()
	reply = "-ERR something is wrong\r\n"
	mu.Unlock()
	n := len(m.psyncTimes())
	gaps = waitPsyncs(t, m, n+3, 20*time.Second)[n-1:]
	if gaps[1] < 950*time.Millisecond || gaps[2] < 1950*time.Millisecond {
		t.Errorf("refused PSYNCs retried after %v, want 1 s then 2 s", gaps[1:])
	}
	if st := l.SyncStatus(); st.Failures < 2 || !strings.Contains(st.LastErr, "-ERR something is wrong") {
		t.Errorf("sync status %+v", st)
	}
}
