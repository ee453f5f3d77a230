package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
	"github.com/psync-proxy/psync-proxy/resp"
)

// Upstream surprises: replies and streams a master (or something in its place) can send that
// a well-behaved run never shows. Each must be logged in Redis's words, retried with backoff,
// and never half-applied. Where real Redis can produce the surprise, a real redis-server does;
// otherwise a scripted fake master on a loopback listener does, with real replicas downstream.

// fakeReplid and fakeOffset are the history the fixture RDB was saved in (its repl-id and
// repl-offset aux fields, which the proxy checks against +FULLRESYNC).
const (
	fakeReplid = "dfece01f79836182b2823d7300dfe62cebef02da"
	fakeOffset = 768
)

// fakeMaster accepts connections on loopback and runs script on each, in its own goroutine;
// n counts connections from 0. The connection is closed when script returns.
type fakeMaster struct {
	t      *testing.T
	ln     net.Listener
	script func(n int, l *fakeLink)

	done    chan struct{} // closed by close: scripts stop waiting
	mu      sync.Mutex
	accepts []time.Time
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startFakeMaster(t *testing.T, script func(n int, l *fakeLink)) *fakeMaster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fm := &fakeMaster{t: t, ln: ln, script: script, done: make(chan struct{})}
	fm.wg.Add(1)
	go fm.serve()
	t.Cleanup(fm.close)
	return fm
}

func (fm *fakeMaster) Addr() string { return fm.ln.Addr().String() }

func (fm *fakeMaster) serve() {
	defer fm.wg.Done()
	for {
		c, err := fm.ln.Accept()
		if err != nil {
			return
		}
		fm.mu.Lock()
		n := len(fm.accepts)
		fm.accepts = append(fm.accepts, time.Now())
		fm.conns = append(fm.conns, c)
		fm.wg.Add(1)
		fm.mu.Unlock()
		go func() {
			defer fm.wg.Done()
			defer c.Close()
			fm.script(n, &fakeLink{t: fm.t, conn: c, br: bufio.NewReader(c), done: fm.done})
		}()
	}
}

// close stops accepting, closes every connection and waits for the scripts.
func (fm *fakeMaster) close() {
	close(fm.done)
	fm.ln.Close()
	fm.mu.Lock()
	for _, c := range fm.conns {
		c.Close()
	}
	fm.mu.Unlock()
	fm.wg.Wait()
}

// acceptTimes returns when each connection was accepted.
func (fm *fakeMaster) acceptTimes() []time.Time {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	return append([]time.Time(nil), fm.accepts...)
}

// waitConns waits until at least n connections were accepted.
func (fm *fakeMaster) waitConns(n int) []time.Time {
	fm.t.Helper()
	redistest.Eventually(fm.t, syncTimeout, func() error {
		if k := len(fm.acceptTimes()); k < n {
			return fmt.Errorf("%d connections to the fake master, waiting for %d", k, n)
		}
		return nil
	})
	return fm.acceptTimes()
}

// fakeLink is one connection to the fake master, seen from the master's side. Its methods
// report failures with t.Errorf (they run in the script's goroutine) and return false.
type fakeLink struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	done <-chan struct{}
}

// expect reads one command and checks its name; it returns the arguments.
func (l *fakeLink) expect(name string) ([]string, bool) {
	v, err := resp.ReadValue(l.br, resp.Limits{})
	if err != nil {
		return nil, false // the proxy hung up: the test decides whether that is wrong
	}
	var args []string
	for _, a := range v.Array() {
		args = append(args, a.String())
	}
	if len(args) == 0 || !strings.EqualFold(args[0], name) {
		l.t.Errorf("fake master: got %q, want %s", args, name)
		return nil, false
	}
	return args, true
}

func (l *fakeLink) send(s string) bool {
	_, err := io.WriteString(l.conn, s)
	return err == nil
}

// handshake answers PING, REPLCONF listening-port and REPLCONF capa (with capaReply) and
// returns PSYNC's arguments.
func (l *fakeLink) handshake(capaReply string) ([]string, bool) {
	for _, step := range [][2]string{{"PING", "+PONG\r\n"}, {"REPLCONF", "+OK\r\n"}, {"REPLCONF", capaReply}} {
		if _, ok := l.expect(step[0]); !ok || !l.send(step[1]) {
			return nil, false
		}
	}
	return l.expect("PSYNC")
}

// drain discards what the proxy sends (REPLCONF ACK) until the connection ends.
func (l *fakeLink) drain() { io.Copy(io.Discard, l.br) }

