//go:build linux

package proxy_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// Environment switches of TestFaultInjection.
const (
	envFaultDuration = "PSYNC_PROXY_FAULT_DURATION" // how long faults are injected (default 2m)
	envFaultSeed     = "PSYNC_PROXY_FAULT_SEED"     // replays a run's fault sequence
	envFaultKinds    = "PSYNC_PROXY_FAULT_KINDS"    // comma-separated kinds to inject (default: all)
	envFaultRace     = "PSYNC_PROXY_FAULT_RACE"     // 1: build the proxy binary with -race
)

// faultReplTimeout is --repl-timeout (seconds) of the master, the proxy and the replicas.
// The master pings its replicas every second, so a silent link is a dead one.
const faultReplTimeout = 5

// faultKinds returns every kind of fault the test knows, in a fixed order (the seed picks
// among them by index).
func faultKinds() []string {
	return []string{
		"master-cut", "master-stall", "master-delay", "master-throttle", "master-slice", "master-truncate", "master-pause",
		"replica-cut", "replica-stall", "replica-delay", "replica-throttle", "replica-slice", "replica-truncate", "replica-restart",
		"proxy-kill", "master-failover",
	}
}

// TestFaultInjection runs a master under redis-benchmark load, the proxy binary (disk backlog)
// reaching it through a fault-injecting TCP proxy, and three replicas each reaching the proxy
// through their own. For PSYNC_PROXY_FAULT_DURATION (2 minutes by default) it injects one
// fault at a time, picked by a seeded generator: links cut, stalled, delayed, throttled,
// sliced into small segments, or closed after a random number of bytes; replicas killed with SIGKILL (after a SAVE or not) or shut down
// with SHUTDOWN SAVE, then restarted from their RDB; the master paused with SIGSTOP past
// --repl-timeout; the proxy killed with SIGKILL and restarted on its --dir; a failover to a
// standby replica of the same history and back, the proxy moved by REPLICAOF each time
// (fault_failover_test.go). Then it heals
// everything, stops the load and requires every replica's DEBUG DIGEST to equal the master's,
// no RDB load or protocol error in any replica's log, and no crash of the proxy.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("injects faults for minutes")
	}
	began := time.Now()
	dur := 2 * time.Minute
	if s := os.Getenv(envFaultDuration); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", envFaultDuration, err)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envFaultSeed); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", envFaultSeed, err)
		}
		seed = n
	}
	kinds := faultKinds()
	if s := os.Getenv(envFaultKinds); s != "" && s != "all" {
		kinds = strings.Split(s, ",")
		for _, k := range kinds {
			if !slices.Contains(faultKinds(), k) {
				t.Fatalf("%s: unknown kind %q (known: %s)", envFaultKinds, k, strings.Join(faultKinds(), ","))
			}
		}
	}
	t.Logf("fault injection: seed %d (replay with %s=%d), %v of faults, kinds %s", seed, envFaultSeed, seed, dur, strings.Join(kinds, ","))

	f := setupFaultRun(t, seed)
	f.kinds = kinds
	stopBench := redistest.BenchmarkAsync(t, f.m, "-l", "-c", "1", "-P", "4", "-r", "50000", "-d", "64",
		"-t", "set,incr,lpush,lpop,sadd,hset")
	writer := startKeyedWriter(t, f.m, seed)

	defer func() { f.report(began) }() // also when the test stops on a failure
	f.loop(dur)

	f.healAll()
	stopBench()
	if err := writer.halt(); err != nil {
		t.Errorf("%v", err)
	}
	f.writerTxs, f.writerSkipped = writer.txs, writer.skipped
	digest := f.waitConverged(150 * time.Second)
	t.Logf("replicas verified equal to the master: %d of %d, digest %s", f.equal, len(f.replicas), digest)
	f.checkProxyView()
	f.checkLogs()
}

