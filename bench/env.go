package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// env is one bench invocation: the built proxy binary, the results so far, progress output.
type env struct {
	cfg      config
	machine  string // cores, memory, Redis and Go versions, CPU pinning, for the report
	pin      pinPlan
	proxyBin string
	tmp      string
	start    time.Time

	mu      sync.Mutex
	results []result
	goals   []goal
	status  string // current step, shown by the progress line
	stop    chan struct{}
	done    chan struct{}
}

// result is one measured value of one case in one topology and repetition.
type result struct {
	Scenario string
	Case     string // e.g. "replicas=2 d=100 SET"
	Topology string // "direct", "chain" or "proxy" (or a scenario's own baseline: "relay", "sendfile")
	Rep      int
	Metric   string // e.g. "master_ops_s", "p99_ms"
	Unit     string
	Value    float64
}

// goal is one of the targets, evaluated from medians in this run.
type goal struct {
	Name, Target, Measured string
	Met                    bool
}

func newEnv(cfg config) (*env, error) {
	tmp, err := os.MkdirTemp("", "psync-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, tmp: tmp, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	e.proxyBin = filepath.Join(tmp, "psync-proxy")
	build := exec.Command("go", "build", "-o", e.proxyBin, "./cmd/psync-proxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("build psync-proxy (run from the repository root): %v\n%s", err, out)
	}
	if e.pin, err = planPinning(cfg.pin); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	e.machine = describeMachine() + "; " + e.pin.desc
	go e.progress()
	return e, nil
}

func (e *env) close() {
	close(e.stop)
	<-e.done
	os.RemoveAll(e.tmp)
}

// progress prints one status line per second to stderr: a plain line, since CI has no TTY.
func (e *env) progress() {
	defer close(e.done)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.mu.Lock()
			status, n := e.status, len(e.results)
			e.mu.Unlock()
			fmt.Fprintf(os.Stderr, "bench: %4.0fs  %s  (%d values)\n", time.Since(e.start).Seconds(), status, n)
		}
	}
}

// step sets the progress line's text and logs it when verbose.
func (e *env) step(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	e.mu.Lock()
	e.status = s
	e.mu.Unlock()
	if e.cfg.verbose {
		fmt.Fprintln(os.Stderr, "bench:", s)
	}
}

// record stores one value.
func (e *env) record(r result) {
	e.mu.Lock()
	e.results = append(e.results, r)
	e.mu.Unlock()
	if e.cfg.verbose {
		fmt.Fprintf(os.Stderr, "bench:   %s | %s | %s #%d | %s = %.4g %s\n", r.Scenario, r.Case, r.Topology, r.Rep, r.Metric, r.Value, r.Unit)
	}
}

// addGoal stores the verdict on one of the targets.
func (e *env) addGoal(g goal) {
	e.mu.Lock()
	e.goals = append(e.goals, g)
	e.mu.Unlock()
}

// median of every recorded value for (scenario, case, topology, metric); ok is false if none.
func (e *env) median(scenario, kase, topology, metric string) (float64, bool) {
	e.mu.Lock()
	var vs []float64
	for _, r := range e.results {
		if r.Scenario == scenario && r.Case == kase && r.Topology == topology && r.Metric == metric {
			vs = append(vs, r.Value)
		}
	}
	e.mu.Unlock()
	if len(vs) == 0 {
		return 0, false
	}
	return median(vs), true
}

// medianText is median's value as a report shows it, "?" when no run recorded it.
func (e *env) medianText(scenario, kase, topology, metric string) string {
	v, ok := e.median(scenario, kase, topology, metric)
	if !ok {
		return "?"
	}
	return formatValue(v, "")
}

func (e *env) runScenario(s scenario) (err error) {
	e.step("%s: starting", s.name)
	defer func() { e.step("%s: done", s.name) }()
	if err := e.pinHarness(s); err != nil {
		return err
	}
	return s.run(e)
}

// topologies are the sides every scenario compares, in the order each repetition runs them:
// replicas attached to the master itself, to a Redis chained replica (the tier a Redis user
// would otherwise run, see chain.go), or to psync-proxy.
func topologies() []string { return []string{"direct", "chain", "proxy"} }

// each runs fn for every repetition and selected topology (-topologies), alternating direct,
// chain, proxy, direct, chain, proxy. A failing run is reported and the others still run.
func (e *env) each(scenario string, fn func(r *run, topology string, rep int)) error {
	return e.eachOf(scenario, topologies(), fn)
}

// eachOf is each over the topologies of have that -topologies selects, for a scenario that
// has no column for some of them.
func (e *env) eachOf(scenario string, have []string, fn func(r *run, topology string, rep int)) error {
	var errs []error
	for rep := 0; rep < e.cfg.reps; rep++ {
		for _, topo := range e.cfg.topologies {
			if !slices.Contains(have, topo) {
				continue
			}
			e.step("%s: %s, repetition %d of %d", scenario, topo, rep+1, e.cfg.reps)
			if err := e.try(scenario+"-"+topo, func(r *run) { fn(r, topo, rep) }); err != nil {
				errs = append(errs, fmt.Errorf("%s #%d: %w", topo, rep, err))
			}
		}
	}
	return errors.Join(errs...)
}

