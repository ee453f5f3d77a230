package main

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// row is one line of a scenario's table: the medians of one (case, metric) per topology.
type row struct {
	Case, Metric, Unit string
	Med                map[string]float64 // by topology
	N                  map[string]int
}

// rows groups a scenario's results into table rows, in first-recorded order.
func (e *env) rows(scenario string) []row {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []row
	idx := map[[2]string]int{}
	vals := map[[3]string][]float64{}
	for _, r := range e.results {
		if r.Scenario != scenario {
			continue
		}
		k := [2]string{r.Case, r.Metric}
		if _, ok := idx[k]; !ok {
			idx[k] = len(out)
			out = append(out, row{Case: r.Case, Metric: r.Metric, Unit: r.Unit, Med: map[string]float64{}, N: map[string]int{}})
		}
		vk := [3]string{r.Case, r.Metric, r.Topology}
		vals[vk] = append(vals[vk], r.Value)
	}
	for vk, vs := range vals {
		i := idx[[2]string{vk[0], vk[1]}]
		out[i].Med[vk[2]] = median(vs)
		out[i].N[vk[2]] = len(vs)
	}
	return out
}

// writeReports writes results.md (also printed), results.csv (every value) and one chart
// per scenario under the output directory.
func (e *env) writeReports() error {
	if err := os.MkdirAll(e.cfg.out, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# psync-proxy benchmark results\n\nMachine: %s\n\n", e.machine)
	fmt.Fprintf(&b, "Each value is the median of %d repetitions per topology, run alternately (%s, %s, ...) in one invocation. The ratios are proxy / each baseline: direct, chain (and relay for the forwarding ceiling, sendfile for the full sync from the snapshot).\n\n",
		e.cfg.reps, strings.Join(e.cfg.topologies, ", "), strings.Join(e.cfg.topologies, ", "))
	if len(e.goals) > 0 {
		b.WriteString("## Goals\n\n| goal | target | measured | met |\n|---|---|---|---|\n")
		for _, g := range e.goals {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Target, g.Measured, map[bool]string{true: "yes", false: "**NO**"}[g.Met])
		}
		b.WriteString("\n")
	}
	for _, s := range scenarios() {
		rows := e.rows(s.name)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s.\n\n", s.name, s.doc)
		writeTable(&b, rows, e.tableColumns(s, rows))
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(e.cfg.out, "results.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	if err := e.writeCSV(filepath.Join(e.cfg.out, "results.csv")); err != nil {
		return err
	}
	return e.writeCharts(e.cfg.out)
}

// columnOrder is the order of a table's columns and a chart's bars: the topologies, then the
// scenarios' own baselines.
func columnOrder() []string { return append(topologies(), "relay", "sendfile") }

// baselines are what the proxy is compared with, in its ratio columns.
func baselines() []string { return []string{"direct", "chain", "relay", "sendfile"} }

// tableColumns are the topologies with figures in rows, in columnOrder, and the one the
// scenario has none for (s.na) where the run selected it, so that its absence shows.
func (e *env) tableColumns(s scenario, rows []row) []string {
	var cols []string
	for _, t := range columnOrder() {
		has := t == s.na && e.selected(t)
		for _, r := range rows {
			if _, ok := r.Med[t]; ok {
				has = true
				break
			}
		}
		if has {
			cols = append(cols, t)
		}
	}
	return cols
}

// writeTable writes one scenario's rows: a column per topology in cols ("n/a" where a
// column has no figures at all), then proxy / baseline for each baseline in cols with figures.
func writeTable(b *strings.Builder, rows []row, cols []string) {
	empty := map[string]bool{}
	for _, t := range cols {
		empty[t] = true
		for _, r := range rows {
			if _, ok := r.Med[t]; ok {
				empty[t] = false
			}
		}
	}
	var ratios []string
	if slices.Contains(cols, "proxy") {
		for _, base := range baselines() {
			if slices.Contains(cols, base) && !empty[base] {
				ratios = append(ratios, base)
			}
		}
	}
	head := append([]string{"case", "metric"}, cols...)
	for _, base := range ratios {
		head = append(head, "proxy/"+base)
	}
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, r := range rows {
		cells := []string{r.Case, r.Metric}
		for _, t := range cols {
			v, ok := r.Med[t]
			switch {
			case ok:
				cells = append(cells, formatValue(v, r.Unit))
			case empty[t]:
				cells = append(cells, "n/a")
			default:
				cells = append(cells, "")
			}
		}
		for _, base := range ratios {
			ratio := ""
			if v, ok := r.Med[base]; ok && v != 0 {
				if p, ok := r.Med["proxy"]; ok {
					ratio = fmt.Sprintf("%.2fx", p/v)
				}
			}
			cells = append(cells, ratio)
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
}

func formatValue(v float64, unit string) string {
	var s string
	switch {
	case v >= 1000 || v <= -1000:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

func (e *env) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"scenario", "case", "topology", "rep", "metric", "unit", "value"})
	e.mu.Lock()
	for _, r := range e.results {
		w.Write([]string{r.Scenario, r.Case, r.Topology, strconv.Itoa(r.Rep), r.Metric, r.Unit, strconv.FormatFloat(r.Value, 'g', -1, 64)})
	}
	e.mu.Unlock()
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