// waitConverged waits until every replica has the master's DEBUG DIGEST and an offset the
// master had while the replica was read, and returns the digest. It is WaitInSync made to
// tolerate the master's PING every second: a DEBUG DIGEST of this dataset can take longer
// than that, so the master's offset moves while the replicas are read one by one. A replica
// ahead of the master's offset (bytes the master never sent) never converges.
func (f *faultRun) waitConverged(timeout time.Duration) string {
	var digest string
	redistest.Eventually(f.t, timeout, func() error {
		d, err := f.m.Do("DEBUG", "DIGEST")
		if err != nil {
			return err
		}
		digest = d.String()
		var bad []string
		for i, r := range f.replicas {
			before, err1 := f.m.InfoErr("replication")
			ri, err2 := r.InfoErr("replication")
			after, err3 := f.m.InfoErr("replication")
			rd, err4 := r.Do("DEBUG", "DIGEST")
			if err := errors.Join(err1, err2, err3, err4); err != nil {
				bad = append(bad, fmt.Sprintf("replica %d: %v", i, err))
				continue
			}
			lo, hi := atoi64(before["master_repl_offset"]), atoi64(after["master_repl_offset"])
			off, roff := atoi64(ri["slave_repl_offset"]), atoi64(ri["master_repl_offset"])
			if off != roff || off < lo || off > hi || rd.String() != digest {
				bad = append(bad, fmt.Sprintf("replica %d: master_link_status:%s slave_repl_offset:%d master_repl_offset:%d digest:%s; master offset %d..%d digest:%s",
					i, ri["master_link_status"], off, roff, rd.String(), lo, hi, digest))
			}
		}
		f.equal = len(f.replicas) - len(bad)
		if len(bad) > 0 {
			return errors.New("not converged:\n  " + strings.Join(bad, "\n  "))
		}
		return nil
	})
	return digest
}

// checkProxyView checks that the proxy, once everything has converged, presents the master's
// replication ID and an offset the master had, with its link up and the three replicas online.
func (f *faultRun) checkProxyView() {
	t := f.t
	before := f.m.Info(t, "replication")
	pi, err := rawInfo(f.px.addr, "", "replication")
	if err != nil {
		t.Fatalf("proxy INFO: %v", err)
	}
	after := f.m.Info(t, "replication")
	off := atoi64(pi["master_repl_offset"])
	if pi["master_replid"] != before["master_replid"] || off < atoi64(before["master_repl_offset"]) ||
		off > atoi64(after["master_repl_offset"]) || pi["master_link_status"] != "up" || pi["connected_slaves"] != "3" {
		t.Errorf("proxy INFO replication: master_replid:%s master_repl_offset:%s master_link_status:%s connected_slaves:%s; master %s at %s..%s",
			pi["master_replid"], pi["master_repl_offset"], pi["master_link_status"], pi["connected_slaves"],
			before["master_replid"], before["master_repl_offset"], after["master_repl_offset"])
	}
}

