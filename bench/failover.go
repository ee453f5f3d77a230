package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

const (
	failoverReplicas = 4
	failoverName     = "benchmaster" // the master's name in the Sentinels
	failoverBefore   = 2 * time.Second
	failoverTimeout  = 2 * time.Minute
)

// runFailover kills the master under a paced write load while three Sentinels (quorum 2,
// down-after 1 s) watch it, and times how long every replica takes to have a write made on
// the new master. The promoted replica R0 is a direct replica of the master in every column;
// the measured replicas are attached directly to the master ("direct": Sentinel reconfigures
// each of them, one at a time, as parallel-syncs 1 has it), behind a chained replica
// ("chain": Sentinel knows the chain, a replica of the master, and reconfigures it; it
// follows R0 with PSYNC2 and its replicas follow it), or behind psync-proxy in --sentinel
// mode ("proxy": Sentinel reconfigures the proxy, which also follows +switch-master itself).
// They, and the chain, have replica-priority 0, so that R0 is the one promoted every time.
func runFailover(e *env) error {
	keys, rate := 100_000, int64(2<<20)
	if e.cfg.quick {
		keys, rate = 10_000, 1<<20
	}
	kase := fmt.Sprintf("%d replicas, %dk keys x 1 KiB, W=%dMB/s", failoverReplicas, keys/1000, rate>>20)
	err := e.each("failover", func(r *run, topology string, rep int) {
		res := failoverRun(e, r, topology, rep, keys, rate)
		rec := func(metric, unit string, v float64) {
			e.record(result{Scenario: "failover", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		rec("promoted_ms", "ms", ms(res.promoted))
		rec("all_replicas_ms", "ms", ms(res.all))
		rec("replica_full", "", float64(res.replicaFull))
		rec("replica_partial", "", float64(res.replicaPartial))
		if topology != "direct" {
			rec("tier_full", "", float64(res.tierFull))
		}
		rec("new_master_sync_full", "", float64(res.masterFull))
		rec("new_master_forks", "", float64(res.forks))
	})
	failoverGoal(e, kase)
	return err
}

// failoverResult is what one topology's repetition measured.
type failoverResult struct {
	promoted, all               time.Duration // from the SIGKILL: R0 a master; every replica with its write
	replicaFull, replicaPartial int           // resyncs in the measured replicas' logs after the kill
	tierFull                    int64         // the chain's or the proxy's full resyncs upstream after the switch
	masterFull, forks           int64         // the new master's sync_full and total_forks deltas
}

func failoverRun(e *env, r *run, topology string, rep, keys int, rate int64) failoverResult {
	step := func(format string, a ...any) {
		e.step("failover: %s #%d: %s", topology, rep+1, fmt.Sprintf(format, a...))
	}
	step("starting, loading %d keys", keys)
	master := redistest.Start(r, "--repl-backlog-size", "64mb")
	r.pinMaster(master)
	stormLoad(r, master, keys)
	mhost, mport, _ := net.SplitHostPort(master.Addr())
	r0 := redistest.Start(r, "--replicaof", mhost, mport, "--repl-backlog-size", "64mb")
	redistest.WaitOnline(r, r0, failoverTimeout)
	var ss []*redistest.Sentinel
	var addrs []string
	for range 3 {
		s := redistest.StartSentinel(r, failoverName, master, 2)
		ss, addrs = append(ss, s), append(addrs, s.Addr())
	}
	upstream, known, px, chain := failoverStartTier(r, topology, master, addrs)
	uhost, uport, _ := net.SplitHostPort(upstream)
	var replicas []*redistest.Server
	for range failoverReplicas {
		replicas = append(replicas, redistest.Start(r, "--replicaof", uhost, uport, "--replica-priority", "0", "--repl-backlog-size", "64mb"))
	}
	stormWaitSynced(r, master, append(replicas, r0), failoverTimeout)
	step("waiting for the Sentinels to know %d replicas", known)
	redistest.WaitSentinelsReady(r, failoverTimeout, known, ss...)

	w := outageStartWriter(r, master, rate)
	time.Sleep(failoverBefore)
	stats0 := r0.Info(r, "stats")
	logBefore := make([]int, len(replicas))
	for i, s := range replicas {
		logBefore[i] = len(s.Log(r))
	}
	chainLog := 0
	if chain != nil {
		chainLog = len(chain.Log(r))
	}
	step("SIGKILL to the master")
	killed := time.Now()
	master.Kill(r)
	w.halt() // its connection is gone
	var res failoverResult
	res.promoted = failoverWaitPromoted(r, r0, killed)
	failoverMark(r, r0)
	for _, s := range replicas {
		res.all = failoverWaitMark(r, s, killed)
	}
	step("R0 promoted after %v, every replica had its write after %v", res.promoted.Round(time.Millisecond), res.all.Round(time.Millisecond))
	// Why R0 refused a partial resync, in its own words (-v): a replica that had more of the
	// old master's last writes than R0 asks for an offset past R0's own.
	for _, line := range strings.Split(r0.Log(r), "\n") {
		if strings.Contains(line, "Partial resynchronization not accepted") ||
			strings.Contains(line, "PSYNC with an offset") || strings.Contains(line, "lack of backlog") {
			step("R0: %s", strings.TrimSpace(line))
		}
	}
	stats1 := r0.Info(r, "stats")
	res.masterFull = stormDelta(r, stats0, stats1, "sync_full")
	res.forks = stormDelta(r, stats0, stats1, "total_forks")
	for i, s := range replicas {
		log := s.Log(r)[logBefore[i]:]
		res.replicaPartial += strings.Count(log, "Master accepted a Partial Resynchronization")
		res.replicaFull += strings.Count(log, "Full resync from master")
	}
	if px != nil {
		pi, err := px.info("replication")
		if err != nil {
			r.Fatalf("proxy INFO: %v", err)
		}
		res.tierFull = stormDeltaOne(r, pi, "master_changes_full")
	}
	if chain != nil {
		res.tierFull = int64(strings.Count(chain.Log(r)[chainLog:], "Full resync from master"))
	}
	step("checking digests")
	// Each Sentinel publishes its hello on the master every 2 s, and PUBLISH moves the
	// master's offset: with 100 MB digests taking seconds each, the check would chase it.
	for _, s := range ss {
		s.Kill(r)
	}
	stormQuiet(r, r0)
	redistest.WaitInSync(r, failoverTimeout, r0, replicas...)
	return res
}

// failoverStartTier starts the proxy (in --sentinel mode) or the chained replica
// (replica-priority 0, so that Sentinel never promotes it), and returns the address the
// measured replicas replicate from and how many replicas the Sentinels will know.
func failoverStartTier(r *run, topology string, master *redistest.Server, sentinels []string) (upstream string, known int, px *proxyProc, chain *redistest.Server) {
	switch topology {
	case "proxy":
		px = startProxyProc(r, master.Addr(), "--sentinel", strings.Join(sentinels, ","), "--sentinel-master", failoverName,
			"--backlog-size", defaultTierBacklog)
		r.checkPinned("psync-proxy", px.cmd.Process.Pid, r.e.pin.others)
		return px.addr(), 2, px, nil
	case "chain":
		chain = startChain(r, master, defaultTierBacklog, "--replica-priority", "0")
		return chain.Addr(), 2, nil, chain
	}
	return master.Addr(), failoverReplicas + 1, nil, nil
}

// failoverWaitPromoted polls R0 until it reports role:master and returns the time since
// the kill.
func failoverWaitPromoted(r *run, r0 *redistest.Server, killed time.Time) time.Duration {
	var last error
	for time.Since(killed) < failoverTimeout {
		ri, err := r0.InfoErr("replication")
		if err == nil && ri["role"] == "master" {
			return time.Since(killed)
		}
		last = err
		if err == nil {
			last = fmt.Errorf("role %s", ri["role"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Fatalf("R0 not promoted %v after the kill: %v", failoverTimeout, last)
	return 0
}

// failoverMark writes the marker on the new master. Sentinel's CLIENT KILL TYPE normal may
// close the harness's connection at the promotion: it is dialed again.
func failoverMark(r *run, r0 *redistest.Server) {
	var err error
	for range 100 {
		if _, err = r0.Do("SET", "bench:failover", "done"); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Fatalf("SET on the new master: %v", err)
}

// failoverWaitMark polls a replica until it has the marker and returns the time since the kill.
func failoverWaitMark(r *run, s *redistest.Server, killed time.Time) time.Duration {
	var last error
	for time.Since(killed) < failoverTimeout {
		v, err := s.Do("GET", "bench:failover")
		if err == nil && v.String() == "done" {
			return time.Since(killed)
		}
		last = err
		if err == nil {
			last = errors.New("not there yet")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Fatalf("replica %s without the new master's write %v after the kill: %v", s.Addr(), failoverTimeout, last)
	return 0
}

// stormDeltaOne reads one counter that started at 0.
func stormDeltaOne(r *run, info map[string]string, field string) int64 {
	return stormDelta(r, map[string]string{field: "0"}, info, field)
}

// failoverGoal states the claim: through a failover the replicas behind the proxy
// have the new master's writes no later than directly attached ones, with no full sync and
// no fork of the new master.
func failoverGoal(e *env, kase string) {
	get := func(topo, metric string) string { return e.medianText("failover", kase, topo, metric) }
	full, okf := e.median("failover", kase, "proxy", "replica_full")
	forks, okk := e.median("failover", kase, "proxy", "new_master_forks")
	e.addGoal(goal{
		Name:   "failover: the master killed, Sentinel promotes a replica",
		Target: "the issue's: replicas behind the proxy continue with PSYNC2, no full sync, no fork of the new master",
		Measured: fmt.Sprintf("proxy: every replica had the new master's write %s ms after the kill (R0 promoted at %s ms), %s full syncs, %s new-master forks; chain: %s ms (%s), %s full syncs, %s forks; direct: %s ms (%s), %s full syncs, %s forks",
			get("proxy", "all_replicas_ms"), get("proxy", "promoted_ms"), get("proxy", "replica_full"), get("proxy", "new_master_forks"),
			get("chain", "all_replicas_ms"), get("chain", "promoted_ms"), get("chain", "replica_full"), get("chain", "new_master_forks"),
			get("direct", "all_replicas_ms"), get("direct", "promoted_ms"), get("direct", "replica_full"), get("direct", "new_master_forks")),
		Met: okf && okk && full == 0 && forks == 0,
	})
}
