package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// chartSteadyCPU writes the master's CPU per operation against the replica count: one panel
// per value size, one line per topology, in the topologies' fixed colours. The claim it
// shows: behind the proxy or a chain the line stays flat, attached directly it climbs.
func chartSteadyCPU(path string, s steadyCPUSeries) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("plot: %v", v)
		}
	}()
	sizes := s.sizes()
	if len(sizes) == 0 {
		return errors.New("no master_cpu_us_per_op values")
	}
	cols := min(len(sizes), 2)
	grid := make([][]*plot.Plot, (len(sizes)+cols-1)/cols)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, d := range sizes {
		p, err := chartCPUPanel(d, s[d])
		if err != nil {
			return fmt.Errorf("d=%d: %w", d, err)
		}
		grid[i/cols][i%cols] = p
	}
	return chartSave(path, grid, chartMinW)
}

// chartCPUPanel is one value size: a line with points per topology, x the replica count.
func chartCPUPanel(size int, byTopo map[string]map[int]float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("steady: master CPU per operation, d=%d", size)
	p.X.Label.Text = "replicas (N)"
	p.Y.Label.Text = "µs per operation"
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	var ns []int
	hi := 0.0
	for ti, t := range chartTopologiesOf(byTopo) {
		pts := byTopo[t]
		keys := slices.Sorted(maps.Keys(pts))
		var xys plotter.XYs
		for _, n := range keys {
			if v := pts[n]; chartFinite(v) {
				xys = append(xys, plotter.XY{X: float64(n), Y: v})
				hi = max(hi, v)
			}
		}
		if len(xys) == 0 {
			continue
		}
		ns = append(ns, keys...)
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		c := chartColor(t, ti)
		line.Color, line.Width = c, vg.Points(1.5)
		points.Color, points.Shape, points.Radius = c, draw.CircleGlyph{}, vg.Points(2.5)
		p.Add(line, points)
		p.Legend.Add(t, line, points)
	}
	slices.Sort(ns)
	ns = slices.Compact(ns)
	var ticks []plot.Tick
	for _, n := range ns {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	if len(ns) > 0 {
		p.X.Min, p.X.Max = 0, float64(ns[len(ns)-1])+1
	}
	// From zero, so that a flat line looks flat and a growing one by how much.
	p.Y.Min, p.Y.Max = 0, max(hi*1.25, 1e-3)
	return p, nil
}

// chartTopologiesOf lists the topologies of a panel in the report's order, then any other.
func chartTopologiesOf(byTopo map[string]map[int]float64) []string {
	var out []string
	for _, t := range columnOrder() {
		if _, ok := byTopo[t]; ok {
			out = append(out, t)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(byTopo)) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
