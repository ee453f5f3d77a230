package redistest_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

const emptyDigest = "0000000000000000000000000000000000000000"

func TestReplicaRestartAndBenchmark(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, "--repl-backlog-size", "16mb")
	replica := redistest.Start(t)
	replica.ReplicaOf(t, master.Addr())
	redistest.WaitOnline(t, replica, 10*time.Second)

	redistest.WriteBytes(t, master, 2<<20)
	if off := master.Info(t, "replication")["master_repl_offset"]; mustInt(t, off) < 2<<20 {
		t.Fatalf("master_repl_offset = %s after WriteBytes(2 MiB)", off)
	}
	d1 := redistest.WaitInSync(t, 10*time.Second, master, replica)
	if d1 == emptyDigest {
		t.Fatal("digest of the master is empty after WriteBytes")
	}

	// The replica saves its RDB (with the replication id and offset), misses
	// some writes, restarts from the RDB and continues with a partial sync.
	replica.ShutdownSave(t)
	if replica.Running() {
		t.Fatal("replica still running after ShutdownSave")
	}
	if _, err := os.Stat(filepath.Join(replica.Dir, "dump.rdb")); err != nil {
		t.Fatalf("no RDB after SHUTDOWN SAVE: %v", err)
	}
	redistest.WriteBytes(t, master, 256<<10)
	replica.Restart(t)
	redistest.WaitOnline(t, replica, 10*time.Second)
	d2 := redistest.WaitInSync(t, 10*time.Second, master, replica)
	if d2 == d1 {
		t.Fatal("digest unchanged by writes made while the replica was down")
	}
	if n := replica.CountLog(t, "Master accepted a Partial Resynchronization"); n != 1 {
		t.Errorf("replica logged %d accepted partial resyncs, want 1", n)
	}
	if n := master.CountLog(t, "Partial resynchronization request"); n != 1 {
		t.Errorf("master logged %d partial resynchronization requests, want 1", n)
	}

	out := redistest.Benchmark(t, master, "-t", "set", "-n", "2000", "-r", "500", "-P", "16")
	if !strings.Contains(out, "SET") {
		t.Errorf("redis-benchmark output has no SET line:\n%s", out)
	}
	d3 := redistest.WaitInSync(t, 10*time.Second, master, replica)
	if d3 == d2 {
		t.Error("digest unchanged by redis-benchmark SETs")
	}
	if md, rd := master.Digest(t), replica.Digest(t); md != rd || md != d3 {
		t.Errorf("digests: master %s, replica %s, WaitInSync %s", md, rd, d3)
	}
}

func TestStopKillRestart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	port, dir, pid := s.Port, s.Dir, s.PID()
	s.MustDo(t, "SET", "k", "v")

	s.Stop(t)
	if s.Running() {
		t.Fatal("running after Stop")
	}
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Restart(t)
	if s.Port != port || s.Dir != dir || s.PID() == pid {
		t.Fatalf("after Restart: port %d dir %s pid %d; before: %d %s %d", s.Port, s.Dir, s.PID(), port, dir, pid)
	}
	if v := s.MustDo(t, "GET", "k"); !v.IsNull() {
		t.Fatalf("GET k = %q after Stop (NOSAVE) and Restart, want nil", v.String())
	}

	s.MustDo(t, "SET", "k", "v2")
	s.ShutdownSave(t)
	s.Restart(t)
	if v := s.MustDo(t, "GET", "k"); v.String() != "v2" {
		t.Fatalf("GET k = %q after ShutdownSave and Restart, want v2", v.String())
	}

	s.Kill(t)
	if s.Running() {
		t.Fatal("running after Kill")
	}
	s.Restart(t)
	s.WaitLog(t, "Ready to accept connections", 4, 5*time.Second)
	if n := s.CountLog(t, "User requested shutdown"); n != 2 {
		t.Errorf("log has %d shutdowns, want 2", n)
	}
}

func TestDoInfoAndErrors(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, "--maxmemory", "64mb")
	_, err := s.Do("NOSUCHCOMMAND", "x")
	var re redistest.ReplyError
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "ERR unknown command") {
		t.Fatalf("Do(NOSUCHCOMMAND) error = %v, want an ERR reply", err)
	}
	// The cached connection is still usable after an error reply.
	if v := s.MustDo(t, "INCRBY", "n", "41"); v.Integer() != 41 {
		t.Fatalf("INCRBY = %v", v)
	}
	if v := s.MustDo(t, "CONFIG", "GET", "maxmemory").Array(); len(v) != 2 || v[1].String() != "67108864" {
		t.Fatalf("CONFIG GET maxmemory = %v; extra args not applied", v)
	}
	info := s.Info(t, "all")
	if info["role"] != "master" || info["tcp_port"] != strconv.Itoa(s.Port) || info["process_id"] != strconv.Itoa(s.PID()) {
		t.Fatalf("INFO all: role %q tcp_port %q process_id %q", info["role"], info["tcp_port"], info["process_id"])
	}
	if !strings.HasPrefix(info["db0"], "keys=1,") {
		t.Fatalf("INFO all db0 = %q", info["db0"])
	}

	// Do is safe for concurrent use.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				if _, err := s.Do("SET", fmt.Sprintf("c:%d:%d", i, j), "x"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v := s.MustDo(t, "DBSIZE"); v.Integer() != 401 {
		t.Fatalf("DBSIZE = %d, want 401", v.Integer())
	}
}

