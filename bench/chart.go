package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writeCharts writes dir/<scenario>.png for every scenario with results: one panel per
// metric, since metrics differ in unit and scale, each a grouped bar chart of the medians
// with one group per case and one bar per topology. Steady also gets steady-cpu.png, the
// master's CPU per operation against the replica count.
func (e *env) writeCharts(dir string) error {
	var errs []error
	for _, s := range scenarios() {
		rows := e.rows(s.name)
		if len(rows) == 0 {
			continue
		}
		if err := chartScenario(filepath.Join(dir, s.name+".png"), s.name, rows); err != nil {
			errs = append(errs, fmt.Errorf("chart %s: %w", s.name, err))
		}
		if cpu := steadyCPUOf(rows); s.name == "steady" && len(cpu) > 0 {
			if err := chartSteadyCPU(filepath.Join(dir, "steady-cpu.png"), cpu); err != nil {
				errs = append(errs, fmt.Errorf("chart steady-cpu: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

const (
	chartPanelH = 3.6 * vg.Inch
	chartMinW   = 5 * vg.Inch
	chartMaxW   = 12 * vg.Inch
	chartBarW   = 0.28 * vg.Inch // per bar, when the panel is wide enough
)

// chartScenario draws one scenario's panels into a PNG at path.
func chartScenario(path, scenario string, rows []row) (err error) {
	// gonum/plot panics on some degenerate inputs; a chart is a by-product of the results,
	// which are already written, so report it rather than crash the run.
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("plot: %v", v)
		}
	}()
	metrics, byMetric := chartGroup(rows)
	tops := chartTopologies(rows)
	maxBars := 0
	for _, m := range metrics {
		maxBars = max(maxBars, len(byMetric[m])*len(tops))
	}
	w := min(max(1.5*vg.Inch+vg.Length(maxBars)*chartBarW, chartMinW), chartMaxW)
	cols := 2
	if len(metrics) == 1 || w > 7*vg.Inch {
		cols = 1
	}
	nrows := (len(metrics) + cols - 1) / cols
	grid := make([][]*plot.Plot, nrows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, m := range metrics {
		p, err := chartPanel(scenario, byMetric[m], tops, w)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		grid[i/cols][i%cols] = p
	}
	return chartSave(path, grid, w)
}

// chartSave draws a grid of panels, each w wide and chartPanelH high, into a PNG at path.
func chartSave(path string, grid [][]*plot.Plot, w vg.Length) error {
	nrows, cols := len(grid), len(grid[0])
	img := vgimg.New(w*vg.Length(cols), chartPanelH*vg.Length(nrows))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: nrows, Cols: cols, PadX: vg.Inch / 4, PadY: vg.Inch / 4,
		PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align(grid, tiles, dc)
	for j := range grid {
		for i, p := range grid[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// chartGroup splits rows by metric, keeping first-recorded order for metrics and cases.
func chartGroup(rows []row) ([]string, map[string][]row) {
	var metrics []string
	by := map[string][]row{}
	for _, r := range rows {
		if _, ok := by[r.Metric]; !ok {
			metrics = append(metrics, r.Metric)
		}
		by[r.Metric] = append(by[r.Metric], r)
	}
	return metrics, by
}

// chartTopologies lists the topologies present: the report's order first, then any other.
func chartTopologies(rows []row) []string {
	order := columnOrder()
	var tops, extra []string
	seen := map[string]bool{}
	for _, r := range rows {
		for t := range r.Med {
			if !seen[t] {
				seen[t] = true
				if !slices.Contains(order, t) {
					extra = append(extra, t)
				}
			}
		}
	}
	for _, t := range order {
		if seen[t] {
			tops = append(tops, t)
		}
	}
	slices.Sort(extra)
	return append(tops, extra...)
}

// chartColor keeps each topology's colour the same in every panel and chart.
func chartColor(topology string, i int) color.Color {
	switch topology {
	case "direct":
		return color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff} // blue
	case "chain":
		return color.RGBA{R: 0x81, G: 0x72, B: 0xb3, A: 0xff} // purple
	case "proxy":
		return color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff} // orange
	case "relay":
		return color.RGBA{R: 0x55, G: 0xa8, B: 0x68, A: 0xff} // green
	case "sendfile":
		return color.RGBA{R: 0x93, G: 0x78, B: 0x60, A: 0xff} // brown
	}
	others := []color.Color{
		color.RGBA{R: 0x8c, G: 0x8c, B: 0x8c, A: 0xff},
		color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff},
		color.RGBA{R: 0xcc, G: 0xb9, B: 0x74, A: 0xff},
	}
	return others[i%len(others)]
}

// chartPanel is one metric: a group of bars per case, one bar per topology that has a value
// in any of these cases. Missing, NaN and infinite values draw no bar and no label.
func chartPanel(scenario string, rows []row, all []string, width vg.Length) (*plot.Plot, error) {
	var tops []string
	for _, t := range all {
		for _, r := range rows {
			if v, ok := r.Med[t]; ok && chartFinite(v) {
				tops = append(tops, t)
				break
			}
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s", scenario, rows[0].Metric)
	if len(tops) == 0 {
		p.Title.Text += " (no finite values)"
	}
	p.Y.Label.Text = rows[0].Unit
	names := make([]string, len(rows))
	long := false
	for i, r := range rows {
		names[i] = r.Case
		long = long || len(r.Case) > 14
	}
	p.NominalX(names...)
	if long {
		p.X.Tick.Label.Rotation = math.Pi / 8
		p.X.Tick.Label.XAlign = text.XRight
		p.X.Tick.Label.YAlign = text.YCenter
	}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid()) // first, so that the bars are drawn over it

	// Bars share 70% of each case's slot, at most chartBarW each.
	slot := (width - 1.2*vg.Inch) / vg.Length(len(rows))
	barW := chartBarW
	if len(tops) > 0 {
		barW = min(chartBarW, slot*0.7/vg.Length(len(tops)))
	}
	lo, hi := 0.0, 0.0
	for ti, t := range tops {
		vals := make(plotter.Values, len(rows))
		var lab plotter.XYLabels
		for i, r := range rows {
			v, ok := r.Med[t]
			if !ok || !chartFinite(v) {
				continue // a zero-height bar, unlabelled
			}
			vals[i] = v
			lo, hi = min(lo, v), max(hi, v)
			lab.XYs = append(lab.XYs, plotter.XY{X: float64(i), Y: v})
			lab.Labels = append(lab.Labels, formatValue(v, ""))
		}
		bars, err := plotter.NewBarChart(vals, barW)
		if err != nil {
			return nil, err
		}
		bars.Color = chartColor(t, ti)
		bars.LineStyle.Width = 0
		bars.Offset = barW * (vg.Length(ti) - vg.Length(len(tops)-1)/2)
		p.Add(bars)
		p.Legend.Add(t, bars)
		if len(lab.XYs) > 0 {
			labels, err := plotter.NewLabels(lab)
			if err != nil {
				return nil, err
			}
			for i := range labels.TextStyle {
				labels.TextStyle[i].XAlign = text.XCenter
				labels.TextStyle[i].Font.Size = vg.Points(7)
			}
			labels.Offset = vg.Point{X: bars.Offset, Y: vg.Points(2)}
			p.Add(labels)
		}
	}
	// Room above the tallest bar for its label and the legend; an all-zero panel still
	// needs a non-empty range.
	if hi == lo {
		hi = lo + 1
	}
	p.X.Min, p.X.Max = -0.5, float64(len(rows))-0.5 // half a slot beside the outer groups
	p.Y.Min = lo * 1.25
	p.Y.Max = hi * 1.3
	if hi <= 0 {
		p.Y.Max = 0
	}
	return p, nil
}

func chartFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