// wait waits for ch, or for d to pass (d <= 0: no limit); false if the test is ending.
func (l *fakeLink) wait(ch <-chan struct{}, d time.Duration) bool {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
		return true
	case <-timeout:
		return true
	case <-l.done:
		return false
	}
}

// fixtureRDB is a small RDB saved by Redis 7.0.15, loadable by the replicas in these tests.
func fixtureRDB(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../resp/testdata/rdb/redis-7.0.15-replica.rdb")
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return string(b)
}

// selectDB0 starts the fake stream: the fixture's repl-stream-db is not 0, and a master
// sends SELECT before the first keyed command after a full resync anyway.
const selectDB0 = "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"

func setCommand(k, v string) string {
	return fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
}

// observedLogger logs to the test and keeps the entries for assertions.
func observedLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.InfoLevel)
	tl := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	return zap.New(zapcore.NewTee(tl.Core(), core)).Named("proxy"), logs
}

// waitLog waits until at least n log entries contain s.
func waitLog(t *testing.T, logs *observer.ObservedLogs, s string, n int) {
	t.Helper()
	redistest.Eventually(t, syncTimeout, func() error {
		if k := logs.FilterMessageSnippet(s).Len(); k < n {
			return fmt.Errorf("%d log lines with %q, waiting for %d", k, s, n)
		}
		return nil
	})
}

// checkBackoff checks that reconnections slow down: each gap at least the proxy's first
// backoff (100ms), the third at least twice that.
func checkBackoff(t *testing.T, times []time.Time) {
	t.Helper()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 90*time.Millisecond {
			t.Errorf("reconnection %d came %v after the previous one: no backoff", i, gap)
		}
	}
	if len(times) >= 4 {
		if gap := times[3].Sub(times[2]); gap < 180*time.Millisecond {
			t.Errorf("third gap %v: the backoff does not grow", gap)
		}
	}
}

// -LOADING to PING or to PSYNC (a master loading its dataset) ends the attempt with Redis's
// log line, and the proxy retries with a growing backoff.
func TestUpstreamLoading(t *testing.T) {
	const loading = "-LOADING Redis is loading the dataset in memory\r\n"
	for _, tc := range []struct {
		name, log string
		script    func(n int, l *fakeLink)
	}{
		{"PING", "Error reply to PING from master: '-LOADING Redis is loading the dataset in memory'",
			func(n int, l *fakeLink) {
				if _, ok := l.expect("PING"); ok {
					l.send(loading)
				}
			}},
		{"PSYNC", "Master is currently unable to PSYNC but should be in the future: -LOADING Redis is loading the dataset in memory",
			func(n int, l *fakeLink) {
				if _, ok := l.handshake("+OK\r\n"); ok {
					l.send(loading)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fm := startFakeMaster(t, tc.script)
			log, logs := observedLogger(t)
			p := startProxyAddr(t, proxy.Config{MasterAddr: fm.Addr(), Logger: log})
			checkBackoff(t, fm.waitConns(4)[:4])
			waitLog(t, logs, tc.log, 3)
			if s := p.info("replication")["master_link_status"]; s != "down" {
				t.Errorf("master_link_status:%s", s)
			}
		})
	}
}

// A master that is itself a replica with its link down answers PSYNC with -NOMASTERLINK (a
// real redis-server here). The proxy retries with backoff and syncs once that replica has a
// master again.
func TestUpstreamNoMasterLink(t *testing.T) {
	top := redistest.Start(t)
	mid := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(top.Port))
	redistest.WaitOnline(t, mid, syncTimeout)
	top.MustDo(t, "SET", "k", "v")
	redistest.WaitInSync(t, syncTimeout, top, mid)
	top.Stop(t)

	log, logs := observedLogger(t)
	p := startProxyAddr(t, proxy.Config{MasterAddr: mid.Addr(), Logger: log})
	waitLog(t, logs, "Master is currently unable to PSYNC but should be in the future: -NOMASTERLINK Can't SYNC while not connected with my master", 3)
	checkLoggedBackoff(t, logs, "400ms")
	if s := p.info("replication")["master_link_status"]; s != "down" {
		t.Errorf("master_link_status:%s while the master answers -NOMASTERLINK", s)
	}
	top2 := redistest.Start(t)
	top2.MustDo(t, "SET", "k2", "v2")
	mid.ReplicaOf(t, top2.Addr())
	p.waitLinkUp()
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitInSync(t, syncTimeout, top2, mid, r)
}

