package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

const (
	stormReplicas  = 8
	stormValueSize = 1024
	stormBatch     = 256 // pipelined SETs per round trip while loading
)

// runStorm measures 8 replicas asking for a full sync at once: from the master directly, from
// a chained replica that has synced the dataset, or from a proxy that already holds a
// snapshot of it. Meanwhile a probe times a SET
// every millisecond until all are in sync, and redis-benchmark loads the master for a fixed
// window (its throughput, worst p99 and max are what the master's clients see).
func runStorm(e *env) error {
	keys := 300_000 // 1 KiB values: about 300 MB of RDB
	if e.cfg.quick {
		keys = 30_000
	}
	kase := fmt.Sprintf("%d replicas, %dk keys x 1 KiB", stormReplicas, keys/1000)
	err := e.each("storm", func(r *run, topology string, rep int) {
		stormRun(e, r, kase, keys, topology, rep)
	})
	stormGoal(e, kase)
	return err
}

// stormRun is one topology's storm. It records nothing unless every replica ends with the
// master's digest.
func stormRun(e *env, r *run, kase string, keys int, topology string, rep int) {
	// Setup syncs (the proxy's or the chain's own) should not wait. For the storm the direct
	// master gets its best case: diskless (Redis's default) and set to start as soon as all 8
	// replicas wait, so one fork serves them all and no idle delay dilutes its latency or
	// sync time.
	master := redistest.Start(r, "--repl-diskless-sync-delay", "0")
	r.pinMaster(master)
	e.step("storm: %s, repetition %d of %d: loading %d keys", topology, rep+1, e.cfg.reps, keys)
	stormLoad(r, master, keys)
	var replicas []*redistest.Server
	for range stormReplicas {
		replicas = append(replicas, redistest.Start(r))
	}
	// The replicas' RDB files and the proxy's snapshot are large; the harness keeps temp
	// dirs until the whole invocation ends.
	r.Cleanup(func() {
		for _, s := range replicas {
			os.Remove(filepath.Join(s.Dir, "dump.rdb"))
		}
	})
	tier := stormStartTier(r, topology, master)
	// The master, or the chain that serves the storm, waits for all 8 replicas and serves
	// them from one fork: the direct master's best case, and the same for the chain.
	for _, s := range []*redistest.Server{master, tier.chain} {
		if s != nil {
			s.MustDo(r, "CONFIG", "SET", "repl-diskless-sync-delay", "5",
				"repl-diskless-sync-max-replicas", strconv.Itoa(stormReplicas))
		}
	}

	stats0 := master.Info(r, "stats")
	tier0 := tier.stats(r)
	e.step("storm: %s, repetition %d of %d: storm", topology, rep+1, e.cfg.reps)
	probe := stormStartProbe(r, master)
	load := stormStartLoad(r, master)
	start := time.Now()
	for _, s := range replicas {
		s.ReplicaOf(r, tier.upstream)
	}
	stormWaitSynced(r, master, replicas, 5*time.Minute)
	syncTime := time.Since(start)
	rtts, err := probe.finish()
	if err != nil {
		r.Fatalf("latency probe: %v", err)
	}
	// The load's figures cover the same window in every topology (or the storm, if longer),
	// so a storm that ends sooner is not measured over less time.
	if d := stormLoadWindow(e) - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	bench := load()
	if bench.err != nil {
		r.Fatalf("redis-benchmark during the storm: %v", bench.err)
	}

	stats1 := master.Info(r, "stats")
	tier1 := tier.stats(r)
	stormQuiet(r, master)
	redistest.WaitInSync(r, 2*time.Minute, master, replicas...)

	rec := func(metric, unit string, v float64) {
		e.record(result{Scenario: "storm", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
	}
	forks := stormDelta(r, stats0, stats1, "total_forks")
	rec("master_forks", "", float64(forks))
	// How long fork() itself stopped the master: the part of the storm's cost the probe can
	// only see blurred by this machine's scheduling.
	forkMs := 0.0
	if forks > 0 {
		us, _ := strconv.ParseFloat(stats1["latest_fork_usec"], 64)
		forkMs = us / 1000
	}
	rec("master_fork_ms", "ms", forkMs)
	rec("master_sync_full", "", float64(stormDelta(r, stats0, stats1, "sync_full")))
	rec("sync_ms", "ms", float64(syncTime.Microseconds())/1000)
	rec("probe_p99_ms", "ms", stormPercentile(rtts, 0.99))
	rec("probe_max_ms", "ms", stormPercentile(rtts, 1))
	if bench.secs > 0 {
		rec("bench_ops_s", "ops/s", bench.reqs/bench.secs)
		rec("bench_p99_ms", "ms", bench.p99)
		rec("bench_max_ms", "ms", bench.max)
	}
	if topology != "direct" {
		rec("tier_sync_full", "", float64(tier1.syncFull-tier0.syncFull))
		rec("tier_cpu_s", "s", tier1.cpu-tier0.cpu)
	}
	if tier.chain != nil {
		rec("tier_forks", "", float64(tier1.forks-tier0.forks))
	}
}

// stormTier is what serves the storm's full syncs: the master itself (direct), a chained
// replica that has synced the dataset, or the proxy, which has its snapshot.
type stormTier struct {
	upstream string
	chain    *redistest.Server
	proxy    *proxyProc
}

func stormStartTier(r *run, topology string, master *redistest.Server) stormTier {
	switch topology {
	case "proxy":
		p := startProxyProc(r, master.Addr(), "--backlog-size", defaultTierBacklog)
		r.checkPinned("psync-proxy", p.cmd.Process.Pid, r.e.pin.others)
		r.Cleanup(func() { os.RemoveAll(filepath.Join(p.dir, "data")) })
		return stormTier{upstream: p.addr(), proxy: p}
	case "chain":
		c := startChain(r, master, defaultTierBacklog)
		r.Cleanup(func() { os.Remove(filepath.Join(c.Dir, "dump.rdb")) })
		return stormTier{upstream: c.Addr(), chain: c}
	}
	return stormTier{upstream: master.Addr()}
}

// stormTierStats are the tier's counters at one moment.
type stormTierStats struct {
	syncFull, forks int64
	cpu             float64
}

func (t stormTier) stats(r *run) stormTierStats {
	switch {
	case t.proxy != nil:
		return stormTierStats{syncFull: steadyProxyStat(r, t.proxy, "sync_full"), cpu: t.proxy.cpuSeconds()}
	case t.chain != nil:
		return stormTierStats{syncFull: infoInt(r, t.chain, "stats", "sync_full"), forks: infoInt(r, t.chain, "stats", "total_forks"),
			cpu: procCPUSeconds(t.chain.PID())}
	}
	return stormTierStats{}
}

// stormLoad writes keys SETs of 1 KiB values. The values are random, so the RDB does not
// compress: it costs what a real dataset of that size costs to fork, write and ship.
// (redistest.WriteBytes needs a replication backlog, which a master with no replica lacks.)
func stormLoad(r *run, s *redistest.Server, keys int) {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], 1)
	pool := make([]byte, 1<<20)
	rand.NewChaCha8(seed).Read(pool)
	c := redistest.Dial(r, s.Addr())
	defer c.Close()
	var buf []byte
	for i := 0; i < keys; i += stormBatch {
		n := min(stormBatch, keys-i)
		buf = buf[:0]
		for j := i; j < i+n; j++ {
			// A different window of the pool for each key, so no two values are equal.
			off := (j * 4099) % (len(pool) - stormValueSize)
			buf = stormAppendSet(buf, "storm:"+strconv.Itoa(j), pool[off:off+stormValueSize])
		}
		if err := c.SendRaw(buf); err != nil {
			r.Fatalf("load: %v", err)
		}
		for range n {
			v, err := c.ReadValue()
			if err != nil || v.String() != "OK" {
				r.Fatalf("load: SET replied %q, %v", v.String(), err)
			}
		}
	}
}

