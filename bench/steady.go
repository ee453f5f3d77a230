package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// steadyCase is one point of the steady scenario: replicas behind the master (or the proxy)
// and the value size redis-benchmark writes.
type steadyCase struct{ replicas, size int }

func (c steadyCase) String() string { return fmt.Sprintf("N=%d d=%d", c.replicas, c.size) }

// steadyCases are the points of the goal: 2 and 8 replicas, small and 1 KiB values.
func steadyCases() []steadyCase {
	return []steadyCase{{2, 100}, {2, 1024}, {8, 100}, {8, 1024}}
}

// runSteady measures the master's throughput and latency under redis-benchmark with N
// replicas attached directly or through the proxy, then how far the replicas trail it.
func runSteady(e *env) error {
	var errs []error
	for _, c := range steadyCases() {
		// About the same bytes per test at both sizes (~100 MB of d=100, ~300 MB of d=1024),
		// which makes each test last a few seconds here.
		n := 1_000_000
		if c.size > 100 {
			n = 300_000
		}
		if e.cfg.quick {
			n /= 10
		}
		err := e.each("steady", func(r *run, topology string, rep int) {
			e.step("steady: %s n=%d, %s, repetition %d of %d", c, n, topology, rep+1, e.cfg.reps)
			steadyRun(e, r, c, n, topology, rep)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
		}
	}
	steadyGoals(e)
	return errors.Join(errs...)
}

// steadyRun is one topology's measurement of one case. It records nothing unless every
// replica ends with the master's digest, so a broken relay cannot report good figures.
func steadyRun(e *env, r *run, c steadyCase, n int, topology string, rep int) {
	// Neither topology drops a lagging replica: the master keeps any replication output
	// buffer (the whole run's stream is under 1 GB) and the proxy a backlog larger than the
	// stream. A replica dropped and fully synced again would stop costing its upstream anything
	// for a while and flatter that run's throughput.
	t := startTopo(r, topology, c.replicas, []string{"--client-output-buffer-limit", "replica 0 0 0"},
		[]string{"--backlog-size", "2gb"})
	// A replica reports its link up before the master streams to it: after a diskless sync,
	// Redis 7 starts the stream on the replica's first REPLCONF ACK once the fork is reaped,
	// up to a second later. One write seen by every replica proves all streams flow.
	t.master.MustDo(r, "SET", "steady:ready", "1")
	redistest.WaitInSync(r, time.Minute, t.master, t.replicas...)
	syncs0 := steadyFullSyncs(r, t)
	masterCPU0 := procCPUSeconds(t.master.PID())
	var cpu0 float64
	var out0 int64
	if t.proxy != nil {
		cpu0 = t.proxy.cpuSeconds()
		out0 = steadyProxyStat(r, t.proxy, "total_net_repl_output_bytes")
	}

	// Who was busy while redis-benchmark ran, in % of one CPU: a master below 100 % was not
	// the bottleneck (with -pin it has a CPU to itself), so the ops/s then measure the
	// clients, the replicas and the proxy on the other CPUs as much as the master.
	busy0 := steadyBusy(t)
	wall0 := time.Now()
	var lines []benchLine
	r.asClient(func() {
		lines = runBenchmark(r, t.master, "-c", strconv.Itoa(e.cfg.clients), "-P", "16", "-d", strconv.Itoa(c.size),
			"-t", "set,lpush,incr", "-n", strconv.Itoa(n), "-r", "100000")
	})
	wall := time.Since(wall0).Seconds()
	busy1 := steadyBusy(t)
	lagBytes, lag := steadyCatchUp(r, t, time.Now())
	// The master's CPU per operation shows what the fan-out costs it, whatever the other
	// processes on this small machine take from the same cores.
	masterCPU := procCPUSeconds(t.master.PID()) - masterCPU0

	// CPU and bytes are both read once the replicas have everything, so they cover the same
	// work: relaying the whole load, including what was still queued when the benchmark ended.
	var cpuPerGB float64
	if t.proxy != nil {
		cpu := t.proxy.cpuSeconds() - cpu0
		gb := float64(steadyProxyStat(r, t.proxy, "total_net_repl_output_bytes")-out0) / 1e9
		if gb <= 0 {
			r.Fatalf("proxy wrote no replication bytes during the load")
		}
		cpuPerGB = cpu / gb
	}
	resyncs := steadyFullSyncs(r, t) - syncs0
	stormQuiet(r, t.master)
	redistest.WaitInSync(r, 2*time.Minute, t.master, t.replicas...)

	rec := func(kase, metric, unit string, v float64) {
		e.record(result{Scenario: "steady", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
	}
	for _, l := range lines {
		kase := c.String() + " " + l.Test
		rec(kase, "master_ops_s", "ops/s", l.RPS)
		rec(kase, "p99_ms", "ms", l.P99)
		rec(kase, "max_ms", "ms", l.MaxMs)
	}
	rec(c.String(), "master_cpu_us_per_op", "µs", masterCPU*1e6/float64(len(lines)*n))
	rec(c.String(), "master_busy_pct", "%", 100*(busy1.master-busy0.master)/wall)
	rec(c.String(), "benchmark_busy_pct", "%", 100*(busy1.client-busy0.client)/wall)
	rec(c.String(), "replicas_busy_pct", "%", 100*(busy1.replicas-busy0.replicas)/wall)
	if t.proxy != nil {
		rec(c.String(), "proxy_busy_pct", "%", 100*(busy1.proxy-busy0.proxy)/wall)
	}
	rec(c.String(), "lag_bytes", "B", float64(lagBytes))
	rec(c.String(), "lag_ms", "ms", float64(lag.Microseconds())/1000)
	// A replica dropped for lagging (output buffer limit direct, backlog via the proxy) would
	// full-sync again and flatter the throughput; this makes that visible.
	rec(c.String(), "full_syncs_during_load", "", float64(resyncs))
	if t.proxy != nil {
		rec(c.String(), "proxy_cpu_s_per_gb", "s/GB", cpuPerGB)
	}
}

// steadyCPU is CPU seconds used so far by each party of a steady run.
type steadyCPU struct{ master, client, replicas, proxy float64 }

// steadyBusy reads the CPU time of the master, the replicas and the proxy from /proc, and
// that of this process's reaped children: between two readings around runBenchmark, the
// only child reaped is redis-benchmark.
func steadyBusy(t *topo) steadyCPU {
	c := steadyCPU{master: procCPUSeconds(t.master.PID()), client: childrenCPUSeconds()}
	for _, rep := range t.replicas {
		c.replicas += procCPUSeconds(rep.PID())
	}
	if t.proxy != nil {
		c.proxy = t.proxy.cpuSeconds()
	}
	return c
}

// steadyCatchUp reads the master's offset as the benchmark returns, then polls the replicas
// about every millisecond until each has reached it. It returns the largest gap at the first
// reading and the time until the last replica was seen caught up (0 if none was behind).
// Replicas already caught up are not polled again, which keeps each round short.
func steadyCatchUp(r *run, t *topo, returned time.Time) (lagBytes int64, lag time.Duration) {
	target := steadyOffset(r, t.master, "master_repl_offset")
	behind := slices.Clone(t.replicas)
	for round := 0; ; round++ {
		var still []*redistest.Server
		for _, rep := range behind {
			off := steadyOffset(r, rep, "slave_repl_offset")
			if round == 0 {
				lagBytes = max(lagBytes, target-off)
			}
			if off < target {
				still = append(still, rep)
			}
		}
		seen := time.Now()
		if len(still) == 0 {
			if round == 0 {
				return lagBytes, 0
			}
			return lagBytes, seen.Sub(returned)
		}
		if seen.Sub(returned) > 2*time.Minute {
			r.Fatalf("replica %s still behind master offset %d after %v", still[0].Addr(), target, seen.Sub(returned))
		}
		behind = still
		time.Sleep(time.Millisecond)
	}
}

// steadyOffset reads an offset field of INFO replication.
func steadyOffset(r *run, s *redistest.Server, field string) int64 {
	m, err := s.InfoErr("replication")
	if err != nil {
		r.Fatalf("%v", err)
	}
	v, err := strconv.ParseInt(m[field], 10, 64)
	if err != nil {
		r.Fatalf("%s %s = %q", s.Addr(), field, m[field])
	}
	return v
}

// steadyProxyStat reads an integer field of the proxy's INFO stats.
func steadyProxyStat(r *run, p *proxyProc, field string) int64 {
	m, err := p.info("stats")
	if err != nil {
		r.Fatalf("proxy INFO stats: %v", err)
	}
	v, err := strconv.ParseInt(m[field], 10, 64)
	if err != nil {
		r.Fatalf("proxy INFO stats %s = %q", field, m[field])
	}
	return v
}

// steadyFullSyncs is the number of full syncs served so far by the master and the proxy.
func steadyFullSyncs(r *run, t *topo) int64 {
	v, err := strconv.ParseInt(t.master.Info(r, "stats")["sync_full"], 10, 64)
	if err != nil {
		r.Fatalf("master sync_full: %v", err)
	}
	if t.proxy != nil {
		v += steadyProxyStat(r, t.proxy, "sync_full")
	}
	return v
}

// steadyGoals evaluates the throughput goal. For each N it takes the proxy/direct ratio
// of the median master ops/s of every test (SET, LPUSH, INCR) at both value sizes, and the
// median of those ratios: one number per N that no single favourable test can carry.
func steadyGoals(e *env) {
	ratios := map[int][]float64{}
	for _, row := range e.rows("steady") {
		if row.Metric != "master_ops_s" {
			continue
		}
		d, okd := row.Med["direct"]
		p, okp := row.Med["proxy"]
		if !okd || !okp || d == 0 {
			continue
		}
		for _, n := range []int{2, 8} {
			if strings.HasPrefix(row.Case, fmt.Sprintf("N=%d ", n)) {
				ratios[n] = append(ratios[n], p/d)
			}
		}
	}
	describe := func(n int) (float64, string, bool) {
		rs := ratios[n]
		if len(rs) == 0 {
			return 0, "no data", false
		}
		m := median(rs)
		return m, fmt.Sprintf("%.2fx (range %.2f–%.2fx over %d tests)", m, slices.Min(rs), slices.Max(rs), len(rs)), true
	}
	r2, s2, ok2 := describe(2)
	e.addGoal(goal{
		Name:     "steady: master ops/s with 2 replicas, proxy vs direct",
		Target:   ">= 1.2x (median over SET, LPUSH, INCR at d=100 and 1024 of the proxy/direct ratio of median ops/s)",
		Measured: s2,
		Met:      ok2 && r2 >= 1.2,
	})
	r8, s8, ok8 := describe(8)
	e.addGoal(goal{
		Name:     "steady: master ops/s with 8 replicas, proxy vs direct",
		Target:   ">= 1.2x and above the N=2 ratio (same median of ratios)",
		Measured: s8,
		Met:      ok8 && ok2 && r8 >= 1.2 && r8 > r2,
	})
}
