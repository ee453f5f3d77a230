package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestWriteTable checks the columns and ratios of a table: three topologies with both
// ratios, a scenario without direct (n/a), and a baseline of its own.
func TestWriteTable(t *testing.T) {
	e := &env{cfg: config{topologies: topologies()}}
	add := func(scenario, kase, topology, metric string, v float64) {
		e.results = append(e.results, result{scenario, kase, topology, 0, metric, "", v})
	}
	add("latency", "light", "direct", "p50_us", 100)
	add("latency", "light", "chain", "p50_us", 130)
	add("latency", "light", "proxy", "p50_us", 120)
	add("latency", "light", "chain", "only_chain", 1)
	add("restart", "k", "chain", "catchup_ms", 5000)
	add("restart", "k", "proxy", "catchup_ms", 500)
	add("fullsync", "k", "sendfile", "MB_s", 2000)
	add("fullsync", "k", "proxy", "MB_s", 1900)
	add("fullsync", "k", "direct", "MB_s", 200)

	table := func(name string) string {
		s, _ := findScenario(name)
		rows := e.rows(name)
		var b strings.Builder
		writeTable(&b, rows, e.tableColumns(s, rows))
		return b.String()
	}
	for _, c := range []struct{ scenario, want string }{
		{"latency", "| case | metric | direct | chain | proxy | proxy/direct | proxy/chain |\n|---|---|---|---|---|---|---|\n" +
			"| light | p50_us | 100.0 | 130.0 | 120.0 | 1.20x | 0.92x |\n| light | only_chain |  | 1 |  |  |  |\n"},
		{"restart", "| case | metric | direct | chain | proxy | proxy/chain |\n|---|---|---|---|---|---|\n" +
			"| k | catchup_ms | n/a | 5000 | 500.0 | 0.10x |\n"},
		{"fullsync", "| case | metric | direct | proxy | sendfile | proxy/direct | proxy/sendfile |\n|---|---|---|---|---|---|---|\n" +
			"| k | MB_s | 200.0 | 1900 | 2000 | 9.50x | 0.95x |\n"},
	} {
		if got := table(c.scenario); got != c.want {
			t.Errorf("%s table:\n%s\nwant:\n%s", c.scenario, got, c.want)
		}
	}
	// A run without direct shows no direct column, not even n/a.
	e.cfg.topologies = []string{"chain", "proxy"}
	if got := table("restart"); strings.Contains(got, "direct") {
		t.Errorf("restart table with -topologies chain,proxy:\n%s", got)
	}
}

func TestParseTopologies(t *testing.T) {
	got, err := parseTopologies("proxy, direct")
	if err != nil || !slices.Equal(got, []string{"direct", "proxy"}) {
		t.Errorf("parseTopologies = %v, %v; want [direct proxy] in the usual order", got, err)
	}
	for _, bad := range []string{"", "relay", "direct,,proxy"} {
		if _, err := parseTopologies(bad); err == nil {
			t.Errorf("parseTopologies(%q) accepted", bad)
		}
	}
}

func TestParseSteady(t *testing.T) {
	c := config{steadyReplicas: "16,1, 4,4", steadySizes: "1024", steadyTests: "SET,incr", steadyRequests: 1000}
	if err := c.parseSteady(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.steady.replicas, []int{1, 4, 16}) || !slices.Equal(c.steady.tests, []string{"set", "incr"}) {
		t.Errorf("plan %+v", c.steady)
	}
	if got := len(c.steady.cases()); got != 3 {
		t.Errorf("%d cases, want 3", got)
	}
	if c.steady.requests(100) != 1000 || c.steady.requests(1024) != 300 {
		t.Errorf("requests %d at d=100, %d at d=1024", c.steady.requests(100), c.steady.requests(1024))
	}
	for _, bad := range []config{{steadyReplicas: "0", steadySizes: "1", steadyTests: "set", steadyRequests: 10},
		{steadyReplicas: "1", steadySizes: "x", steadyTests: "set", steadyRequests: 10},
		{steadyReplicas: "1", steadySizes: "1", steadyTests: "set,", steadyRequests: 10},
		{steadyReplicas: "1", steadySizes: "1", steadyTests: "set", steadyRequests: 0}} {
		if err := bad.parseSteady(); err == nil {
			t.Errorf("parseSteady accepted %+v", bad)
		}
	}
}

// TestSteadyGoal checks the growth and slope of CPU per operation and the goal's verdict.
func TestSteadyGoal(t *testing.T) {
	e := &env{}
	for _, n := range []int{1, 2, 4, 8, 16} {
		kase := "N=" + strconv.Itoa(n) + " d=100"
		e.results = append(e.results,
			result{"steady", kase, "direct", 0, "master_cpu_us_per_op", "µs", 1 + 0.05*float64(n)},
			result{"steady", kase, "chain", 0, "master_cpu_us_per_op", "µs", 1.02},
			result{"steady", kase, "proxy", 0, "master_cpu_us_per_op", "µs", 1})
	}
	s := steadyCPUOf(e.rows("steady"))
	lo, hi, ratio, slope, ok := s.growth(100, "direct")
	if !ok || lo != 1 || hi != 16 || math.Abs(ratio-1.8/1.05) > 1e-9 || math.Abs(slope-50) > 1e-6 {
		t.Errorf("direct growth = %d %d %v %v %v; want 1 16 %v 50", lo, hi, ratio, slope, ok, 1.8/1.05)
	}
	steadyGoal(e)
	if len(e.goals) != 1 || !e.goals[0].Met {
		t.Fatalf("goal %+v, want met", e.goals)
	}
	if m := e.goals[0].Measured; !strings.Contains(m, "N=1 to N=16") || !strings.Contains(m, "proxy 1.00x (+0.0 ns/op per replica)") {
		t.Errorf("measured %q", m)
	}
}