// stormAppendSet appends SET key value as a RESP array.
func stormAppendSet(b []byte, key string, value []byte) []byte {
	b = append(b, "*3\r\n$3\r\nSET\r\n$"...)
	b = strconv.AppendInt(b, int64(len(key)), 10)
	b = append(b, "\r\n"...)
	b = append(b, key...)
	b = append(b, "\r\n$"...)
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, "\r\n"...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// stormLoadWindow is the least time the redis-benchmark load runs from the storm's start.
func stormLoadWindow(e *env) time.Duration {
	if e.cfg.quick {
		return 3 * time.Second
	}
	return 20 * time.Second
}

// stormLoadResult is what redis-benchmark measured on the master during a storm: requests and
// seconds summed over its back-to-back runs, and the worst p99 and max among them.
type stormLoadResult struct {
	reqs, secs, p99, max float64
	err                  error
}

// stormStartLoad runs redis-benchmark SET (50 clients, no pipelining, 100-byte values) on the
// master in back-to-back runs of stormLoadRun requests until the returned function is called,
// which waits for the run in progress and returns the totals. Short runs let the load end
// with the storm, whatever its length.
func stormStartLoad(r *run, master *redistest.Server) func() stormLoadResult {
	const stormLoadRun = 20_000
	stop := make(chan struct{})
	done := make(chan stormLoadResult, 1)
	go func() {
		var res stormLoadResult
		defer func() { done <- res }()
		defer func() {
			// runBenchmark reports failure with run.Fatalf, a panic: keep it as an error here.
			if v := recover(); v != nil {
				f, ok := v.(fatal)
				if !ok {
					panic(v)
				}
				res.err = errors.New(string(f))
			}
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, l := range runBenchmark(r, master, "-t", "set", "-d", "100", "-r", "100000", "-n", strconv.Itoa(stormLoadRun)) {
				if l.RPS > 0 {
					res.reqs += stormLoadRun
					res.secs += stormLoadRun / l.RPS
				}
				res.p99, res.max = max(res.p99, l.P99), max(res.max, l.MaxMs)
			}
		}
	}()
	var once sync.Once
	var res stormLoadResult
	finish := func() stormLoadResult {
		once.Do(func() {
			close(stop)
			res = <-done
		})
		return res
	}
	r.Cleanup(func() { finish() })
	return finish
}

// stormProbe times a SET on its own connection to the master every millisecond. A SET rather
// than a PING also pays for copy-on-write faults in a forked master, and its stream must reach
// the replicas, so the final digest check covers writes made during the storm.
type stormProbe struct {
	stop, done chan struct{}
	once       sync.Once
	rtts       []time.Duration // owned by the goroutine until done is closed
	err        error
}

func stormStartProbe(r *run, s *redistest.Server) *stormProbe {
	c := redistest.Dial(r, s.Addr())
	p := &stormProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			if _, err := c.Do("SET", "storm:probe", strconv.Itoa(i)); err != nil {
				p.err = err
				return
			}
			p.rtts = append(p.rtts, time.Since(t0))
		}
	}()
	// Stops the goroutine if the run aborts first; runs before Dial's cleanup closes c.
	r.Cleanup(func() { p.finish() })
	return p
}

