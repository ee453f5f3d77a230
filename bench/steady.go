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

// steadyCase is one point of the steady scenario: replicas behind the master (or the tier)
// and the value size redis-benchmark writes.
type steadyCase struct{ replicas, size int }

func (c steadyCase) String() string { return fmt.Sprintf("N=%d d=%d", c.replicas, c.size) }

// steadyPlan is what the steady flags select: the replica counts, the value sizes, the
// redis-benchmark tests and their requests.
type steadyPlan struct {
	replicas, sizes []int
	tests           []string
	n               int // requests per test at d <= 100
}

// requests is redis-benchmark's -n for a value size: n for small values, 3/10 of it above
// 100 bytes, so that a test lasts about as long at either size (~50 MB of d=100 values and
// ~150 MB of d=1024 by default, a second or two each here). Fewer would do for the CPU per
// operation, which is read in nanoseconds; the ops/s and latencies need the seconds.
func (p steadyPlan) requests(size int) int {
	if size > 100 {
		return p.n * 3 / 10
	}
	return p.n
}

// cases are the points, by N then size.
func (p steadyPlan) cases() []steadyCase {
	var out []steadyCase
	for _, n := range p.replicas {
		for _, d := range p.sizes {
			out = append(out, steadyCase{n, d})
		}
	}
	return out
}

// parseSteady reads the -steady-replicas, -steady-sizes and -steady-tests flags.
func (c *config) parseSteady() error {
	var err error
	if c.steady.replicas, err = steadyInts("-steady-replicas", c.steadyReplicas); err != nil {
		return err
	}
	if c.steady.sizes, err = steadyInts("-steady-sizes", c.steadySizes); err != nil {
		return err
	}
	for f := range strings.SplitSeq(c.steadyTests, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" || strings.ContainsAny(f, " \t") {
			return fmt.Errorf("-steady-tests %q: bad test name %q", c.steadyTests, f)
		}
		c.steady.tests = append(c.steady.tests, f)
	}
	if c.steady.n = c.steadyRequests; c.steady.n < 10 {
		return fmt.Errorf("-steady-requests %d: want at least 10", c.steadyRequests)
	}
	return nil
}