// TestClientPSYNC plays a replica by hand: handshake, full sync, stream.
func TestClientPSYNC(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	master.MustDo(t, "SET", "before", "1")
	c := redistest.Dial(t, master.Addr())
	if v, err := c.Do("REPLCONF", "listening-port", "6380"); err != nil || v.String() != "OK" {
		t.Fatalf("REPLCONF = %v, %v", v, err)
	}
	if err := c.Send("PSYNC", "?", "-1"); err != nil {
		t.Fatal(err)
	}
	line := c.MustReadLineSkippingNewlines(t)
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "+FULLRESYNC" || len(f[1]) != 40 {
		t.Fatalf("PSYNC reply %q", line)
	}
	line = c.MustReadLineSkippingNewlines(t)
	if !strings.HasPrefix(line, "$") {
		t.Fatalf("RDB preamble %q", line)
	}
	rdb, err := c.ReadFull(mustInt(t, line[1:]))
	if err != nil || !strings.HasPrefix(string(rdb), "REDIS") {
		t.Fatalf("RDB payload %.9q: %v", rdb, err)
	}

	master.MustDo(t, "SET", "after", "2")
	for {
		v, err := c.ReadValue()
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if a := v.Array(); len(a) == 3 && a[0].String() == "SET" {
			if a[1].String() != "after" || a[2].String() != "2" {
				t.Fatalf("stream has %v", v)
			}
			break
		}
	}
	info := master.Info(t, "replication")
	if info["connected_slaves"] != "1" || !strings.Contains(info["slave0"], "port=6380") {
		t.Fatalf("master sees replicas %q %q", info["connected_slaves"], info["slave0"])
	}

	c.SetTimeout(50 * time.Millisecond)
	if _, err := c.ReadValue(); !isTimeout(err) {
		t.Fatalf("ReadValue on a quiet stream = %v, want a timeout", err)
	}
	c.Close()
	c.Close()
}

func TestBenchmarkAsync(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	stop := redistest.BenchmarkAsync(t, s, "-t", "set", "-n", "100000000", "-r", "1000", "-c", "4")
	redistest.Eventually(t, 10*time.Second, func() error {
		if n := s.MustDo(t, "DBSIZE").Integer(); n < 100 {
			return fmt.Errorf("DBSIZE %d", n)
		}
		return nil
	})
	stop()
	stop()
	clients := func() error {
		if n := s.Info(t, "clients")["connected_clients"]; n != "1" {
			return fmt.Errorf("connected_clients %s after stop", n)
		}
		return nil
	}
	redistest.Eventually(t, 5*time.Second, clients)
}

func TestCSVBenchmark(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	out := redistest.Benchmark(t, s, "--csv", "-t", "ping", "-n", "1000")
	if !strings.Contains(out, `"PING_INLINE"`) {
		t.Fatalf("CSV output:\n%s", out)
	}
}

// fakeTB records Fatalf and ends its goroutine like testing.T does.
type fakeTB struct {
	testing.TB
	mu    sync.Mutex
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestEventuallyFails(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.Eventually(ft, 100*time.Millisecond, func() error {
			calls++
			return fmt.Errorf("attempt %d", calls)
		})
	}()
	<-done
	if calls < 3 || !strings.Contains(ft.fatal, fmt.Sprintf("attempt %d", calls)) {
		t.Fatalf("calls %d, fatal %q", calls, ft.fatal)
	}
}

func TestWaitInSyncReportsReplicas(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	other := redistest.Start(t) // not a replica: never in sync
	master.MustDo(t, "SET", "k", "v")
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.WaitInSync(ft, 200*time.Millisecond, master, other)
	}()
	<-done
	t.Logf("WaitInSync failure message:\n%s", ft.fatal)
	if !strings.Contains(ft.fatal, other.Addr()) || !strings.Contains(ft.fatal, "differs") {
		t.Fatalf("WaitInSync failure message:\n%s", ft.fatal)
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	if p := redistest.FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
}

func mustInt(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
