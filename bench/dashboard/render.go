package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The image follows the dashboard's grid: 24 columns across, rows of rowH.
const (
	imgW    = 1200 * vg.Length(1)
	rowH    = 26 * vg.Length(1)
	headH   = 44 * vg.Length(1)
	footH   = 16 * vg.Length(1)
	legendH = 34 * vg.Length(1) // below each time series, as Grafana puts it
	gap     = 4 * vg.Length(1)
)

var palette = []color.Color{
	color.RGBA{0x73, 0xbf, 0x69, 0xff}, // Grafana's green, yellow, blue, orange, red, purple
	color.RGBA{0xfa, 0xde, 0x2a, 0xff},
	color.RGBA{0x57, 0x94, 0xf2, 0xff},
	color.RGBA{0xff, 0x98, 0x30, 0xff},
	color.RGBA{0xf2, 0x49, 0x5c, 0xff},
	color.RGBA{0xb8, 0x77, 0xd9, 0xff},
}

var (
	bg      = color.RGBA{0x11, 0x12, 0x17, 0xff} // Grafana's dark theme
	panelBG = color.RGBA{0x18, 0x1b, 0x1f, 0xff}
	fg      = color.RGBA{0xcc, 0xcc, 0xdc, 0xff}
	dim     = color.RGBA{0x6e, 0x72, 0x80, 0xff}
	gridC   = color.RGBA{0x2c, 0x30, 0x38, 0xff}
)

func namedColor(s string) color.Color {
	switch s {
	case "red":
		return color.RGBA{0xc4, 0x16, 0x2a, 0xff}
	case "green":
		return color.RGBA{0x37, 0x87, 0x2d, 0xff}
	case "blue":
		return color.RGBA{0x1f, 0x60, 0xc4, 0xff}
	}
	return color.RGBA{0x46, 0x4c, 0x54, 0xff}
}

func style(size vg.Length, c color.Color) text.Style {
	return text.Style{Color: c, Font: font.From(plot.DefaultFont, size), Handler: plot.DefaultTextHandler}
}