// A master with requirepass and a proxy without masterauth: PING's -NOAUTH is accepted, as by
// Redis, the REPLCONFs fail (non critical) and PSYNC is refused; the proxy logs it and retries
// with the backoff of failed syncs (1 s, 2 s, 4 s: a refused PSYNC is paced as a failed RDB
// transfer, upstream/syncgate.go).
func TestUpstreamNoAuth(t *testing.T) {
	m := redistest.Start(t)
	m.MustDo(t, "CONFIG", "SET", "requirepass", "secret")
	t.Cleanup(func() {
		// Let redistest's own cleanup in again.
		c := redistest.Dial(t, m.Addr())
		defer c.Close()
		c.Do("AUTH", "secret")
		c.Do("CONFIG", "SET", "requirepass", "")
	})
	log, logs := observedLogger(t)
	startProxyAddr(t, proxy.Config{MasterAddr: m.Addr(), Logger: log})
	waitLog(t, logs, "Master does not support PSYNC or is in error state (reply: -NOAUTH Authentication required.)", 3)
	waitLog(t, logs, "(Non critical) Master does not understand REPLCONF capa: -NOAUTH Authentication required.", 1)
	checkLoggedBackoff(t, logs, "4s")
}

// checkLoggedBackoff asserts that the third retry logged waits third: 400ms for the link's
// backoff, which doubles from 100 ms, 4s for failed syncs, which double from 1 s.
func checkLoggedBackoff(t *testing.T, logs *observer.ObservedLogs, third string) {
	t.Helper()
	retries := logs.FilterMessageSnippet("MASTER <-> REPLICA sync failed, next attempt in").AllUntimed()
	if len(retries) < 3 {
		t.Fatalf("%d retries logged, want at least 3", len(retries))
	}
	if !strings.Contains(retries[2].Message, "next attempt in "+third) {
		t.Errorf("third retry: %q, want a backoff of %s", retries[2].Message, third)
	}
}

// A master that does not know REPLCONF capa: Redis treats the error as non critical, and so
// does the proxy, which goes on to sync.
func TestUpstreamCapaError(t *testing.T) {
	rdb := fixtureRDB(t)
	fm := startFakeMaster(t, func(n int, l *fakeLink) {
		if _, ok := l.handshake("-ERR Unrecognized REPLCONF option: capa\r\n"); !ok {
			return
		}
		if l.send(fmt.Sprintf("+FULLRESYNC %s %d\r\n$%d\r\n%s", fakeReplid, fakeOffset, len(rdb), rdb)) {
			l.drain()
		}
	})
	log, logs := observedLogger(t)
	p := startProxyVia(t, fm.Addr(), proxy.Config{Logger: log})
	waitLog(t, logs, "(Non critical) Master does not understand REPLCONF capa: -ERR Unrecognized REPLCONF option: capa", 1)
	if info := p.info("replication"); info["master_replid"] != fakeReplid || info["master_repl_offset"] != strconv.Itoa(fakeOffset) {
		t.Errorf("proxy replid %s offset %s, want %s %d", info["master_replid"], info["master_repl_offset"], fakeReplid, fakeOffset)
	}
}

// An RDB cut in the middle of a full resync, when the proxy already has a history: nothing is
// installed, the old snapshot and backlog keep serving replicas, and the proxy retries with
// backoff, asking for the same offset each time.
func TestUpstreamRDBCut(t *testing.T) {
	rdb := fixtureRDB(t)
	set := selectDB0 + setCommand("a", "1")
	next := strconv.Itoa(fakeOffset + len(set) + 1)
	var psyncs sync.Map // connection number -> PSYNC arguments
	fm := startFakeMaster(t, func(n int, l *fakeLink) {
		args, ok := l.handshake("+OK\r\n")
		if !ok {
			return
		}
		psyncs.Store(n, args)
		if n == 0 {
			if l.send(fmt.Sprintf("+FULLRESYNC %s %d\r\n$%d\r\n%s%s", fakeReplid, fakeOffset, len(rdb), rdb, set)) {
				l.wait(nil, 200*time.Millisecond) // then the link breaks
			}
			return
		}
		// A new history whose RDB stops half way.
		l.send(fmt.Sprintf("+FULLRESYNC %s 5000\r\n$%d\r\n%s", strings.Repeat("f", 40), len(rdb), rdb[:len(rdb)/2]))
	})
	log, logs := observedLogger(t)
	p := startProxyAddr(t, proxy.Config{MasterAddr: fm.Addr(), Logger: log})
	times := fm.waitConns(4)
	checkBackoff(t, times[1:4])
	waitLog(t, logs, "I/O error trying to sync with MASTER", 2)
	for n := 1; n < 3; n++ { // the third retry may still be in its handshake
		v, _ := psyncs.Load(n)
		if args, _ := v.([]string); len(args) != 3 || args[1] != fakeReplid || args[2] != next {
			t.Errorf("connection %d: PSYNC %q, want PSYNC %s %s", n, args, fakeReplid, next)
		}
	}
	if info := p.info("replication"); info["master_replid"] != fakeReplid || info["master_repl_offset"] != strconv.Itoa(fakeOffset+len(set)) {
		t.Errorf("proxy replid %s offset %s after cut transfers, want %s %d", info["master_replid"], info["master_repl_offset"], fakeReplid, fakeOffset+len(set))
	}
	// A replica full-syncs from the old snapshot and backlog, never from the cut RDB.
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.Eventually(t, syncTimeout, func() error {
		if v, err := r.Do("GET", "a"); err != nil || v.String() != "1" {
			return fmt.Errorf("replica GET a = %q, %v", v.String(), err)
		}
		return nil
	})
	if got := r.Info(t, "replication")["master_replid"]; got != fakeReplid {
		t.Errorf("replica master_replid %s, want %s", got, fakeReplid)
	}
}