func atoi64(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// faultRun is the topology under test and what has been done to it.
type faultRun struct {
	t        *testing.T
	rng      *rand.Rand
	kinds    []string
	m        *redistest.Server
	px       *proxyProc
	master   *faultLink   // proxy -> master
	links    []*faultLink // replica i -> proxy
	replicas []*redistest.Server

	counts        map[string]int // faults injected, by kind (variants of replica-restart apart)
	n             int
	writerTxs     int
	writerSkipped int // transactions refused while the master was a replica (master-failover)
	equal         int // replicas verified equal to the master

	// The master-failover fault's standby, a replica of the master reached by the proxy
	// through its own link, and how the proxy resynced after each switch.
	standby     *redistest.Server
	standbyLink *faultLink
	switches    switchCounts
}

func setupFaultRun(t *testing.T, seed uint64) *faultRun {
	t.Helper()
	f := &faultRun{t: t, rng: rand.New(rand.NewPCG(seed, 1)), counts: map[string]int{}}
	timeout := strconv.Itoa(faultReplTimeout)
	// The master's own backlog is small next to the proxy's, so long master-link faults can
	// cost the proxy a full resync from the master too.
	f.m = redistest.Start(t, "--repl-timeout", timeout, "--repl-ping-replica-period", "1", "--repl-backlog-size", "32mb")
	t.Cleanup(func() { f.resumeMaster() }) // a test stopped during a pause must not leave it stopped
	fn := newFaultNet(t)
	f.master = fn.link(t, "master", f.m.Addr())
	f.px = startProxyProc(t, buildProxyBinary(t, os.Getenv(envFaultRace) == "1"), f.master.addr,
		"--backlog-mode", "disk", "--backlog-size", "128mb", "--backlog-ram-tail", "4mb",
		"--repl-timeout", timeout, "--snapshot-refresh-min-interval", "5")
	f.px.waitServing(syncTimeout)
	f.standby = redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(f.m.Port), "--repl-timeout", timeout,
		"--repl-ping-replica-period", "1", "--repl-backlog-size", "32mb")
	f.standbyLink = fn.link(t, "standby", f.standby.Addr())
	for i := range 3 {
		l := fn.link(t, "replica"+strconv.Itoa(i), f.px.addr)
		_, port, _ := strings.Cut(l.addr, ":")
		f.links = append(f.links, l)
		f.replicas = append(f.replicas, redistest.Start(t, "--replicaof", "127.0.0.1", port, "--repl-timeout", timeout))
	}
	redistest.WriteBytes(t, f.m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, f.m, f.replicas...)
	// The disk backlog exists from here on, so killing the proxy tests its recovery.
	if bi, err := rawInfo(f.px.addr, "", "backlog"); err != nil || bi["backlog_segments"] == "0" {
		t.Fatalf("the proxy has no disk backlog after the first sync: %v %v", bi, err)
	}
	return f
}

// loop injects faults until d has passed.
func (f *faultRun) loop(d time.Duration) {
	end := time.Now().Add(d)
	start := time.Now()
	for time.Now().Before(end) {
		kind := f.kinds[f.rng.IntN(len(f.kinds))]
		gap := f.between(0.3, 2)
		what := f.inject(kind)
		f.n++
		f.t.Logf("fault %d at %5.1fs: %s", f.n, time.Since(start).Seconds(), what)
		if c := f.px.crashed(); c != "" {
			f.t.Fatalf("psync-proxy exited on its own (%s)", c)
		}
		time.Sleep(gap)
	}
}

// between returns a random duration from lo to hi seconds.
func (f *faultRun) between(lo, hi float64) time.Duration {
	return time.Duration((lo + f.rng.Float64()*(hi-lo)) * float64(time.Second))
}

