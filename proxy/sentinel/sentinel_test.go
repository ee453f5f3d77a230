package sentinel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy/sentinel"
)

const name = "mymaster"

// report is one call of the follow function.
type report struct {
	addr, why string
	at        time.Time
}

// watch is a Watcher whose Run goes on until the test ends, with its reports
// and log lines kept for the test.
type watch struct {
	w    *sentinel.Watcher
	logs *observer.ObservedLogs

	mu      sync.Mutex
	reports []report
	signal  chan struct{} // poked on every report
}

func newWatcher(t *testing.T, cfg sentinel.Config) *watch {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)).Sugar()
	if cfg.MasterName == "" {
		cfg.MasterName = name
	}
	w, err := sentinel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &watch{w: w, logs: logs, signal: make(chan struct{}, 1)}
}

// run starts Run; t.Cleanup stops it and checks that it returned.
func (wt *watch) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wt.w.Run(ctx, wt.follow) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of its context's end")
		}
	})
}

func (wt *watch) follow(addr, why string) {
	wt.mu.Lock()
	wt.reports = append(wt.reports, report{addr, why, time.Now()})
	wt.mu.Unlock()
	select {
	case wt.signal <- struct{}{}:
	default:
	}
}

func (wt *watch) all() []report {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return append([]report(nil), wt.reports...)
}

// waitReports waits until there are n reports and returns them.
func (wt *watch) waitReports(t *testing.T, n int, timeout time.Duration) []report {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if r := wt.all(); len(r) >= n {
			return r
		}
		select {
		case <-wt.signal:
		case <-deadline:
			t.Fatalf("%d reports after %v, want %d: %+v", len(wt.all()), timeout, n, wt.all())
		}
	}
}

// waitLog waits until n log lines contain every one of parts.
func (wt *watch) waitLog(t *testing.T, n int, timeout time.Duration, parts ...string) {
	t.Helper()
	redistest.Eventually(t, timeout, func() error {
		if got := wt.countLog(parts...); got < n {
			return fmt.Errorf("%d log lines with %q, want %d", got, parts, n)
		}
		return nil
	})
}

func (wt *watch) countLog(parts ...string) int {
	return wt.logs.Filter(func(e observer.LoggedEntry) bool {
		for _, p := range parts {
			if !strings.Contains(e.Message, p) {
				return false
			}
		}
		return true
	}).Len()
}

func addrs(ss ...*redistest.Sentinel) []string {
	var a []string
	for _, s := range ss {
		a = append(a, s.Addr())
	}
	return a
}

func lookup(t *testing.T, w *sentinel.Watcher) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.Lookup(ctx)
}