// steadyInts parses a comma-separated list of positive integers, sorted and without repeats.
func steadyInts(flag, s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s %q: %q is not a positive number", flag, s, f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// runSteady measures the master's throughput, latency and CPU per operation under
// redis-benchmark with N replicas attached directly, through a chained replica or through
// the proxy, then how far the replicas trail it.
func runSteady(e *env) error {
	var errs []error
	plan := e.cfg.steady
	for _, c := range plan.cases() {
		n := plan.requests(c.size)
		if e.cfg.quick {
			n /= 10
		}
		err := e.each("steady", func(r *run, topology string, rep int) {
			e.step("steady: %s n=%d, %s, repetition %d of %d", c, n, topology, rep+1, e.cfg.reps)
			steadyRun(e, r, c, n, plan.tests, topology, rep)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
		}
	}
	steadyGoal(e)
	return errors.Join(errs...)
}

// steadyRun is one topology's measurement of one case. It records nothing unless every
// replica ends with the master's digest, so a broken relay cannot report good figures.
func steadyRun(e *env, r *run, c steadyCase, n int, tests []string, topology string, rep int) {
	// No topology drops a lagging replica: the master and the chain keep any replication
	// output buffer (the whole run's stream is under 1 GB) and the proxy a backlog larger than
	// the stream. A replica dropped and fully synced again would stop costing its upstream
	// anything for a while and flatter that run's throughput.
	unlimited := []string{"--client-output-buffer-limit", "replica 0 0 0"}
	t := startTopo(r, topology, c.replicas, unlimited, tierConfig{backlog: "2gb", chainArgs: unlimited})
	// A replica reports its link up before the master streams to it: after a diskless sync,
	// Redis 7 starts the stream on the replica's first REPLCONF ACK once the fork is reaped,
	// up to a second later. One write seen by every replica proves all streams flow.
	t.master.MustDo(r, "SET", "steady:ready", "1")
	redistest.WaitInSync(r, time.Minute, t.master, t.replicas...)
	syncs0 := steadyFullSyncs(r, t)
	masterCPU0 := procRunSeconds(t.master.PID())
	cpu0 := t.tierCPUSeconds()
	out0 := steadyTierOutput(r, t)

	// Who was busy while redis-benchmark ran, in % of one CPU: a master below 100 % was not
	// the bottleneck (with -pin it has a CPU to itself), so the ops/s then measure the
	// clients, the replicas and the proxy on the other CPUs as much as the master.
	busy0 := steadyBusy(t)
	wall0 := time.Now()
	var lines []benchLine
	r.asClient(func() {
		lines = runBenchmark(r, t.master, "-c", strconv.Itoa(e.cfg.clients), "-P", "16", "-d", strconv.Itoa(c.size),
			"-t", strings.Join(tests, ","), "-n", strconv.Itoa(n), "-r", "100000")
	})
	wall := time.Since(wall0).Seconds()
	busy1 := steadyBusy(t)
	lagBytes, lag := steadyCatchUp(r, t, time.Now())
	// The master's CPU per operation shows what the fan-out costs it, whatever the other
	// processes on this small machine take from the same cores.
	masterCPU := procRunSeconds(t.master.PID()) - masterCPU0

	// CPU and bytes are both read once the replicas have everything, so they cover the same
	// work: relaying the whole load, including what was still queued when the benchmark ended.
	var cpuPerGB float64
	if topology != "direct" {
		cpu := t.tierCPUSeconds() - cpu0
		gb := float64(steadyTierOutput(r, t)-out0) / 1e9
		if gb <= 0 {
			r.Fatalf("the %s wrote no replication bytes during the load", topology)
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
	if topology != "direct" {
		rec(c.String(), "tier_busy_pct", "%", 100*(busy1.tier-busy0.tier)/wall)
	}
	rec(c.String(), "lag_bytes", "B", float64(lagBytes))
	rec(c.String(), "lag_ms", "ms", float64(lag.Microseconds())/1000)
	// A replica dropped for lagging (output buffer limit on the master or the chain, backlog
	// via the proxy) would full-sync again and flatter the throughput; this makes that visible.
	rec(c.String(), "full_syncs_during_load", "", float64(resyncs))
	if topology != "direct" {
		// The tier's CPU seconds per GB written to its replicas: the proxy relays; the chain
		// also applies every command to its own dataset, as any replica does.
		rec(c.String(), "tier_cpu_s_per_gb", "s/GB", cpuPerGB)
	}
}

// steadyCPU is CPU seconds used so far by each party of a steady run.
type steadyCPU struct{ master, client, replicas, tier float64 }

// steadyBusy reads the CPU time of the master, the replicas and the tier from /proc, and
// that of this process's reaped children: between two readings around runBenchmark, the
// only child reaped is redis-benchmark.
func steadyBusy(t *topo) steadyCPU {
	c := steadyCPU{master: procCPUSeconds(t.master.PID()), client: childrenCPUSeconds()}
	for _, rep := range t.replicas {
		c.replicas += procCPUSeconds(rep.PID())
	}
	c.tier = t.tierCPUSeconds()
	return c
}

// steadyCatchUp reads the master's offset as the benchmark returns, then polls the replicas
// about every millisecond until each has reached it. It returns the largest gap at the first
// reading and the time until the last replica was seen caught up (0 if none was behind).
// Replicas already caught up are not polled again, which keeps each round short.
func steadyCatchUp(r *run, t *topo, returned time.Time) (lagBytes int64, lag time.Duration) {
	target := infoInt(r, t.master, "replication", "master_repl_offset")
	behind := slices.Clone(t.replicas)
	for round := 0; ; round++ {
		var still []*redistest.Server
		for _, rep := range behind {
			off := infoInt(r, rep, "replication", "slave_repl_offset")
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

// infoInt reads an integer field of a server's INFO section.
func infoInt(r *run, s *redistest.Server, section, field string) int64 {
	v, err := strconv.ParseInt(s.Info(r, section)[field], 10, 64)
	if err != nil {
		r.Fatalf("%s INFO %s %s: %v", s.Addr(), section, field, err)
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

// steadyTierOutput is the replication bytes the proxy or the chain has written so far (0
// direct).
func steadyTierOutput(r *run, t *topo) int64 {
	switch {
	case t.proxy != nil:
		return steadyProxyStat(r, t.proxy, "total_net_repl_output_bytes")
	case t.chain != nil:
		return infoInt(r, t.chain, "stats", "total_net_repl_output_bytes")
	}
	return 0
}

// steadyFullSyncs is the number of full syncs served so far by the master and the tier.
func steadyFullSyncs(r *run, t *topo) int64 {
	v := infoInt(r, t.master, "stats", "sync_full")
	switch {
	case t.proxy != nil:
		v += steadyProxyStat(r, t.proxy, "sync_full")
	case t.chain != nil:
		v += infoInt(r, t.chain, "stats", "sync_full")
	}
	return v
}