// render draws every panel of d on its grid position, from res, into a PNG at path.
func render(path string, d *dashboard, res *results) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("plot: %v", v)
		}
	}()
	rows := 0
	for _, p := range d.Panels {
		rows = max(rows, p.GridPos.Y+p.GridPos.H)
	}
	h := headH + rowH*vg.Length(rows) + footH
	img := vgimg.New(imgW, h)
	c := draw.New(img)
	c.SetColor(bg)
	c.Fill(c.Rectangle.Path())
	c.FillText(style(15, fg), vg.Point{X: 10, Y: h - 20}, d.Title+" dashboard")
	c.FillText(style(8.5, dim), vg.Point{X: 10, Y: h - 36}, res.Note)
	c.FillText(style(7.5, dim), vg.Point{X: 10, Y: 5}, eventsLine(res))
	col := imgW / 24
	for _, p := range d.Panels {
		r := vg.Rectangle{
			Min: vg.Point{X: col * vg.Length(p.GridPos.X), Y: h - headH - rowH*vg.Length(p.GridPos.Y+p.GridPos.H)},
			Max: vg.Point{X: col * vg.Length(p.GridPos.X+p.GridPos.W), Y: h - headH - rowH*vg.Length(p.GridPos.Y)},
		}
		r.Min.X, r.Min.Y, r.Max.X, r.Max.Y = r.Min.X+gap, r.Min.Y+gap, r.Max.X-gap, r.Max.Y-gap
		pc := draw.Canvas{Canvas: img, Rectangle: r}
		pc.SetColor(panelBG)
		pc.Fill(r.Path())
		switch p.Type {
		case "stat":
			drawStat(pc, p, res)
		default:
			if err := drawSeries(pc, p, res); err != nil {
				return fmt.Errorf("panel %q: %w", p.Title, err)
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

// eventsLine lists the scenario's events, numbered as the time axes mark them.
func eventsLine(res *results) string {
	var b strings.Builder
	b.WriteString("Events:")
	for i, e := range res.Events {
		fmt.Fprintf(&b, "  %d) %s %s", i+1, clock(e.At), e.What)
	}
	return b.String()
}

func clock(sec float64) string {
	s := int(math.Round(sec))
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// drawStat draws a stat panel: its title and the last value of its first series, on the
// colour of the threshold step it reaches.
func drawStat(c draw.Canvas, p panel, res *results) {
	v, ok := math.NaN(), false
	for _, t := range p.Targets {
		for _, s := range res.Targets[t.Expr] {
			if n := len(s.Points); n > 0 {
				v, ok = s.Points[n-1][1], true
			}
		}
	}
	if th := p.FieldConfig.Defaults.Thresholds; th != nil && ok {
		col := ""
		for _, st := range th.Steps {
			if st.Value == nil || v >= *st.Value {
				col = st.Color
			}
		}
		c.SetColor(namedColor(col))
		c.Fill(c.Rectangle.Path())
	}
	c.FillText(style(9, fg), vg.Point{X: c.Min.X + 6, Y: c.Max.Y - 13}, p.Title)
	txt := "no data"
	if ok {
		txt = formatUnit(v, p.FieldConfig.Defaults.Unit)
		for _, m := range p.FieldConfig.Defaults.Mappings {
			if o, found := m.Options[formatUnit(v, "none")]; m.Type == "value" && found {
				txt = o.Text
			}
		}
	}
	st := style(24, color.White)
	st.XAlign, st.YAlign = text.XCenter, text.YCenter
	c.FillText(st, vg.Point{X: (c.Min.X + c.Max.X) / 2, Y: (c.Min.Y+c.Max.Y)/2 - 6}, txt)
}

// drawSeries draws a time series panel: a plot of every target's series, the scenario's
// events as numbered vertical marks, the thresholds drawn as lines, and the legend below.
func drawSeries(c draw.Canvas, p panel, res *results) error {
	c.FillText(style(9, fg), vg.Point{X: c.Min.X + 6, Y: c.Max.Y - 13}, p.Title)
	pl := plot.New()
	pl.BackgroundColor = color.Transparent
	unit := p.FieldConfig.Defaults.Unit
	for _, a := range []*plot.Axis{&pl.X, &pl.Y} {
		a.Color, a.Tick.Color = dim, dim
		a.Tick.Label = style(7, dim)
		a.LineStyle.Color = dim
	}
	pl.X.Min, pl.X.Max = 0, res.End.Sub(res.Start).Seconds()
	pl.X.Tick.Marker = clockTicks{}
	pl.Y.Tick.Marker = unitTicks{unit}
	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = gridC, gridC
	pl.Add(grid)
	leg := plot.NewLegend()
	leg.TextStyle = style(7, fg)
	leg.Top, leg.Left = true, true
	leg.Padding = 0.5
	lo, hi := math.Inf(1), math.Inf(-1)
	n := 0
	bars := p.FieldConfig.Defaults.Custom.DrawStyle == "bars"
	// The first target is drawn last, on top, where the later ones' lines or bars would
	// hide it; the legend keeps the dashboard's order.
	targets := slices.Clone(p.Targets)
	slices.Reverse(targets)
	var entries []legendEntry
	for _, t := range targets {
		list := res.Targets[t.Expr]
		sort.Slice(list, func(i, j int) bool {
			return legendOf(t.LegendFormat, list[i].Labels) < legendOf(t.LegendFormat, list[j].Labels)
		})
		for _, s := range list {
			xy := make(plotter.XYs, 0, len(s.Points))
			for _, pt := range s.Points {
				if !math.IsNaN(pt[1]) && !math.IsInf(pt[1], 0) {
					xy = append(xy, plotter.XY{X: pt[0], Y: pt[1]})
					lo, hi = math.Min(lo, pt[1]), math.Max(hi, pt[1])
				}
			}
			if len(xy) == 0 {
				continue
			}
			line, err := plotter.NewLine(xy)
			if err != nil {
				return err
			}
			line.Width = 1.3
			if bars {
				line.StepStyle = plotter.PostStep
			}
			pl.Add(line)
			entries = append(entries, legendEntry{legendOf(t.LegendFormat, s.Labels), line})
			n++
		}
	}
	slices.Reverse(entries)
	for i, e := range entries { // colours in the legend's order, as Grafana's
		e.line.Color = palette[i%len(palette)]
		if bars {
			e.line.FillColor = withAlpha(e.line.Color, 0x70)
		}
		leg.Add(e.name, e.line)
	}
	if n == 0 {
		lo, hi = 0, 1
	}
	lo, hi = math.Min(lo, 0), math.Max(hi, lo+1e-9)
	if unit == "percentunit" {
		hi = math.Max(hi, 1)
	}
	pl.Y.Min, pl.Y.Max = lo, hi*1.08
	if m := p.FieldConfig.Defaults.Min; m != nil { // as Grafana's axis soft limits: the line is clipped
		pl.Y.Min = *m
	}
	if m := p.FieldConfig.Defaults.Max; m != nil {
		pl.Y.Max = *m
	}
	addThresholds(pl, p)
	addEvents(pl, res)
	area := draw.Crop(c, 0, 0, legendH, -16)
	pl.Draw(area)
	band := draw.Crop(c, 8, 0, 2, -(c.Max.Y - c.Min.Y - legendH))
	leg.Draw(band)
	return nil
}

type legendEntry struct {
	name string
	line *plotter.Line
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), a}
}

// addThresholds draws the panel's threshold steps as dashed lines, as Grafana's
// thresholdsStyle "line" does.
func addThresholds(pl *plot.Plot, p panel) {
	th := p.FieldConfig.Defaults.Thresholds
	if th == nil || p.FieldConfig.Defaults.Custom.ThresholdsStyle.Mode != "line" {
		return
	}
	for _, st := range th.Steps {
		if st.Value == nil {
			continue
		}
		l, _ := plotter.NewLine(plotter.XYs{{X: pl.X.Min, Y: *st.Value}, {X: pl.X.Max, Y: *st.Value}})
		l.Color = namedColor("red")
		l.Dashes = []vg.Length{4, 3}
		pl.Add(l)
		pl.Y.Max = math.Max(pl.Y.Max, *st.Value*1.15)
	}
}

// addEvents marks the scenario's events on the time axis, numbered as the footer lists them.
func addEvents(pl *plot.Plot, res *results) {
	var labels plotter.XYLabels
	for i, e := range res.Events {
		l, _ := plotter.NewLine(plotter.XYs{{X: e.At, Y: pl.Y.Min}, {X: e.At, Y: pl.Y.Max}})
		l.Color = dim
		l.Width = 0.5
		l.Dashes = []vg.Length{1, 2}
		pl.Add(l)
		labels.XYs = append(labels.XYs, plotter.XY{X: e.At, Y: pl.Y.Max})
		labels.Labels = append(labels.Labels, fmt.Sprint(i+1))
	}
	if lab, err := plotter.NewLabels(labels); err == nil {
		for i := range lab.TextStyle {
			lab.TextStyle[i] = style(6, dim)
			lab.TextStyle[i].YAlign = text.YTop
		}
		lab.Offset = vg.Point{X: 1.5}
		pl.Add(lab)
	}
}

var legendVar = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// legendOf is a series' name as Grafana's legendFormat gives it.
func legendOf(format string, labels map[string]string) string {
	if format == "" || format == "__auto" {
		var parts []string
		for k, v := range labels {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	return legendVar.ReplaceAllStringFunc(format, func(m string) string {
		return labels[legendVar.FindStringSubmatch(m)[1]]
	})
}

// clockTicks labels the time axis every minute, as m:ss since the run's start.
type clockTicks struct{}

func (clockTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for t := math.Ceil(lo/30) * 30; t <= hi; t += 30 {
		label := ""
		if int(t)%60 == 0 {
			label = clock(t)
		}
		ts = append(ts, plot.Tick{Value: t, Label: label})
	}
	return ts
}

// unitTicks are the default ticks, labelled in the panel's unit.
type unitTicks struct{ unit string }

func (u unitTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = formatUnit(ts[i].Value, u.unit)
		}
	}
	return ts
}

// formatUnit formats v as Grafana's unit does, roughly.
func formatUnit(v float64, unit string) string {
	switch unit {
	case "Bps":
		return bytes(v) + "/s"
	case "bytes":
		return bytes(v)
	case "percentunit":
		return fmt.Sprintf("%.0f%%", v*100)
	case "s":
		if math.Abs(v) >= 120 {
			return fmt.Sprintf("%.1f min", v/60)
		}
		return fmt.Sprintf("%.0f s", v)
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

func bytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
