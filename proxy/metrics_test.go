package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
	"github.com/psync-proxy/psync-proxy/proxy/metrics"
)

// serveMetrics serves the proxy's metrics on a loopback port and returns its base URL. Its
// Serve ends with the proxy, and is checked with the proxy's other listeners.
func (tp *testProxy) serveMetrics() string {
	tp.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tp.t.Fatal(err)
	}
	run := tp.run
	run.n++
	go func() { run.done <- run.srv.ServeMetrics(ln) }()
	return "http://" + ln.Addr().String()
}

// scrape reads a Prometheus text exposition: every sample by its name with labels.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// metricNames are the names of the samples of a scrape, labels left out.
func metricNames(samples map[string]float64) map[string]bool {
	names := map[string]bool{}
	for k := range samples {
		if i := strings.IndexByte(k, '{'); i >= 0 {
			k = k[:i]
		}
		names[k] = true
	}
	return names
}

// steadyWriter writes to m at rate bytes per second of values (SETs of 16 KB), paced on the
// clock so that a slow moment is caught up at once, until stop is called.
func steadyWriter(t *testing.T, m *redistest.Server, rate int) (stop func()) {
	t.Helper()
	c := redistest.Dial(t, m.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		defer c.Close()
		val := strings.Repeat("v", 16<<10)
		start, sent := time.Now(), 0
		for i := 0; ctx.Err() == nil; i++ {
			due := int(time.Since(start).Seconds() * float64(rate))
			n := 0
			for ; sent < due; sent += len(val) {
				c.Send("SET", "steady:"+strconv.Itoa(i%1000), val)
				n++
			}
			for range n {
				if _, err := c.ReadValue(); err != nil {
					done <- err
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("steady writer: %v", err)
		}
	}
}

func within(got, want, frac float64) bool { return math.Abs(got-want) <= frac*math.Abs(want) }

func num(t *testing.T, fields map[string]string, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(fields[name], 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", name, fields[name], err)
	}
	return v
}

// The issue's figures under a steady 2 MB/s into a 64 MB backlog: INFO's write rate,
// coverage and 5-minute size agree with the master's own offsets within 3%, and /metrics
// reports the same numbers, under every name of the issue.
func TestBacklogFiguresUnderSteadyLoad(t *testing.T) {
	const rate = 2 << 20
	m := redistest.Start(t)
	stop := steadyWriter(t, m, rate)
	defer stop()
	time.Sleep(2 * time.Second) // the proxy's first sample then sees the load already on
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20})
	url := p.serveMetrics()
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r, syncTimeout)

	a, at := num(t, m.Info(t, "replication"), "master_repl_offset"), time.Now()
	time.Sleep(40 * time.Second) // the 64 MB backlog fills in 32 s
	b, bt := num(t, m.Info(t, "replication"), "master_repl_offset"), time.Now()
	masterRate := (b - a) / bt.Sub(at).Seconds()
	info := p.info("backlog")
	repl := p.info("replication")
	samples := scrape(t, url)
	t.Logf("master %.0f B/s over %.1f s; proxy INFO %v", masterRate, bt.Sub(at).Seconds(), info)

	if !within(masterRate, rate, 0.10) {
		t.Errorf("the writer made %.0f B/s, want about %d", masterRate, rate)
	}
	got := num(t, info, "backlog_write_rate_bytes_per_sec")
	if !within(got, masterRate, 0.03) {
		t.Errorf("backlog_write_rate_bytes_per_sec %.0f, the master's offsets say %.0f", got, masterRate)
	}
	held := num(t, repl, "repl_backlog_histlen")
	if held != 64<<20 {
		t.Errorf("repl_backlog_histlen %.0f: the backlog should be full", held)
	}
	if cov := num(t, info, "backlog_coverage_seconds"); !within(cov, held/masterRate, 0.03) {
		t.Errorf("backlog_coverage_seconds %.1f, want %.1f (held / the master's rate)", cov, held/masterRate)
	}
	if s5 := num(t, info, "backlog_size_for_5min_outage"); !within(s5, masterRate*300, 0.03) {
		t.Errorf("backlog_size_for_5min_outage %.0f, want %.0f", s5, masterRate*300)
	}
	if s10, s5 := num(t, info, "backlog_size_for_10min_outage"), num(t, info, "backlog_size_for_5min_outage"); !within(s10, 2*s5, 0.01) {
		t.Errorf("10-minute size %.0f is not twice the 5-minute one %.0f", s10, s5)
	}
	if w := num(t, info, "backlog_write_rate_window_seconds"); w < 35 || w > 60 {
		t.Errorf("backlog_write_rate_window_seconds %.0f", w)
	}
	// /metrics: the same figures (the meter may have taken a sample between the two reads).
	for name, want := range map[string]float64{
		"psync_proxy_backlog_write_rate_bytes_per_second":        got,
		"psync_proxy_backlog_coverage_seconds":                   num(t, info, "backlog_coverage_seconds"),
		`psync_proxy_backlog_size_for_outage_bytes{outage="5m"}`: num(t, info, "backlog_size_for_5min_outage"),
		"redis_repl_backlog_history_bytes":                       held,
		"redis_replication_backlog_bytes":                        64 << 20,
	} {
		if v, ok := samples[name]; !ok || !within(v, want, 0.02) {
			t.Errorf("/metrics %s = %v (present %v), INFO says %v", name, v, ok, want)
		}
	}
	if peak := samples["psync_proxy_backlog_write_rate_peak_bytes_per_second"]; peak < got*0.97 {
		t.Errorf("peak rate %.0f below the rate %.0f", peak, got)
	}
	names := metricNames(samples)
	for _, n := range metrics.Names() {
		if !names[n] {
			t.Errorf("/metrics has no %s", n)
		}
	}
	for _, n := range issueMetricNames {
		if !names[n] {
			t.Errorf("/metrics has no %s (named by the issue)", n)
		}
	}
	lag := fmt.Sprintf(`redis_connected_slave_lag_seconds{slave_ip="127.0.0.1",slave_port="%d",slave_state="online"}`, r.Port)
	if _, ok := samples[lag]; !ok {
		t.Errorf("/metrics has no %s", lag)
	}
}

// issueMetricNames are the names issue 14 lists.
var issueMetricNames = []string{
	"redis_master_repl_offset", "redis_repl_backlog_history_bytes", "redis_replication_backlog_bytes",
	"redis_repl_backlog_first_byte_offset", "redis_connected_slaves", "redis_master_link_up",
	"redis_master_last_io_seconds_ago", "redis_replica_resyncs_full", "redis_replica_partial_resync_accepted",
	"redis_replica_partial_resync_denied", "redis_connected_slave_offset_bytes", "redis_connected_slave_lag_seconds",
	"redis_net_repl_input_bytes_total", "redis_net_repl_output_bytes_total",
	"psync_proxy_backlog_coverage_seconds", "psync_proxy_backlog_write_rate_bytes_per_second",
	"psync_proxy_backlog_disk_bytes", "psync_proxy_backlog_segments", "psync_proxy_snapshot_age_seconds",
	"psync_proxy_snapshot_size_bytes", "psync_proxy_snapshot_state", "psync_proxy_full_syncs_served_total",
	"psync_proxy_snapshot_refreshes_total", "psync_proxy_master_changes_total", "psync_proxy_full_syncs_waiting",
	"psync_proxy_backlog_storage_error",
}

// The health checks: /healthz while the proxy runs, /readyz once it holds a snapshot.
func TestHealthChecks(t *testing.T) {
	m := redistest.Start(t)
	tp := startProxyAsync(t, m, proxy.Config{})
	url := tp.serveMetrics()
	get := func(path string) (int, string) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tp.waitLinkUp()
	redistest.Eventually(t, syncTimeout, func() error {
		if code, body := get("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	if code, body := get("/healthz"); code != http.StatusOK || !strings.Contains(body, "connected") {
		t.Fatalf("/healthz %d %q", code, body)
	}
	m.Stop(t)
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with the master down: %d %q (the proxy still serves)", code, body)
	}
	// A fresh proxy without a snapshot (its master does not answer) is not ready.
	tp2 := startProxyAddr(t, proxy.Config{MasterAddr: "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))})
	url = tp2.serveMetrics()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no snapshot") {
		t.Fatalf("/readyz before the first sync: %d %q", code, body)
	}
}

// The alert rules and the dashboard in deploy/ use only metric names a live proxy exports.
func TestDeployMetricNamesExist(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{BacklogSize: 8 << 20})
	url := p.serveMetrics()
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r, syncTimeout)
	names := metricNames(scrape(t, url))
	files, _ := filepath.Glob("../deploy/prometheus/*.yml")
	dash, _ := filepath.Glob("../deploy/grafana/*.json")
	files = append(files, dash...)
	if len(files) < 2 {
		t.Fatalf("no alert rules or dashboard under ../deploy: %v", files)
	}
	for _, f := range files {
		used, err := usedMetricNames(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(used) == 0 {
			t.Errorf("%s uses no metric", f)
		}
		for _, n := range used {
			if !names[n] {
				t.Errorf("%s uses %s, which the proxy does not export", f, n)
			}
		}
	}
}

var metricRef = regexp.MustCompile(`\b(?:redis|psync_proxy|process|go)_[a-z0-9_]+\b`)

// usedMetricNames are the metric names in a rules file's or dashboard's expressions, and in
// the series of the rules' unit tests.
func usedMetricNames(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var exprs []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "expr:") && !strings.HasPrefix(line, `"expr":`) && !strings.HasPrefix(line, "- series:") {
			continue
		}
		exprs = append(exprs, line)
		if line == "expr: |" { // a YAML block: the lines indented deeper
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			for i+1 < len(lines) && len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent {
				i++
				exprs = append(exprs, lines[i])
			}
		}
	}
	if len(exprs) == 0 {
		return nil, errors.New(path + ": no expressions found")
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range exprs {
		for _, n := range metricRef.FindAllString(e, -1) {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// The alert rules check and pass their unit tests under promtool (Debian's prometheus
// package), which evaluates them as Prometheus does: each fires on the guide's condition.
func TestDeployAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{{"check", "rules", "psync-proxy-alerts.yml"}, {"test", "rules", "psync-proxy-alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../deploy/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