// TestFailover: a master, its replica and three Sentinels (quorum 2). The
// Watcher reports the master, then the replica once when the master is killed,
// and nothing when a stale Sentinel or a fresh one comes back.
func TestFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t)
	replica.ReplicaOf(t, master.Addr())
	redistest.WaitOnline(t, replica, 10*time.Second)
	ss := []*redistest.Sentinel{
		redistest.StartSentinel(t, name, master, 2),
		redistest.StartSentinel(t, name, master, 2),
		redistest.StartSentinel(t, name, master, 2),
	}
	redistest.WaitSentinelsReady(t, 30*time.Second, 1, ss...)

	wt := newWatcher(t, sentinel.Config{Addrs: addrs(ss...)})
	if got, err := lookup(t, wt.w); err != nil || got != master.Addr() {
		t.Fatalf("Lookup = %q, %v; want %s", got, err, master.Addr())
	}
	wt.run(t)
	r := wt.waitReports(t, 1, 10*time.Second)
	if r[0].addr != master.Addr() || !strings.Contains(r[0].why, "GET-MASTER-ADDR-BY-NAME") {
		t.Fatalf("first report %+v, want %s from GET-MASTER-ADDR-BY-NAME", r[0], master.Addr())
	}
	wt.waitLog(t, 3, 10*time.Second, "subscribed to +switch-master")

	// ss[2] misses the failover; it comes back later with the old master in its config.
	stale := ss[2]
	stale.Kill(t)
	killed := time.Now()
	master.Kill(t)
	r = wt.waitReports(t, 2, 30*time.Second)
	t.Logf("reported %s %v after the master's SIGKILL: %s", r[1].addr, r[1].at.Sub(killed).Round(time.Millisecond), r[1].why)
	if r[1].addr != replica.Addr() || !strings.Contains(r[1].why, "+switch-master "+name+" ") {
		t.Fatalf("second report %+v, want %s from +switch-master", r[1], replica.Addr())
	}
	for _, s := range ss[:2] {
		s.WaitLog(t, "+switch-master", 1, 10*time.Second)
	}
	wt.waitLog(t, 2, 10*time.Second, "+switch-master "+name)

	stale.Restart(t)
	wt.waitLog(t, 2, 20*time.Second, stale.Addr(), "subscribed to +switch-master")
	stale.WaitLog(t, "+switch-master", 1, 20*time.Second) // it learns from its peers' hellos
	t.Logf("stale Sentinel: %d answers set aside", wt.countLog(stale.Addr(), "still gives"))

	fresh := ss[0]
	fresh.Kill(t)
	fresh.Restart(t)
	wt.waitLog(t, 2, 20*time.Second, fresh.Addr(), "subscribed to +switch-master")
	wt.waitLog(t, 1, 10*time.Second, "Sentinel "+fresh.Addr()+" gives "+replica.Addr())
	time.Sleep(500 * time.Millisecond) // a report, if any, would come right after the answer
	if r := wt.all(); len(r) != 2 {
		t.Fatalf("%d reports, want 2 (master, then replica once): %+v", len(r), r)
	}

	// A Watcher started after the failover goes to the promoted replica. One more
	// Sentinel, started now on the dead master's address, never learns of the
	// failover (it reaches no instance, so no peer): its answers must be set aside.
	lonely := redistest.StartSentinel(t, name, master, 2)
	late := newWatcher(t, sentinel.Config{Addrs: append(addrs(ss...), lonely.Addr())})
	if got, err := lookup(t, late.w); err != nil || got != replica.Addr() {
		t.Fatalf("Lookup after the failover = %q, %v; want %s", got, err, replica.Addr())
	}
	late.run(t)
	late.waitLog(t, 4, 10*time.Second, "subscribed to +switch-master")
	late.waitLog(t, 4, 10*time.Second, " gives ", " for master ")
	m, err := ss[0].MasterInfo()
	if err != nil {
		t.Fatal(err)
	}
	r = late.all()
	if epoch := "config epoch " + m["config-epoch"]; len(r) != 1 || r[0].addr != replica.Addr() || !strings.Contains(r[0].why, epoch) {
		// Whichever Sentinel answers first, the opening picks the greatest epoch.
		t.Fatalf("late watcher reports %+v, want only %s (%s)", r, replica.Addr(), epoch)
	}
	lonely.Kill(t)
	lonely.Restart(t)
	late.waitLog(t, 2, 20*time.Second, lonely.Addr(), "subscribed to +switch-master")
	late.waitLog(t, 1, 10*time.Second, "Sentinel "+lonely.Addr()+" still gives "+master.Addr())
	time.Sleep(500 * time.Millisecond)
	if got := late.all(); len(got) != len(r) {
		t.Fatalf("late watcher: %d reports after the lonely Sentinel's restart, want %d: %+v", len(got), len(r), got)
	}
}