// A stream that breaks RESP framing in the middle of a command. The command's start arrived
// in an earlier read than the bad byte; the proxy staged it and never published it, so the
// replica behind it never sees it. The proxy logs the protocol error, drops the link, and
// after a backoff asks for the stream again from the byte after the last whole command, which
// the master then sends properly: the replica ends with both commands applied, its link never
// broken.
func TestUpstreamBrokenFraming(t *testing.T) {
	rdb := fixtureRDB(t)
	setA, setB := selectDB0+setCommand("a", "1"), setCommand("b", "2")
	badPrefix := "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$"
	resume := strconv.Itoa(fakeOffset + len(setA) + 1)
	replicaReady := make(chan struct{})
	var garbageSent time.Time
	var psync1 []string
	var mu sync.Mutex
	fm := startFakeMaster(t, func(n int, l *fakeLink) {
		args, ok := l.handshake("+OK\r\n")
		if !ok {
			return
		}
		switch n {
		case 0:
			if !l.send(fmt.Sprintf("+FULLRESYNC %s %d\r\n$%d\r\n%s", fakeReplid, fakeOffset, len(rdb), rdb)) {
				return
			}
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				l.drain()
			}()
			if !l.wait(replicaReady, 0) || !l.send(setA+badPrefix) {
				return
			}
			l.wait(nil, 300*time.Millisecond) // the bad byte comes in a later read
			mu.Lock()
			garbageSent = time.Now()
			mu.Unlock()
			l.send("x\r\n")
			l.wait(drained, 0) // the proxy is the one to hang up
		default:
			mu.Lock()
			psync1 = args
			mu.Unlock()
			if l.send("+CONTINUE " + fakeReplid + "\r\n" + setB) {
				l.drain()
			}
		}
	})
	log, logs := observedLogger(t)
	p := startProxyVia(t, fm.Addr(), proxy.Config{Logger: log})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r, syncTimeout)
	close(replicaReady)

	redistest.Eventually(t, syncTimeout, func() error {
		for k, want := range map[string]string{"a": "1", "b": "2"} {
			if v, err := r.Do("GET", k); err != nil || v.String() != want {
				return fmt.Errorf("replica GET %s = %q, %v", k, v.String(), err)
			}
		}
		return nil
	})
	times := fm.acceptTimes()
	mu.Lock()
	defer mu.Unlock()
	if len(psync1) != 3 || psync1[1] != fakeReplid || psync1[2] != resume {
		t.Errorf("PSYNC after the protocol error: %q, want PSYNC %s %s", psync1, fakeReplid, resume)
	}
	if gap := times[1].Sub(garbageSent); gap < 90*time.Millisecond {
		t.Errorf("the proxy reconnected %v after the protocol error: no backoff", gap)
	}
	if n := logs.FilterMessageSnippet("Protocol error (").FilterMessageSnippet("from client: master").Len(); n != 1 {
		t.Errorf("%d protocol error log lines, want 1", n)
	}
	want := strconv.Itoa(fakeOffset + len(setA) + len(setB))
	if got := p.info("replication")["master_repl_offset"]; got != want {
		t.Errorf("proxy master_repl_offset %s, want %s", got, want)
	}
	redistest.Eventually(t, syncTimeout, func() error {
		if got := r.Info(t, "replication")["slave_repl_offset"]; got != want {
			return fmt.Errorf("replica slave_repl_offset %s, want %s", got, want)
		}
		return nil
	})
	for _, bad := range []string{"Protocol error", "Connection with master lost"} {
		if n := r.CountLog(t, bad); n > 0 {
			t.Errorf("the replica's log has %q %d times: it was sent bytes past the last whole command", bad, n)
		}
	}
}