// inject applies one fault of the kind, holds it, heals it, counts it and describes it. Every
// random choice is drawn before anything is done, so a seed replays the same sequence.
func (f *faultRun) inject(kind string) string {
	t := f.t
	side, action, _ := strings.Cut(kind, "-")
	link, target, idx := f.master, "master link", 0
	if side == "replica" {
		idx = f.rng.IntN(len(f.links))
		link, target = f.links[idx], fmt.Sprintf("replica %d", idx)
	}
	label := kind
	defer func() { f.counts[label]++ }()
	switch action {
	case "cut":
		hold := f.between(0.2, 3)
		link.cut(hold)
		return fmt.Sprintf("%s: %s cut for %v", kind, target, hold.Round(time.Millisecond))
	case "stall":
		// Data stops (dropped) until the toxic is removed, which closes the connections. Held
		// past repl-timeout, the receiving side gives up first.
		hold := f.between(1, 8)
		link.toxic("timeout", map[string]any{"timeout": 0}, hold)
		return fmt.Sprintf("%s: %s stalled for %v", kind, target, hold.Round(time.Millisecond))
	case "delay":
		lat, jit, hold := 20+f.rng.IntN(400), f.rng.IntN(50), f.between(2, 6)
		link.toxic("latency", map[string]any{"latency": lat, "jitter": jit}, hold)
		return fmt.Sprintf("%s: %s delayed %d±%d ms for %v", kind, target, lat, jit, hold.Round(time.Millisecond))
	case "throttle":
		rate, hold := 128+f.rng.IntN(4096), f.between(2, 6)
		link.toxic("bandwidth", map[string]any{"rate": rate}, hold)
		return fmt.Sprintf("%s: %s throttled to %d KB/s for %v", kind, target, rate, hold.Round(time.Millisecond))
	case "slice":
		size, delay, hold := 64+f.rng.IntN(2048), f.rng.IntN(50), f.between(1, 4)
		link.toxic("slicer", map[string]any{"average_size": size, "size_variation": size / 2, "delay": delay}, hold)
		return fmt.Sprintf("%s: %s sliced into ~%d-byte writes %d µs apart for %v", kind, target, size, delay, hold.Round(time.Millisecond))
	case "truncate":
		// Every connection through the link carries n bytes, then closes: a handshake, an RDB
		// transfer or the stream cut at an arbitrary byte, again on each reconnection.
		n, hold := int(math.Exp(f.rng.Float64()*math.Log(8<<20))), f.between(1, 5)
		link.toxic("limit_data", map[string]any{"bytes": n}, hold)
		return fmt.Sprintf("%s: %s connections closed after %d bytes for %v", kind, target, n, hold.Round(time.Millisecond))
	case "pause":
		hold := time.Duration(faultReplTimeout)*time.Second + f.between(0.5, 3)
		pid := f.m.PID()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP master: %v", err)
		}
		time.Sleep(hold)
		f.resumeMaster()
		return fmt.Sprintf("%s: master stopped (SIGSTOP) for %v", kind, hold.Round(time.Millisecond))
	case "restart":
		return f.restartReplica(idx, &label)
	case "failover":
		return f.failover(kind, f.between(1, 4))
	case "kill":
		down := f.between(0.2, 3)
		f.px.kill()
		time.Sleep(down)
		f.px.start()
		f.px.waitServing(syncTimeout)
		return fmt.Sprintf("%s: proxy killed (SIGKILL), restarted %v later on its --dir", kind, down.Round(time.Millisecond))
	}
	t.Fatalf("unknown fault kind %q", kind)
	return ""
}

// restartReplica ends a replica one of three ways, then starts it again after a while: it
// loads the RDB it has, if any, and resumes from that RDB's offset.
func (f *faultRun) restartReplica(i int, label *string) string {
	t := f.t
	r := f.replicas[i]
	variant, lag, down := f.rng.IntN(3), f.between(0, 1.5), f.between(0.2, 3)
	var how string
	switch variant {
	case 0:
		how = "SIGKILL (with whatever RDB it saved last)"
		*label = "replica-kill"
		r.Kill(t)
	case 1:
		// SAVE, then more stream, then SIGKILL: the RDB is behind what the replica had.
		how = fmt.Sprintf("SAVE, SIGKILL %v later", lag.Round(time.Millisecond))
		*label = "replica-save-kill"
		if _, err := r.Do("SAVE"); err != nil {
			how += fmt.Sprintf(" (SAVE: %v)", err)
		}
		time.Sleep(lag)
		r.Kill(t)
	default:
		how = "SHUTDOWN SAVE"
		*label = "replica-shutdown-save"
		if err := r.Shutdown(t, 30*time.Second, "SAVE"); err != nil {
			how += fmt.Sprintf(" (failed: %v; SIGKILL)", err)
			r.Kill(t)
		}
	}
	time.Sleep(down)
	r.Restart(t)
	return fmt.Sprintf("%s: replica %d ended by %s, restarted %v later", *label, i, how, down.Round(time.Millisecond))
}

// resumeMaster sends SIGCONT to the master (harmless if it runs).
func (f *faultRun) resumeMaster() {
	if f.m.Running() {
		if err := syscall.Kill(f.m.PID(), syscall.SIGCONT); err != nil {
			f.t.Errorf("SIGCONT master: %v", err)
		}
	}
}

// healAll undoes anything a fault may have left: every fault heals itself, so this is a
// safety net before the convergence check.
func (f *faultRun) healAll() {
	f.resumeMaster()
	for _, l := range append([]*faultLink{f.master, f.standbyLink}, f.links...) {
		l.heal()
	}
	if c := f.px.crashed(); c != "" {
		f.t.Fatalf("psync-proxy exited on its own (%s)", c)
	}
	for _, r := range f.replicas {
		if !r.Running() {
			r.Restart(f.t)
		}
	}
}

