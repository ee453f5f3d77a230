// Command bench measures psync-proxy against a direct replication link and against a Redis
// chained replica in its place, with real redis-server processes and redis-benchmark, on
// loopback. Every scenario runs the three topologies in the same run, alternating direct,
// chain, proxy, direct, chain, proxy, and reports medians and the proxy/direct and
// proxy/chain ratios, because this machine's speed drifts between runs.
//
//	go run ./bench                       # every scenario, results under bench/results/<date>/
//	go run ./bench -scenarios steady,storm -reps 3
//	go run ./bench -topologies chain,proxy
//	go run ./bench -scenarios steady -steady-replicas 1,16 -steady-tests set
//	go run ./bench -quick                # small sizes, for a smoke run
//	go run ./bench -pin off              # no CPU pinning (default: -pin master+client, see pin.go)
//
// By default the master redis-server and redis-benchmark share the first CPU and everything
// else (replicas, psync-proxy, this process) the others, as when the master has a host of its
// own: see pin.go for why the master alone on a CPU (-pin master) is not the fairer split on
// a small machine. results.md names the placement on its machine line.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if path := os.Getenv(fileServerEnv); path != "" {
		os.Exit(serveFileMain(path)) // the fullsync scenario's baseline sender
	}
	os.Exit(benchMain())
}

func benchMain() int {
	var cfg config
	flag.StringVar(&cfg.scenarios, "scenarios", strings.Join(scenarioNames(), ","), "comma-separated `list` of scenarios: "+strings.Join(scenarioNames(), ", "))
	flag.IntVar(&cfg.reps, "reps", 2, "repetitions of each topology (alternating direct, chain, proxy)")
	topos := flag.String("topologies", strings.Join(topologies(), ","), "comma-separated `list` of topologies to run: direct (replicas on the master), chain (behind a Redis chained replica), proxy (behind psync-proxy)")
	flag.StringVar(&cfg.out, "out", filepath.Join("bench", "results", time.Now().Format("2006-01-02")), "output `directory`")
	flag.BoolVar(&cfg.quick, "quick", false, "small sizes and short outages, for a smoke run")
	flag.StringVar(&cfg.outages, "outages", "5,30,120", "outage lengths in `seconds` for the outage scenario")
	flag.BoolVar(&cfg.verbose, "v", false, "log every step to stderr")
	flag.IntVar(&cfg.clients, "clients", 50, "steady: redis-benchmark connections (-c)")
	flag.StringVar(&cfg.steadyReplicas, "steady-replicas", "1,2,4,8,16", "steady: comma-separated replica `counts` N")
	flag.StringVar(&cfg.steadySizes, "steady-sizes", "100,1024", "steady: comma-separated value `sizes` in bytes (redis-benchmark -d)")
	flag.StringVar(&cfg.steadyTests, "steady-tests", "set,lpush,incr", "steady: the redis-benchmark `tests` (-t) measured")
	flag.IntVar(&cfg.steadyRequests, "steady-requests", 500_000, "steady: redis-benchmark requests (-n) per test at d<=100; 3/10 of it for larger values; -quick takes a tenth")
	flag.StringVar(&cfg.pin, "pin", pinMasterClient, "CPU placement (see pin.go): "+pinMasterClient+" (the master and redis-benchmark on the first CPU, everything else on the others), "+pinMaster+" (the master alone on the first CPU) or "+pinOff)
	flag.Parse()
	var err error
	if cfg.topologies, err = parseTopologies(*topos); err == nil {
		err = cfg.parseSteady()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}

	e, err := newEnv(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer e.close()
	fmt.Fprintf(os.Stderr, "bench: %s\n", e.machine)
	failed := false
	for _, name := range strings.Split(cfg.scenarios, ",") {
		s, ok := findScenario(strings.TrimSpace(name))
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (have %s)\n", name, strings.Join(scenarioNames(), ", "))
			return 2
		}
		if err := e.runScenario(s); err != nil {
			fmt.Fprintf(os.Stderr, "bench: scenario %s failed: %v\n", s.name, err)
			failed = true
		}
	}
	if err := e.writeReports(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// config is the command line.
type config struct {
	scenarios string
	reps      int
	out       string
	quick     bool
	outages   string
	verbose   bool
	pin       string // pinMasterClient, pinMaster or pinOff
	clients   int    // steady: redis-benchmark -c
	// topologies are the ones -topologies selects, in the order each repetition runs them.
	topologies []string
	// steady: the -steady-replicas, -steady-sizes, -steady-tests and -steady-requests flags,
	// and what they select.
	steadyReplicas, steadySizes, steadyTests string
	steadyRequests                           int
	steady                                   steadyPlan
}

// scenario is one measurement. run records results through e.record for every topology.
type scenario struct {
	name   string
	doc    string // one line for the report
	run    func(e *env) error
	master bool // runs a master redis-server, which -pin gives a CPU of its own
	// na is a topology the scenario has no figures for, shown as n/a in its table (the doc
	// says why).
	na string
}

// scenarios lists every scenario in report order. Each lives in its own file.
func scenarios() []scenario {
	return []scenario{
		{name: "steady", run: runSteady, master: true,
			doc: "redis-benchmark (-P 16) on the master with N replicas, for each N of -steady-replicas, value size of -steady-sizes and test of -steady-tests; the master's CPU per operation against N is in steady-cpu.png"},
		{name: "latency", run: runLatency, master: true,
			doc: "end-to-end replication latency: PUBLISH on the master, received on a replica"},
		{name: "outage", run: runOutage, master: true,
			doc: "a replica down for T seconds under a steady write rate, then back; the master's repl-backlog-size is 1mb, the proxy's and the chain's backlogs hold the whole run's stream"},
		{name: "storm", run: runStorm, master: true,
			doc: "8 replicas needing a full sync at once, from the master, from a chained replica that has synced the dataset, or from the proxy's snapshot; the one serving them waits for all 8 (repl-diskless-sync-delay 5, max-replicas 8) and serves them from one fork"},
		{name: "restart", run: runRestart, master: true, na: "direct",
			doc: "the tier between the master and 2 replicas killed with SIGKILL under a paced write load, then started again: a chained Redis replica, or psync-proxy with --backlog-mode disk; the master's repl-backlog-size (64mb) covers the downtime but not the dataset, written through the stream after the tier's first sync. No direct column: with the replicas on the master there is no tier to restart"},
		{name: "failover", run: runFailover, master: true,
			doc: "the master killed with SIGKILL under a paced write load, three Sentinels promote its replica R0: 4 replicas attached directly (each reconfigured by Sentinel), behind a chained replica (Sentinel reconfigures the chain, its replicas follow it) or behind psync-proxy in --sentinel mode; time from the kill until every replica has a write made on the new master, full syncs and the new master's forks"},
		{name: "fullsync", run: runFullSync, master: false,
			doc: "one full sync of the same dataset read by a raw PSYNC client as fast as it can: served by the proxy from its cached snapshot, by a plain sendfile copy of that snapshot file (the ceiling), and by the master itself with a disk-based sync (fork, RDB to disk, then sent); unpinned, like forward: sender and reader share the machine's CPUs"},
		{name: "forward", run: runForward, master: false,
			doc: "forwarding ceiling: a synthetic upstream (paced to stay within 64 MiB of the slowest sink, as TCP flow control paces the relay) through the proxy to N sinks, versus an io.Copy relay"},
	}
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

func findScenario(name string) (scenario, bool) {
	for _, s := range scenarios() {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}
