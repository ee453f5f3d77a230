package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// run satisfies redistest.TB outside of go test: Fatalf aborts the run, cleanups run at the end.
type run struct {
	tmp      string
	cleanups []func()
	dirs     int
}

type fatal string

func (r *run) Helper()                        {}
func (r *run) Fatalf(format string, a ...any) { panic(fatal(fmt.Sprintf(format, a...))) }
func (r *run) Logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "dashboard: %s\n", fmt.Sprintf(format, a...))
}
func (r *run) Cleanup(fn func()) { r.cleanups = append(r.cleanups, fn) }
func (r *run) Name() string      { return "dashboard" }
func (r *run) TempDir() string {
	r.dirs++
	dir := filepath.Join(r.tmp, strconv.Itoa(r.dirs))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Fatalf("%v", err)
	}
	return dir
}

func (r *run) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// record runs the scenario for length and returns Prometheus's answers to the dashboard's
// targets over it.
func record(d *dashboard, length time.Duration) (res *results, err error) {
	tmp, err := os.MkdirTemp("", "psync-dashboard-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	r := &run{tmp: tmp}
	defer r.cleanup()
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(fatal)
			if !ok {
				panic(v)
			}
			err = errors.New(string(f))
		}
	}()
	return r.scenario(d, length), nil
}

func (r *run) scenario(d *dashboard, length time.Duration) *results {
	bin := filepath.Join(r.tmp, "psync-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/psync-proxy").CombinedOutput(); err != nil {
		r.Fatalf("build psync-proxy (run from the repository root): %v\n%s", err, out)
	}
	m := redistest.Start(r, "--repl-backlog-size", "1mb")
	proxyPort, metricsPort := redistest.FreePort(r), redistest.FreePort(r)
	r.start("psync-proxy", bin, "--master", m.Addr(), "--listen", "127.0.0.1:"+strconv.Itoa(proxyPort),
		"--dir", r.TempDir(), "--backlog-size", "256mb", "--metrics-listen", "127.0.0.1:"+strconv.Itoa(metricsPort))
	prom := r.startPrometheus(metricsPort)
	proxyArgs := []string{"--replicaof", "127.0.0.1", strconv.Itoa(proxyPort)}
	r1, r2 := redistest.Start(r, proxyArgs...), redistest.Start(r, proxyArgs...)
	redistest.WaitOnline(r, r1, time.Minute)
	redistest.WaitOnline(r, r2, time.Minute)

	w := startWriter(r, m)
	res := &results{Note: "psync-proxy's Grafana dashboard, its queries evaluated by Prometheus " + promVersion() +
		" over a real run (redis-server " + redisVersion(m) + "); a rendering, not a Grafana screenshot", Step: 2}
	res.Start = time.Now()
	mark := func(what string) {
		at := time.Since(res.Start).Seconds()
		res.Events = append(res.Events, event{At: at, What: what})
		r.Logf("%3.0f s: %s", at, what)
	}
	scale := func(sec float64) time.Duration { return time.Duration(sec / 420 * float64(length)) }
	var r3 *redistest.Server
	steps := []struct {
		at float64
		do func()
	}{
		{0, func() { w.set(1 << 20); mark("writes at 1 MB/s") }},
		{60, func() { w.set(3 << 20); mark("3 MB/s") }},
		{90, func() { r2.ShutdownSave(r); mark("replica 2 stopped") }},
		{130, func() { r2.Restart(r); mark("replica 2 back: partial resync") }},
		{150, func() { w.set(512 << 10); mark("0.5 MB/s") }},
		{180, func() { m := killReplicas(r, proxyPort); mark(fmt.Sprintf("CLIENT KILL TYPE replica (%d)", m)) }},
		{210, func() { r3 = redistest.Start(r, proxyArgs...); mark("a new replica: full sync from the snapshot") }},
		{240, func() { w.set(4 << 20); mark("4 MB/s") }},
		{270, func() { w.set(1 << 20); mark("1 MB/s") }},
		{300, func() { w.set(0); mark("no writes") }},
		{390, func() { w.set(1 << 20); mark("1 MB/s") }},
	}
	for _, s := range steps {
		time.Sleep(time.Until(res.Start.Add(scale(s.at))))
		s.do()
	}
	time.Sleep(time.Until(res.Start.Add(length)))
	res.End = time.Now()
	w.stop()
	if r3 != nil {
		redistest.WaitInSync(r, time.Minute, m, r1, r2, r3)
	}
	time.Sleep(3 * time.Second) // a last scrape
	res.Targets = queryAll(r, prom, d, res)
	return res
}

// start runs a program in the background until the run ends (SIGTERM, then SIGKILL).
func (r *run) start(name, bin string, args ...string) {
	logf, err := os.Create(filepath.Join(r.tmp, name+".log"))
	if err != nil {
		r.Fatalf("%v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	r.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
}

// startPrometheus runs Debian's prometheus scraping the proxy's metrics every 2 s, with the
// alert rules of deploy/ loaded, and returns its URL once it is ready.
func (r *run) startPrometheus(metricsPort int) string {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		r.Fatalf("prometheus is not installed (apt-get install prometheus): %v", err)
	}
	rules, _ := filepath.Abs("deploy/prometheus/psync-proxy-alerts.yml")
	cfg := filepath.Join(r.tmp, "prometheus.yml")
	conf := fmt.Sprintf("global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: psync-proxy\n    static_configs:\n      - targets: [\"127.0.0.1:%d\"]\n", rules, metricsPort)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	port := redistest.FreePort(r)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	r.start("prometheus", bin, "--config.file="+cfg, "--storage.tsdb.path="+r.TempDir(),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--log.level=warn")
	redistest.Eventually(r, 30*time.Second, func() error {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	return url
}

func promVersion() string {
	out, err := exec.Command("prometheus", "--version").CombinedOutput()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return f[2]
	}
	return "?"
}

func redisVersion(m *redistest.Server) string {
	info, _ := m.InfoErr("server")
	return info["redis_version"]
}

// killReplicas sends CLIENT KILL TYPE replica to the proxy and returns how many it killed.
func killReplicas(r *run, port int) int64 {
	c := redistest.Dial(r, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer c.Close()
	v, err := c.Do("CLIENT", "KILL", "TYPE", "replica")
	if err != nil {
		r.Fatalf("CLIENT KILL: %v", err)
	}
	return int64(v.Integer())
}

// writer writes SETs of 16 KB values to the master at a rate it can change, paced on the
// clock.
type writer struct {
	rate atomic.Int64
	stop func()
}

func (w *writer) set(rate int64) { w.rate.Store(rate) }

func startWriter(r *run, m *redistest.Server) *writer {
	w := &writer{}
	c := redistest.Dial(r, m.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		val := strings.Repeat("v", 16<<10)
		last, owed := time.Now(), 0.0
		for i := 0; ctx.Err() == nil; i++ {
			now := time.Now()
			owed += now.Sub(last).Seconds() * float64(w.rate.Load())
			last = now
			n := 0
			for ; owed >= float64(len(val)); owed -= float64(len(val)) {
				c.Send("SET", "k:"+strconv.Itoa((i*7+n)%1000), val)
				n++
			}
			for range n {
				if _, err := c.ReadValue(); err != nil {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	w.stop = func() {
		cancel()
		<-done
		c.Close()
	}
	return w
}