// finish stops the probe and returns its round trips.
func (p *stormProbe) finish() ([]time.Duration, error) {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	return p.rtts, p.err
}

// stormWaitSynced polls until every replica has its link up, no sync in progress, and an
// offset at or past the master's (read just before it). The probe keeps writing, so this
// needs each replica to be receiving the live stream, not merely to have loaded the RDB.
// A replica that passed is not polled again, to keep each round short.
func stormWaitSynced(r *run, master *redistest.Server, replicas []*redistest.Server, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	pending := slices.Clone(replicas)
	for {
		target := infoInt(r, master, "replication", "master_repl_offset")
		var still []*redistest.Server
		var last string
		for _, s := range pending {
			m, err := s.InfoErr("replication")
			if err == nil {
				off, _ := strconv.ParseInt(m["slave_repl_offset"], 10, 64)
				if m["master_link_status"] == "up" && m["master_sync_in_progress"] == "0" && off >= target {
					continue
				}
				last = fmt.Sprintf("%s: link %s, sync in progress %s, offset %d of %d", s.Addr(),
					m["master_link_status"], m["master_sync_in_progress"], off, target)
			} else {
				last = err.Error()
			}
			still = append(still, s)
		}
		if len(still) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.Fatalf("%d replicas not in sync after %v; %s", len(still), timeout, last)
		}
		pending = still
		time.Sleep(2 * time.Millisecond)
	}
}

// stormQuiet stops the master's replication PINGs (every 10 s by default) before a digest
// check. Each PING moves its offset, and WaitInSync retries whenever the offset moves while it
// reads the digests, which on a few hundred MB per server take seconds each round.
func stormQuiet(r *run, master *redistest.Server) {
	master.MustDo(r, "CONFIG", "SET", "repl-ping-replica-period", "3600")
}

// stormDelta is after[field] - before[field] of two INFO readings.
func stormDelta(r *run, before, after map[string]string, field string) int64 {
	a, err1 := strconv.ParseInt(before[field], 10, 64)
	b, err2 := strconv.ParseInt(after[field], 10, 64)
	if err1 != nil || err2 != nil {
		r.Fatalf("INFO field %s: %q then %q", field, before[field], after[field])
	}
	return b - a
}

// stormPercentile is the q-quantile (nearest rank) of ds in milliseconds; q = 1 is the max.
func stormPercentile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := max(int(math.Ceil(q*float64(len(s))))-1, 0)
	return float64(s[i].Microseconds()) / 1000
}

// stormGoal states the claim: the master does not fork for replicas behind the proxy.
func stormGoal(e *env, kase string) {
	p, okp := e.median("storm", kase, "proxy", "master_forks")
	d, okd := e.median("storm", kase, "direct", "master_forks")
	measured := "no data"
	if okp {
		measured = fmt.Sprintf("%g", p)
		if okd {
			measured += fmt.Sprintf(" (direct: %g, with the master set to wait for all %d replicas and serve them from one fork)", d, stormReplicas)
		}
		c, okc := e.median("storm", kase, "chain", "master_forks")
		cf, okcf := e.median("storm", kase, "chain", "tier_forks")
		if okc && okcf {
			measured += fmt.Sprintf("; chain: %g master forks, %g forks of the chained replica", c, cf)
		}
	}
	e.addGoal(goal{
		Name:     "storm: master forks with 8 replicas via the proxy",
		Target:   "0",
		Measured: measured,
		Met:      okp && p == 0,
	})
}
