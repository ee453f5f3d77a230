package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The master's CPU per operation from the fewest to the most replicas: at most steadyFlat
// counts as flat (one link to the tier whatever N, so only noise moves it: about 5-10% in
// quick runs here), at least steadyGrows as growing (direct pays for each link).
const (
	steadyFlat  = 1.15
	steadyGrows = 1.5
)

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

// growth is a topology's CPU per operation at its largest N over its smallest, and the
// least-squares slope through every N in ns per operation per replica; ok is false with
// fewer than two N.
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
	return lo, hi, pts[hi] / pts[lo], 1000 * sxy / sxx, true
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
			met = met && p <= steadyFlat && dr >= steadyGrows
		}
		if len(ts) > 0 {
			parts = append(parts, fmt.Sprintf("d=%d: %s", d, strings.Join(ts, ", ")))
		}
	}
	measured := "no data (needs at least two replica counts)"
	if len(parts) > 0 {
		measured = span + ", CPU/op at the most replicas over the fewest: " + strings.Join(parts, "; ")
	}
	e.addGoal(goal{
		Name:     "steady: the master's CPU per operation as replicas are added",
		Target:   fmt.Sprintf("flat behind the proxy (most over fewest replicas <= %.2fx) while direct grows (>= %.1fx), at every value size; the chain's for comparison", steadyFlat, steadyGrows),
		Measured: measured,
		Met:      any && met,
	})
}