// badReplicaLog are lines a replica must never log: its master sent a stream or an RDB it
// could not use.
func badReplicaLog() []string {
	return []string{
		"Protocol error", "== CRITICAL ==", "Failed trying to load the MASTER synchronization DB",
		"Internal error in RDB reading", "Wrong RDB checksum", "Short read or OOM loading DB",
		"Unexpected EOF reading RDB file",
	}
}

// checkLogs fails the test on a bad line in a replica's or the master's log, or a crash or a
// data race in the proxy's.
func (f *faultRun) checkLogs() {
	t := f.t
	for i, r := range f.replicas {
		for _, bad := range badReplicaLog() {
			if n := r.CountLog(t, bad); n > 0 {
				t.Errorf("replica %d logged %q %d times:\n%s", i, bad, n, grepLines(r.Log(t), bad, 5))
			}
		}
	}
	if n := f.m.CountLog(t, "Protocol error"); n > 0 {
		t.Errorf("the master logged a protocol error %d times:\n%s", n, grepLines(f.m.Log(t), "Protocol error", 5))
	}
	log := f.px.log()
	for _, bad := range []string{"panic:", "fatal error:", "WARNING: DATA RACE"} {
		if strings.Contains(log, bad) {
			t.Errorf("the proxy's log has %q:\n%s", bad, grepLines(log, bad, 5))
		}
	}
}

// report logs the faults and the resyncs on each side, and one summary line.
func (f *faultRun) report(began time.Time) {
	t := f.t
	var kinds []string
	for k, n := range f.counts {
		kinds = append(kinds, k+"="+strconv.Itoa(n))
	}
	slices.Sort(kinds)
	faults := fmt.Sprintf("%d faults (%s)", f.n, strings.Join(kinds, " "))

	master := "master unavailable"
	if ms, err := f.m.InfoErr("stats"); err == nil {
		master = fmt.Sprintf("master (the proxy's link and the standby's): sync_full=%s sync_partial_ok=%s sync_partial_err=%s",
			ms["sync_full"], ms["sync_partial_ok"], ms["sync_partial_err"])
	}
	var rfull, rpartial int
	var per []string
	for i, r := range f.replicas {
		full, partial := r.CountLog(t, "Full resync from master"), r.CountLog(t, "Master accepted a Partial Resynchronization")
		rfull, rpartial = rfull+full, rpartial+partial
		per = append(per, fmt.Sprintf("r%d %d/%d", i, partial, full))
	}
	log := f.px.log()
	proxy := fmt.Sprintf("proxy (its log over %d runs): partial accepted=%d full resyncs served=%d; upstream full=%d partial=%d; snapshot refreshes=%d",
		f.px.runs, strings.Count(log, "Partial resynchronization request from"), strings.Count(log, "Starting full resync of replica"),
		strings.Count(log, "Full resync from master"), strings.Count(log, "Master accepted a Partial Resynchronization"),
		strings.Count(log, "Snapshot refreshed"))
	replicas := fmt.Sprintf("replicas (their logs): partial=%d full=%d (partial/full per replica: %s)", rpartial, rfull, strings.Join(per, ", "))
	// A replica link cut briefly, or a proxy restarted on its disk backlog, is what the proxy
	// exists to resume partially: none at all would mean it fell back to full syncs.
	if resumable := f.counts["replica-cut"] + f.counts["replica-truncate"] + f.counts["proxy-kill"]; resumable > 0 && rpartial == 0 {
		t.Errorf("%d replica link cuts and proxy restarts, and no replica resumed with a partial resync", resumable)
	}
	t.Logf("FAULT SUMMARY: %s; %s; %s; %s; %s; replicas verified equal: %d of %d; keyed transactions %d (%d refused during failovers); wall time %v",
		faults, master, proxy, replicas, f.switches, f.equal, len(f.replicas), f.writerTxs, f.writerSkipped, time.Since(began).Round(time.Second))
}

// grepLines returns up to n lines of s that contain substr.
func grepLines(s, substr string, n int) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) && len(out) < n {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
