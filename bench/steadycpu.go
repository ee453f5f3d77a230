package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// steadyFlat is the most the master's CPU per operation may grow from the fewest to the most
// replicas and count as flat: behind a tier the master has one link whatever N, so only noise
// moves it (5-10% in quick runs here). Above it counts as growing, as direct, which pays for
// each link (1.5x to 2.3x from 1 to 16 replicas in quick runs here).
const steadyFlat = 1.15

// steadyCPUSeries is the median master CPU per operation (µs) by value size, topology and N,
// from the steady scenario's rows.
type steadyCPUSeries map[int]map[string]map[int]float64

func steadyCPUOf(rows []row) steadyCPUSeries {
	out := steadyCPUSeries{}
	for _, r := range rows {
		var n, d int
		if r.Metric != "master_cpu_us_per_op" {
			continue
		}
		if _, err := fmt.Sscanf(r.Case, "N=%d d=%d", &n, &d); err != nil {
			continue
		}
		for t, v := range r.Med {
			if out[d] == nil {
				out[d] = map[string]map[int]float64{}
			}
			if out[d][t] == nil {
				out[d][t] = map[int]float64{}
			}
			out[d][t][n] = v
		}
	}
	return out
}

// sizes are the value sizes measured, ascending.
func (s steadyCPUSeries) sizes() []int { return slices.Sorted(maps.Keys(s)) }

// growth is a topology's CPU per operation at its largest N over its smallest, both read on
// the least-squares line through every N (one noisy point moves it less than it would move
// the two end points), and that line's slope in ns per operation per replica; ok is false
// with fewer than two N.
func (s steadyCPUSeries) growth(size int, topology string) (lo, hi int, ratio, slopeNs float64, ok bool) {
	pts := s[size][topology]
	ns := slices.Sorted(maps.Keys(pts))
	if len(ns) < 2 || pts[ns[0]] <= 0 {
		return 0, 0, 0, 0, false
	}
	lo, hi = ns[0], ns[len(ns)-1]
	var mx, my float64
	for _, n := range ns {
		mx += float64(n)
		my += pts[n]
	}
	mx, my = mx/float64(len(ns)), my/float64(len(ns))
	var sxy, sxx float64
	for _, n := range ns {
		sxy += (float64(n) - mx) * (pts[n] - my)
		sxx += (float64(n) - mx) * (float64(n) - mx)
	}
	b := sxy / sxx
	a := my - b*mx
	fitLo, fitHi := a+b*float64(lo), a+b*float64(hi)
	if fitLo <= 0 {
		return 0, 0, 0, 0, false
	}
	return lo, hi, fitHi / fitLo, 1000 * b, true
}

// steadyGoal states the claim on the master's cost: behind the proxy (or a chain) it
// has one replica link whatever N, so its CPU per operation stays flat as replicas are
// added, while attached directly it pays for every link. CPU per operation does not depend
// on how this small machine's cores are shared, as ops/s does.
func steadyGoal(e *env) {
	s := steadyCPUOf(e.rows("steady"))
	var parts []string
	met, any := true, false
	span := ""
	for _, d := range s.sizes() {
		var ts []string
		for _, t := range topologies() {
			lo, hi, ratio, slope, ok := s.growth(d, t)
			if !ok {
				continue
			}
			span = fmt.Sprintf("N=%d to N=%d", lo, hi)
			ts = append(ts, fmt.Sprintf("%s %.2fx (%+.1f ns/op per replica)", t, ratio, slope))
		}
		_, _, p, _, okp := s.growth(d, "proxy")
		_, _, dr, _, okd := s.growth(d, "direct")
		if okp && okd {
			any = true
			met = met && p <= steadyFlat && dr > steadyFlat
		}
		if len(ts) > 0 {
			parts = append(parts, fmt.Sprintf("d=%d: %s", d, strings.Join(ts, ", ")))
		}
	}
	measured := "no data (needs at least two replica counts)"
	if len(parts) > 0 {
		measured = span + ", CPU/op at the most replicas over the fewest (on the least-squares line through every N): " + strings.Join(parts, "; ")
	}
	e.addGoal(goal{
		Name:     "steady: the master's CPU per operation as replicas are added",
		Target:   fmt.Sprintf("flat behind the proxy (most over fewest replicas <= %.2fx) while direct grows (> %.2fx), at every value size; the chain's for comparison", steadyFlat, steadyFlat),
		Measured: measured,
		Met:      any && met,
	})
}