// selected reports whether -topologies includes topology.
func (e *env) selected(topology string) bool { return slices.Contains(e.cfg.topologies, topology) }

// parseTopologies reads the -topologies flag: a comma-separated subset of topologies(), run
// in their usual order whatever the order given.
func parseTopologies(s string) ([]string, error) {
	var want []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(topologies(), f) {
			return nil, fmt.Errorf("-topologies %q: unknown topology %q (have %s)", s, f, strings.Join(topologies(), ", "))
		}
		want = append(want, f)
	}
	var out []string
	for _, t := range topologies() {
		if slices.Contains(want, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// try runs fn with a fresh run (a redistest.TB whose Fatalf aborts fn), then its cleanups.
func (e *env) try(name string, fn func(r *run)) (err error) {
	r := &run{e: e, name: name}
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
	fn(r)
	return nil
}

// fatal is the panic value of run.Fatalf.
type fatal string

// run is one topology's measurement: it satisfies redistest.TB outside of go test, so the
// harness starts and stops servers with the same helpers as the tests.
type run struct {
	e        *env
	name     string
	cleanups []func()
	dirs     int
}

func (r *run) Helper() {}
func (r *run) Fatalf(format string, a ...any) {
	panic(fatal(fmt.Sprintf(format, a...)))
}
func (r *run) Logf(format string, a ...any) {
	if r.e.cfg.verbose {
		fmt.Fprintf(os.Stderr, "bench: [%s] %s\n", r.name, fmt.Sprintf(format, a...))
	}
}
func (r *run) Cleanup(fn func()) { r.cleanups = append(r.cleanups, fn) }
func (r *run) Name() string      { return r.name }
func (r *run) TempDir() string {
	r.dirs++
	dir, err := os.MkdirTemp(r.e.tmp, fmt.Sprintf("%s-%d-", r.name, r.dirs))
	if err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	return dir
}

func (r *run) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// topo is a master and its replicas, attached directly, through a chained replica or
// through a psync-proxy.
type topo struct {
	master   *redistest.Server
	chain    *redistest.Server // nil unless chain
	proxy    *proxyProc        // nil unless proxy
	replicas []*redistest.Server
}

// tierConfig is what a scenario gives the tier between the master and the replicas.
type tierConfig struct {
	backlog   string   // the proxy's --backlog-size and the chain's repl-backlog-size ("": the proxy's default)
	chainArgs []string // more options of the chained replica
}

// upstream is the address replicas replicate from.
func (t *topo) upstream() string {
	switch {
	case t.proxy != nil:
		return t.proxy.addr()
	case t.chain != nil:
		return t.chain.Addr()
	}
	return t.master.Addr()
}

// tierCPUSeconds is the CPU time so far of the proxy or the chained replica (0 direct).
func (t *topo) tierCPUSeconds() float64 {
	switch {
	case t.proxy != nil:
		return t.proxy.cpuSeconds()
	case t.chain != nil:
		return procCPUSeconds(t.chain.PID())
	}
	return 0
}

// startTopo starts a master (with masterArgs), the tier the topology has (the proxy or a
// chained replica, configured by tier), and n replicas of the upstream, and waits until all
// are online and streaming.
func startTopo(r *run, topology string, n int, masterArgs []string, tier tierConfig) *topo {
	t := &topo{master: redistest.Start(r, masterArgs...)}
	r.pinMaster(t.master)
	if tier.backlog == "" {
		tier.backlog = defaultTierBacklog
	}
	switch topology {
	case "proxy":
		t.proxy = startProxyProc(r, t.master.Addr(), "--backlog-size", tier.backlog)
		r.checkPinned("psync-proxy", t.proxy.cmd.Process.Pid, r.e.pin.others)
	case "chain":
		t.chain = startChain(r, t.master, tier.backlog, tier.chainArgs...)
	}
	for i := 0; i < n; i++ {
		t.addReplica(r)
	}
	for _, rep := range t.replicas {
		r.checkPinned("replica "+rep.Addr(), rep.PID(), r.e.pin.others)
	}
	for _, rep := range t.replicas {
		redistest.WaitOnline(r, rep, 2*time.Minute)
	}
	// Online is not streaming yet: after a diskless sync Redis 7 sends the stream only after
	// the replica's first ACK, up to a second later. Measure only once a write has arrived.
	if len(t.replicas) > 0 {
		t.master.MustDo(r, "SET", "bench:topology-ready", "1")
		redistest.Eventually(r, time.Minute, func() error {
			want := t.master.Info(r, "replication")["master_repl_offset"]
			for _, rep := range t.replicas {
				if got := rep.Info(r, "replication")["slave_repl_offset"]; got != want {
					return fmt.Errorf("replica %s at offset %s, master at %s", rep.Addr(), got, want)
				}
			}
			return nil
		})
	}
	return t
}

// addReplica starts one more replica of the upstream, without waiting for it.
func (t *topo) addReplica(r *run, args ...string) *redistest.Server {
	host, port, _ := net.SplitHostPort(t.upstream())
	s := redistest.Start(r, append([]string{"--replicaof", host, port}, args...)...)
	t.replicas = append(t.replicas, s)
	return s
}

// proxyProc is psync-proxy running as its own process, so its CPU time can be read.
type proxyProc struct {
	cmd  *exec.Cmd
	port int
	dir  string
	args []string
	log  *os.File
}

func startProxyProc(r *run, master string, args ...string) *proxyProc {
	p := &proxyProc{port: redistest.FreePort(r), dir: r.TempDir()}
	p.args = append([]string{"--master", master, "--listen", "127.0.0.1:" + strconv.Itoa(p.port),
		"--dir", filepath.Join(p.dir, "data"), "--log-level", "warn"}, args...)
	var err error
	if p.log, err = os.Create(filepath.Join(p.dir, "proxy.log")); err != nil {
		r.Fatalf("proxy log: %v", err)
	}
	p.start(r)
	r.Cleanup(func() {
		p.kill()
		p.log.Close()
	})
	return p
}

func (p *proxyProc) start(r *run) {
	p.cmd = exec.Command(p.proxyBin(r), p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		r.Fatalf("start psync-proxy: %v", err)
	}
	redistest.Eventually(r, 20*time.Second, func() error {
		info, err := p.info("replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return errors.New("psync-proxy: master link not up yet")
		}
		return nil
	})
}

func (p *proxyProc) proxyBin(r *run) string { return r.e.proxyBin }

func (p *proxyProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// kill ends the process with SIGKILL and waits for it.
func (p *proxyProc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

// info reads the proxy's INFO section.
func (p *proxyProc) info(section string) (map[string]string, error) {
	c, err := net.DialTimeout("tcp", p.addr(), 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n", len(section), section)
	var head [32]byte
	n := 0
	for n < len(head) {
		m, err := c.Read(head[n : n+1])
		if err != nil {
			return nil, err
		}
		n += m
		if head[n-1] == '\n' {
			break
		}
	}
	size, err := strconv.Atoi(strings.TrimSpace(string(head[1:n])))
	if err != nil || head[0] != '$' {
		return nil, fmt.Errorf("INFO reply %q", head[:n])
	}
	body := make([]byte, size+2)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	return redistest.ParseInfo(string(body)), nil
}

// cpuSeconds is the process's user+system CPU time so far, from /proc.
func (p *proxyProc) cpuSeconds() float64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return procCPUSeconds(p.cmd.Process.Pid)
}

// procCPUSeconds reads utime+stime of pid from /proc/<pid>/stat (Linux).
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// procRunSeconds is the time every live thread of pid has spent on a CPU, from
// /proc/<pid>/task/*/schedstat in nanoseconds: /proc/<pid>/stat counts in 10 ms ticks, too
// coarse for the master's CPU per operation over a short load. It falls back to
// procCPUSeconds where schedstat is missing. (Threads that have exited are not counted;
// redis-server's live as long as it does.)
func procRunSeconds(pid int) float64 {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns float64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread has just exited
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return procCPUSeconds(pid)
		}
		ns += v
	}
	if len(files) == 0 {
		return procCPUSeconds(pid)
	}
	return ns / 1e9
}

// childrenCPUSeconds is the user+system CPU time of this process's reaped children.
func childrenCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// benchLine is one test of redis-benchmark --csv output.
type benchLine struct {
	Test                            string
	RPS                             float64
	AvgMs, MinMs, P50Ms, P95Ms, P99 float64
	MaxMs                           float64
}

// runBenchmark runs redis-benchmark --csv against addr and parses its lines.
func runBenchmark(r *run, s *redistest.Server, args ...string) []benchLine {
	return parseBenchCSV(r, redistest.Benchmark(r, s, append([]string{"--csv"}, args...)...))
}

func parseBenchCSV(r *run, out string) []benchLine {
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		r.Fatalf("redis-benchmark --csv output: %v\n%s", err, out)
	}
	var lines []benchLine
	for _, row := range rows {
		if len(row) < 8 || row[0] == "test" {
			continue
		}
		v := make([]float64, 7)
		for i := range v {
			v[i], _ = strconv.ParseFloat(row[i+1], 64)
		}
		lines = append(lines, benchLine{Test: row[0], RPS: v[0], AvgMs: v[1], MinMs: v[2], P50Ms: v[3], P95Ms: v[4], P99: v[5], MaxMs: v[6]})
	}
	if len(lines) == 0 {
		r.Fatalf("no results in redis-benchmark output:\n%s", out)
	}
	return lines
}

// describeMachine names what the figures were measured on.
func describeMachine() string {
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	redis := "redis-server ?"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		redis = strings.TrimSpace(string(out))
		if i := strings.Index(redis, " sha="); i > 0 {
			redis = redis[:i]
		}
	}
	return fmt.Sprintf("%d cores (%s), %s RAM, %s, %s %s/%s", runtime.NumCPU(), model, mem, redis, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
