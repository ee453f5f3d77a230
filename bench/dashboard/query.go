package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// promExpr is a target's expression as Grafana sends it with every instance selected.
func promExpr(expr string) string { return strings.ReplaceAll(expr, "$instance", ".+") }

// queryAll asks Prometheus for every target of d over the run, by expression.
func queryAll(r *run, prom string, d *dashboard, res *results) map[string][]series {
	out := map[string][]series{}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			s, err := queryRange(prom, promExpr(t.Expr), res.Start, res.End, time.Duration(res.Step*float64(time.Second)))
			if err != nil {
				r.Fatalf("panel %q: %s: %v", p.Title, t.Expr, err)
			}
			out[t.Expr] = s
		}
	}
	return out
}

// queryRange runs /api/v1/query_range and returns its matrix, times in seconds since start.
func queryRange(prom, expr string, start, end time.Time, step time.Duration) ([]series, error) {
	q := url.Values{"query": {expr}, "start": {ts(start)}, "end": {ts(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	resp, err := http.Get(prom + "/api/v1/query_range?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", body.Error)
	}
	var out []series
	for _, m := range body.Data.Result {
		s := series{Labels: m.Metric}
		for _, v := range m.Values {
			t, _ := v[0].(float64)
			str, _ := v[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				continue
			}
			s.Points = append(s.Points, [2]float64{t - float64(start.UnixMilli())/1000, f})
		}
		out = append(out, s)
	}
	return out, nil
}

func ts(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }
