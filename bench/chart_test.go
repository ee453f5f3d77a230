package main

import (
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteCharts draws fabricated results, odd values included, and checks that every
// scenario with results gets a PNG that decodes, and the others none.
func TestWriteCharts(t *testing.T) {
	e := &env{}
	add := func(scenario, kase, topology, metric, unit string, vs ...float64) {
		for i, v := range vs {
			e.results = append(e.results, result{scenario, kase, topology, i, metric, unit, v})
		}
	}
	for _, n := range []string{"sinks=1", "sinks=8"} {
		add("forward", n, "relay", "per_sink_MB_s", "MB/s", 2900, 3100, 3000)
		add("forward", n, "proxy", "per_sink_MB_s", "MB/s", 1900, 2000, 1800)
		add("forward", n, "proxy", "cpu_s_per_GB", "s/GB", 0.5, 0.4)
	}
	// Long case names, a NaN median, zeros, a negative value, a topology missing from a case.
	for _, c := range []string{"replicas=2 d=100 SET", "replicas=8 d=100 LPUSH", "replicas=8 d=1000 INCR"} {
		add("steady", c, "direct", "master_ops_s", "ops/s", 150000, 160000)
		add("steady", c, "proxy", "master_ops_s", "ops/s", 148000)
		add("steady", c, "direct", "p99_ms", "ms", math.NaN())
		add("steady", c, "proxy", "lag_bytes", "B", 0, 0)
	}
	add("steady", "replicas=2 d=100 SET", "proxy", "drift", "ms", -3)
	// The master's CPU per operation against N, for steady-cpu.png: a missing point, a NaN.
	for _, n := range []int{1, 2, 4, 8, 16} {
		for _, d := range []int{100, 1024} {
			kase := fmt.Sprintf("N=%d d=%d", n, d)
			add("steady", kase, "direct", "master_cpu_us_per_op", "µs", 1+0.1*float64(n))
			add("steady", kase, "proxy", "master_cpu_us_per_op", "µs", 1)
			if n != 4 {
				add("steady", kase, "chain", "master_cpu_us_per_op", "µs", 1.01)
			}
		}
	}
	add("steady", "N=32 d=100", "chain", "master_cpu_us_per_op", "µs", math.NaN())
	add("storm", "replicas=8", "proxy", "zero", "", 0)
	add("storm", "replicas=8", "direct", "inf", "x", math.Inf(1))

	dir := t.TempDir()
	if err := e.writeCharts(dir); err != nil {
		t.Fatal(err)
	}
	for _, s := range scenarios() {
		path := filepath.Join(dir, s.name+".png")
		f, err := os.Open(path)
		if len(e.rows(s.name)) == 0 {
			if err == nil {
				f.Close()
				t.Errorf("%s: chart written for a scenario without results", s.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
			t.Errorf("%s: image is only %v", s.name, b)
		}
	}
	f, err := os.Open(filepath.Join(dir, "steady-cpu.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("steady-cpu.png: %v", err)
	}
}
