// Command bench measures psync-proxy against a direct replication link with real
// redis-server processes and redis-benchmark, on loopback. Every scenario runs both
// topologies in the same run, alternating direct, proxy, direct, proxy, and reports medians
// and the proxy/direct ratio, because this machine's speed drifts between runs.
//
//	go run ./bench                       # every scenario, results under bench/results/<date>/
//	go run ./bench -scenarios steady,storm -reps 3
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
	os.Exit(benchMain())
}

func benchMain() int {
	var cfg config
	flag.StringVar(&cfg.scenarios, "scenarios", strings.Join(scenarioNames(), ","), "comma-separated `list` of scenarios: "+strings.Join(scenarioNames(), ", "))
	flag.IntVar(&cfg.reps, "reps", 2, "repetitions of each topology (alternating direct, proxy)")
	flag.StringVar(&cfg.out, "out", filepath.Join("bench", "results", time.Now().Format("2006-01-02")), "output `directory`")
	flag.BoolVar(&cfg.quick, "quick", false, "small sizes and short outages, for a smoke run")
	flag.StringVar(&cfg.outages, "outages", "5,30,120", "outage lengths in `seconds` for the outage scenario")
	flag.BoolVar(&cfg.verbose, "v", false, "log every step to stderr")
	flag.IntVar(&cfg.clients, "clients", 50, "steady: redis-benchmark connections (-c)")
	flag.StringVar(&cfg.pin, "pin", pinMasterClient, "CPU placement (see pin.go): "+pinMasterClient+" (the master and redis-benchmark on the first CPU, everything else on the others), "+pinMaster+" (the master alone on the first CPU) or "+pinOff)
	flag.Parse()

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
}

// scenario is one measurement. run records results through e.record for both topologies.
type scenario struct {
	name   string
	doc    string // one line for the report
	run    func(e *env) error
	master bool // runs a master redis-server, which -pin gives a CPU of its own
}

// scenarios lists every scenario in report order. Each lives in its own file.
func scenarios() []scenario {
	return []scenario{
		{"steady", "redis-benchmark SET/LPUSH/INCR on the master with 2 and 8 replicas", runSteady, true},
		{"latency", "end-to-end replication latency: PUBLISH on the master, received on a replica", runLatency, true},
		{"outage", "a replica down for T seconds under a steady write rate, then back", runOutage, true},
		{"storm", "8 replicas needing a full sync at once", runStorm, true},
		{"restart", "the tier between the master and 2 replicas killed with SIGKILL under a paced write load, then started again: in the direct column a chained Redis replica, in the proxy column psync-proxy with --backlog-mode disk; the master's repl-backlog-size (64mb) covers the downtime but not the dataset, written through the stream after the tier's first sync", runRestart, true},
		{"failover", "the master killed with SIGKILL under a paced write load, three Sentinels promote its replica R0: 4 replicas attached directly (each reconfigured by Sentinel) or behind psync-proxy in --sentinel mode; time from the kill until every replica has a write made on the new master, full syncs and the new master's forks", runFailover, true},
		{"forward", "forwarding ceiling: a synthetic upstream (paced to stay within 64 MiB of the slowest sink, as TCP flow control paces the relay) through the proxy to N sinks, versus an io.Copy relay", runForward, false},
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
