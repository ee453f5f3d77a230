package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

const (
	restartReplicas = 2
	restartDown     = 2 * time.Second // killed until restarted
	restartBefore   = 2 * time.Second // paced writes before the kill
	restartAfter    = 2 * time.Second // master probed after the catch-up
)

// runRestart kills the tier between the master and its replicas with SIGKILL under a paced
// write load and starts it again: a chained Redis replica (the tier a Redis user would
// otherwise run) or psync-proxy with its disk backlog. There is no direct topology: with the
// replicas on the master there is no tier to restart. It measures how the
// tier and its replicas resync, the master's forks, the time until every replica is back in
// sync, and the master's PING latency meanwhile.
func runRestart(e *env) error {
	// The master's backlog covers the tier's downtime in both tiers: that is what lets
	// the tier itself resume with a partial resync. The dataset is written through the
	// stream after the tier's first sync and outgrows that backlog, as on any tier that has
	// run for longer than backlog/W: a chained Redis replica restarts from the RDB it saved
	// at its sync, too old for the master's backlog; the proxy from its disk backlog.
	keys, rate, backlog := 100_000, int64(5<<20), "64mb"
	if e.cfg.quick {
		keys, rate, backlog = 10_000, 2<<20, "8mb"
	}
	kase := fmt.Sprintf("%dk keys x 1 KiB, W=%dMB/s", keys/1000, rate>>20)
	err := e.eachOf("restart", []string{"chain", "proxy"}, func(r *run, topology string, rep int) {
		res := restartRun(e, r, topology, rep, keys, rate, backlog)
		rec := func(metric, unit string, v float64) {
			e.record(result{Scenario: "restart", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
		}
		rec("master_forks", "", float64(res.forks))
		rec("master_sync_full", "", float64(res.masterFull))
		rec("master_sync_partial_ok", "", float64(res.masterPartial))
		rec("replica_partial", "", float64(res.replicaPartial))
		rec("replica_full", "", float64(res.replicaFull))
		rec("catchup_ms", "ms", float64(res.catchUp)/float64(time.Millisecond))
		rec("p99_ms", "ms", float64(latencyPercentile(res.rtts, 0.99))/float64(time.Millisecond))
		rec("max_ms", "ms", float64(res.rtts[len(res.rtts)-1])/float64(time.Millisecond))
		rec("write_mb_s", "MB/s", res.writeRate/(1<<20))
	})
	restartGoal(e, kase)
	return err
}

// restartResult is what one topology's repetition measured.
type restartResult struct {
	forks, masterFull, masterPartial int64 // master INFO stats deltas over the restart
	replicaPartial, replicaFull      int   // resyncs in the replicas' logs after the kill
	catchUp                          time.Duration
	rtts                             []time.Duration // master PING round trips, sorted
	writeRate                        float64
}

func restartRun(e *env, r *run, topology string, rep, keys int, rate int64, backlog string) restartResult {
	step := func(format string, a ...any) {
		e.step("restart: %s #%d: %s", topology, rep+1, fmt.Sprintf(format, a...))
	}
	step("starting")
	master := redistest.Start(r, "--repl-backlog-size", backlog)
	r.pinMaster(master)
	tier := restartStartTier(r, topology, master)
	var replicas []*redistest.Server
	host, port, _ := net.SplitHostPort(tier.addr())
	for range restartReplicas {
		replicas = append(replicas, redistest.Start(r, "--replicaof", host, port))
	}
	for _, s := range replicas {
		redistest.WaitOnline(r, s, 2*time.Minute)
	}
	r.Cleanup(func() {
		for _, s := range replicas {
			os.Remove(filepath.Join(s.Dir, "dump.rdb"))
		}
	})
	step("loading %d keys", keys)
	stormLoad(r, master, keys)
	stormWaitSynced(r, master, replicas, 2*time.Minute)

	w := outageStartWriter(r, master, rate)
	time.Sleep(restartBefore)
	stats0 := master.Info(r, "stats")
	logBefore := make([]int, len(replicas))
	for i, s := range replicas {
		logBefore[i] = len(s.Log(r))
	}
	step("SIGKILL to the tier, down for %v", restartDown)
	tier.kill(r)
	time.Sleep(restartDown)
	step("restarting the tier")
	start := time.Now()
	probe := outageStartProbe(r, master)
	tier.restart(r)
	var res restartResult
	for _, s := range replicas {
		res.catchUp = outageWaitCaughtUp(r, master, s, rate, start)
	}
	step("caught up after %v; probing the master %v more", res.catchUp.Round(time.Millisecond), restartAfter)
	time.Sleep(restartAfter)
	res.rtts = probe.stop(r)
	_, res.writeRate = w.stop(r)
	stats1 := master.Info(r, "stats")
	res.forks = stormDelta(r, stats0, stats1, "total_forks")
	res.masterFull = stormDelta(r, stats0, stats1, "sync_full")
	res.masterPartial = stormDelta(r, stats0, stats1, "sync_partial_ok")

	step("checking digests")
	stormQuiet(r, master)
	redistest.WaitInSync(r, 2*time.Minute, master, replicas...)
	for i, s := range replicas {
		log := s.Log(r)[logBefore[i]:]
		res.replicaPartial += strings.Count(log, "Master accepted a Partial Resynchronization")
		res.replicaFull += strings.Count(log, "Full resync from master")
	}
	if res.replicaPartial+res.replicaFull < len(replicas) {
		r.Fatalf("%d resyncs in the replicas' logs after the kill, want at least %d", res.replicaPartial+res.replicaFull, len(replicas))
	}
	return res
}

// restartTier is the process between the master and the replicas.
type restartTier struct {
	redis *redistest.Server // chained replica
	proxy *proxyProc        // psync-proxy with a disk backlog
}

// restartBacklog is the proxy's disk backlog, and the chain's repl-backlog-size.
const restartBacklog = "1gb"

func restartStartTier(r *run, topology string, master *redistest.Server) *restartTier {
	if topology == "proxy" {
		p := startProxyProc(r, master.Addr(), "--backlog-mode", "disk", "--backlog-size", restartBacklog)
		r.checkPinned("psync-proxy", p.cmd.Process.Pid, r.e.pin.others)
		r.Cleanup(func() { os.RemoveAll(filepath.Join(p.dir, "data")) })
		return &restartTier{proxy: p}
	}
	// Its backlog is in memory, gone with the process; what it restarts from is the RDB of its
	// own sync, kept as dump.rdb (repl-diskless-load disabled, see chain.go).
	return &restartTier{redis: startChain(r, master, restartBacklog)}
}

func (t *restartTier) addr() string {
	if t.proxy != nil {
		return t.proxy.addr()
	}
	return t.redis.Addr()
}

func (t *restartTier) kill(r *run) {
	if t.proxy != nil {
		t.proxy.kill()
		return
	}
	t.redis.Kill(r)
}

// restart starts the tier again on the same port and directory and waits until its master
// link is up (the proxy's start does; a Redis replica is waited for here).
func (t *restartTier) restart(r *run) {
	if t.proxy != nil {
		t.proxy.start(r)
		r.checkPinned("psync-proxy", t.proxy.cmd.Process.Pid, r.e.pin.others)
		return
	}
	t.redis.Restart(r)
	redistest.WaitOnline(r, t.redis, 2*time.Minute)
}

// restartGoal states what the scenario shows. The issue sets no target for it; the claim
// checked is the proxy's: a tier restart costs the master no fork and its replicas no full
// sync.
func restartGoal(e *env, kase string) {
	get := func(topo, metric string) string { return e.medianText("restart", kase, topo, metric) }
	forks, okf := e.median("restart", kase, "proxy", "master_forks")
	full, oku := e.median("restart", kase, "proxy", "replica_full")
	e.addGoal(goal{
		Name:   "restart: the tier killed with SIGKILL under load, then started again",
		Target: "no target in the issue; the proxy's claim: no master fork, no replica full sync",
		Measured: fmt.Sprintf("proxy: %s forks, %s replica full syncs, %s partial, back in sync in %s ms; chained Redis replica: %s forks, %s full, %s partial, %s ms",
			get("proxy", "master_forks"), get("proxy", "replica_full"), get("proxy", "replica_partial"), get("proxy", "catchup_ms"),
			get("chain", "master_forks"), get("chain", "replica_full"), get("chain", "replica_partial"), get("chain", "catchup_ms")),
		Met: okf && oku && forks == 0 && full == 0,
	})
}
