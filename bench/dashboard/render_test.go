package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The committed picture comes from the committed dashboard: the saved run answers every
// target of every panel, and renders again.
func TestSavedRunCoversDashboard(t *testing.T) {
	d, err := loadDashboard("../../deploy/grafana/psync-proxy-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := loadResults("../../docs/dashboard/run.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if len(res.Targets[tg.Expr]) == 0 {
				t.Errorf("panel %q: the saved run has no answer to %s", p.Title, tg.Expr)
			}
		}
	}
	out := filepath.Join(t.TempDir(), "d.png")
	if err := render(out, d, res); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Size() < 10000 {
		t.Fatalf("rendered %v %v", st, err)
	}
}

func TestLegendAndUnits(t *testing.T) {
	if got := legendOf("{{slave_ip}}:{{ slave_port }}", map[string]string{"slave_ip": "10.0.0.7", "slave_port": "6379"}); got != "10.0.0.7:6379" {
		t.Errorf("legend %q", got)
	}
	for _, c := range []struct {
		v          float64
		unit, want string
	}{{2 << 20, "Bps", "2 MiB/s"}, {1.5 * (1 << 30), "bytes", "1.5 GiB"}, {0.5, "percentunit", "50%"},
		{45, "s", "45 s"}, {300, "s", "5.0 min"}, {3, "none", "3"}} {
		if got := formatUnit(c.v, c.unit); got != c.want {
			t.Errorf("formatUnit(%v, %s) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	if promExpr(`x{instance=~"$instance"}`) != `x{instance=~".+"}` {
		t.Error("promExpr")
	}
}