// TestAuth: a Sentinel with requirepass and an ACL user. Without epochs (the
// user may not run SENTINEL MASTER) the Watcher still finds and follows the
// master.
func TestAuth(t *testing.T) {
	master := redistest.Start(t)
	s := redistest.StartSentinel(t, name, master, 1,
		"requirepass sentpass",
		"user watcher on >watchpass resetchannels &+switch-master -@all +subscribe +ping +sentinel|get-master-addr-by-name")
	for _, tc := range []struct {
		user, pass string
		err        string
	}{
		{"", "sentpass", ""},
		{"watcher", "watchpass", ""},
		{"", "", "NOAUTH"},
		{"", "wrong", "WRONGPASS"},
		{"watcher", "wrong", "WRONGPASS"},
	} {
		wt := newWatcher(t, sentinel.Config{Addrs: []string{s.Addr()}, User: tc.user, Password: tc.pass})
		got, err := lookup(t, wt.w)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("user %q password %q: Lookup = %q, %v; want an error with %s", tc.user, tc.pass, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != master.Addr() {
			t.Errorf("user %q password %q: Lookup = %q, %v; want %s", tc.user, tc.pass, got, err, master.Addr())
		}
	}

	wt := newWatcher(t, sentinel.Config{Addrs: []string{s.Addr()}, User: "watcher", Password: "watchpass"})
	wt.run(t)
	if r := wt.waitReports(t, 1, 10*time.Second); r[0].addr != master.Addr() || !strings.Contains(r[0].why, "config epoch unknown") {
		t.Fatalf("report %+v, want %s with an unknown epoch", r[0], master.Addr())
	}
	wt.waitLog(t, 1, 5*time.Second, "does not give the config epoch", "NOPERM")
	wt.waitLog(t, 1, 5*time.Second, "subscribed to +switch-master")
	time.Sleep(2500 * time.Millisecond) // two keep-alive PINGs
	if n := wt.countLog("connection lost"); n != 0 {
		t.Fatalf("the subscription was lost %d times", n)
	}
}

// TestOrder: Lookup skips a Sentinel that is down and one that does not know
// the master (null reply) and takes the next; Run too.
func TestOrder(t *testing.T) {
	master := redistest.Start(t)
	other := redistest.StartSentinel(t, "othermaster", master, 1)
	ours := redistest.StartSentinel(t, name, master, 1)
	down := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	wt := newWatcher(t, sentinel.Config{Addrs: []string{down, other.Addr(), ours.Addr()}})
	got, err := lookup(t, wt.w)
	if err != nil || got != master.Addr() {
		t.Fatalf("Lookup = %q, %v; want %s", got, err, master.Addr())
	}
	wt.run(t)
	if r := wt.waitReports(t, 1, 10*time.Second); r[0].addr != master.Addr() || !strings.Contains(r[0].why, ours.Addr()) {
		t.Fatalf("report %+v, want %s from %s", r[0], master.Addr(), ours.Addr())
	}

	// A Sentinel that never answers holds the first report back by Timeout at most.
	silent := hostile(t, func(net.Conn) {})
	slow := newWatcher(t, sentinel.Config{Addrs: []string{silent, ours.Addr()}, Timeout: time.Second})
	began := time.Now()
	slow.run(t)
	if r := slow.waitReports(t, 1, 5*time.Second); r[0].addr != master.Addr() || r[0].at.Sub(began) > 3*time.Second {
		t.Fatalf("report %+v %v after Run began, want %s within about 1s", r[0], r[0].at.Sub(began), master.Addr())
	}

	none := newWatcher(t, sentinel.Config{Addrs: []string{down, other.Addr()}})
	_, err = lookup(t, none.w)
	for _, want := range []string{down, "connection refused", other.Addr(), "does not know"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup with no Sentinel knowing the master: %v; want it to mention %q", err, want)
		}
	}
}

// TestOtherMaster: Sentinels that monitor two masters; a failover of the other
// one is not reported, a failover of ours is (SENTINEL FAILOVER, which needs no
// agreement).
func TestOtherMaster(t *testing.T) {
	ours, oursReplica := redistest.Start(t), redistest.Start(t)
	theirs, theirsReplica := redistest.Start(t), redistest.Start(t)
	oursReplica.ReplicaOf(t, ours.Addr())
	theirsReplica.ReplicaOf(t, theirs.Addr())
	redistest.WaitOnline(t, oursReplica, 10*time.Second)
	redistest.WaitOnline(t, theirsReplica, 10*time.Second)
	s := redistest.StartSentinel(t, name, ours, 1,
		fmt.Sprintf("sentinel monitor othermaster 127.0.0.1 %d 1", theirs.Port))
	failover := func(master string) {
		t.Helper()
		// -NOGOODSLAVE until Sentinel has seen the replica's INFO.
		redistest.Eventually(t, 20*time.Second, func() error {
			_, err := s.Do("SENTINEL", "FAILOVER", master)
			return err
		})
	}

	wt := newWatcher(t, sentinel.Config{Addrs: []string{s.Addr()}})
	wt.run(t)
	wt.waitReports(t, 1, 10*time.Second)
	wt.waitLog(t, 1, 5*time.Second, "subscribed to +switch-master")
	failover("othermaster")
	s.WaitLog(t, "+switch-master othermaster", 1, 30*time.Second)
	wt.waitLog(t, 1, 5*time.Second, "+switch-master othermaster", "(another master)")

	failover(name)
	r := wt.waitReports(t, 2, 30*time.Second)
	if len(r) != 2 || r[0].addr != ours.Addr() || r[1].addr != oursReplica.Addr() {
		t.Fatalf("reports %+v, want %s then %s", r, ours.Addr(), oursReplica.Addr())
	}
}
