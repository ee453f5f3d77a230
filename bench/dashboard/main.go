// Command dashboard renders deploy/grafana/psync-proxy-dashboard.json from a real run, for
// the README: Grafana cannot be installed here, so this is a rendering of the dashboard's
// queries, evaluated by a real Prometheus over a real run, not a Grafana screenshot.
//
//	go run ./bench/dashboard                          # run the scenario (about 7 minutes), render
//	go run ./bench/dashboard -from docs/dashboard/run.json   # render saved query results again
//
// The run: a redis-server master (1 MB backlog), psync-proxy (64 MB backlog, --metrics-listen),
// Debian's prometheus scraping it every 2 s, three replicas behind the proxy, and a writer
// whose rate changes over time; one replica is stopped and restarted (a partial resync from
// the proxy's backlog), the replicas are killed with CLIENT KILL TYPE replica (partial
// resyncs), and a fresh replica joins (a full sync from the proxy's snapshot). Then every
// target of every panel is asked of Prometheus with query_range, the answers saved as JSON
// (-save) and drawn on the dashboard's grid (-out).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	os.Exit(dashboardMain())
}

func dashboardMain() int {
	dash := flag.String("dashboard", "deploy/grafana/psync-proxy-dashboard.json", "the Grafana dashboard `file` to render")
	out := flag.String("out", "docs/dashboard/dashboard.png", "the PNG to write")
	save := flag.String("save", "docs/dashboard/run.json", "where to save the query results of the run (\"\": nowhere)")
	from := flag.String("from", "", "render saved query results from this `file` instead of running the scenario")
	minutes := flag.Float64("minutes", 7, "length of the scenario")
	flag.Parse()

	d, err := loadDashboard(*dash)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		return 1
	}
	var res *results
	if *from != "" {
		res, err = loadResults(*from)
	} else {
		res, err = record(d, time.Duration(*minutes*float64(time.Minute)))
		if err == nil && *save != "" {
			err = saveResults(*save, res)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		return 1
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		return 1
	}
	if err := render(*out, d, res); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "dashboard: wrote", *out)
	return 0
}

// dashboard is the part of a Grafana dashboard the rendering uses.
type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID          int                      `json:"id"`
	Type        string                   `json:"type"`
	Title       string                   `json:"title"`
	GridPos     struct{ H, W, X, Y int } `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit     string   `json:"unit"`
			Min      *float64 `json:"min"`
			Max      *float64 `json:"max"`
			Mappings []struct {
				Type    string `json:"type"`
				Options map[string]struct {
					Text string `json:"text"`
				} `json:"options"`
			} `json:"mappings"`
			Thresholds *struct {
				Steps []struct {
					Color string   `json:"color"`
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
			Custom struct {
				DrawStyle       string `json:"drawStyle"`
				ThresholdsStyle struct {
					Mode string `json:"mode"`
				} `json:"thresholdsStyle"`
			} `json:"custom"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

func loadDashboard(path string) (*dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// results are the answers of Prometheus to every target of the dashboard, over one run.
type results struct {
	Note    string              `json:"note"`
	Start   time.Time           `json:"start"`
	End     time.Time           `json:"end"`
	Step    float64             `json:"step_seconds"`
	Events  []event             `json:"events"`
	Targets map[string][]series `json:"targets"` // by expression
}

// event is a moment of the scenario, marked on the time axes.
type event struct {
	At   float64 `json:"at_seconds"`
	What string  `json:"what"`
}

// series is one answer of query_range: labels and points (seconds since Start, value).
type series struct {
	Labels map[string]string `json:"labels"`
	Points [][2]float64      `json:"points"`
}

func loadResults(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func saveResults(path string, r *results) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
