//go:build linux

package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	tresp "github.com/tidwall/resp"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// This file holds the fault injection test's machinery: TCP links through an in-process
// Toxiproxy, the proxy binary as a child process, and a writer of keyed transactions.

// toxicHangTimeout bounds a Toxiproxy call that removes a toxic: removal waits for data in
// flight, and Toxiproxy can hang there (Shopify/toxiproxy#558). A hang is reported as such.
const toxicHangTimeout = 60 * time.Second

// faultNet is one in-process Toxiproxy server and its links.
type faultNet struct {
	srv     *toxiproxy.ApiServer
	logPath string
}

// newFaultNet starts a Toxiproxy server whose own log (warnings: links it saw fail, data it
// could not pass on) goes to a file that is shown if the test fails.
func newFaultNet(t *testing.T) *faultNet {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "toxiproxy.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("toxiproxy log (%s), last lines:\n%s", logPath, tailLines(string(b), 30))
		}
	})
	logger := zerolog.New(f).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	return &faultNet{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger), logPath: logPath}
}

// faultLink is a TCP proxy on a loopback port in front of one upstream address.
type faultLink struct {
	t    *testing.T
	name string
	addr string // where clients connect
	p    *toxiproxy.Proxy
}

func (n *faultNet) link(t *testing.T, name, upstream string) *faultLink {
	t.Helper()
	p := toxiproxy.NewProxy(n.srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	// Start has rewritten Listen to the bound address, which later restarts reuse.
	return &faultLink{t: t, name: name, addr: p.Listen, p: p}
}

// cut closes the listener and every connection through the link, keeps it down for d, and
// listens again on the same port.
func (l *faultLink) cut(d time.Duration) {
	l.p.Stop()
	time.Sleep(d)
	l.up()
}

// up listens again after a cut; another process may hold the port for a moment.
func (l *faultLink) up() {
	var err error
	for range 100 {
		if err = l.p.Start(); err == nil || errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("toxiproxy %s: listen again on %s: %v", l.name, l.addr, err)
}

// toxic adds a toxic acting on the bytes from the upstream to the client (the replication
// stream's direction), holds it for d, and removes it. Toxiproxy passes on what a toxic
// holds when it is removed, except the timeout toxic, which drops data and so closes the
// connections on removal.
func (l *faultLink) toxic(typ string, attrs map[string]any, d time.Duration) {
	l.t.Helper()
	l.addToxic(typ, attrs)
	time.Sleep(d)
	l.removeToxic(typ)
}

// addToxic adds a toxic on the master-to-proxy direction and leaves it there.
func (l *faultLink) addToxic(typ string, attrs map[string]any) {
	l.t.Helper()
	body, err := json.Marshal(map[string]any{"name": typ, "type": typ, "stream": "downstream", "toxicity": 1, "attributes": attrs})
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := l.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		l.t.Fatalf("toxiproxy %s: add %s: %v", l.name, body, err)
	}
}

// removeToxic removes a toxic added by addToxic, failing on a Toxiproxy hang.
func (l *faultLink) removeToxic(typ string) {
	l.t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.p.Toxics.RemoveToxic(context.Background(), typ) }()
	select {
	case err := <-done:
		if err != nil {
			l.t.Fatalf("toxiproxy %s: remove %s: %v", l.name, typ, err)
		}
	case <-time.After(toxicHangTimeout):
		l.t.Fatalf("toxiproxy %s: removing the %s toxic hung for %v (a Toxiproxy hang, Shopify/toxiproxy#558, not the proxy's)", l.name, typ, toxicHangTimeout)
	}
}

// heal removes any toxic left and makes sure the link listens.
func (l *faultLink) heal() {
	l.p.Toxics.ResetToxics(context.Background())
	l.up()
}

// proxyProc is the psync-proxy binary run as a child process, so it can be killed with
// SIGKILL and started again on the same --dir. Every run appends to one log file.
type proxyProc struct {
	t       *testing.T
	bin     string
	args    []string
	addr    string
	logPath string
	logFile *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been reaped
	killed bool          // the last run was ended by kill, not by itself
	runs   int
}

// startProxyProc runs the binary with --master master (unless "") on a free loopback port
// and a fresh --dir, plus extra options. t.Cleanup kills it.
func startProxyProc(t *testing.T, bin, master string, extra ...string) *proxyProc {
	t.Helper()
	pp := &proxyProc{t: t, bin: bin, addr: "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
		logPath: filepath.Join(t.TempDir(), "psync-proxy.log")}
	pp.args = append([]string{"--listen", pp.addr, "--dir", t.TempDir()}, extra...)
	if master != "" { // "": found through --sentinel in extra
		pp.args = append([]string{"--master", master}, pp.args...)
	}
	f, err := os.Create(pp.logPath)
	if err != nil {
		t.Fatal(err)
	}
	pp.logFile = f
	t.Cleanup(func() {
		pp.kill()
		f.Close()
		if t.Failed() {
			t.Logf("psync-proxy log (%s), last lines:\n%s", pp.logPath, tailLines(pp.log(), 60))
		}
	})
	pp.start()
	return pp
}

func (pp *proxyProc) start() {
	pp.t.Helper()
	cmd := exec.Command(pp.bin, pp.args...)
	cmd.Stdout, cmd.Stderr = pp.logFile, pp.logFile
	// The kernel kills the child if the test binary dies without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		pp.t.Fatalf("start psync-proxy: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	pp.mu.Lock()
	pp.cmd, pp.done, pp.killed = cmd, done, false
	pp.runs++
	pp.mu.Unlock()
}

// kill sends SIGKILL and waits until the process is reaped.
func (pp *proxyProc) kill() {
	pp.mu.Lock()
	cmd, done := pp.cmd, pp.done
	pp.killed = true
	pp.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		pp.t.Errorf("psync-proxy (pid %d) still running 10s after SIGKILL", cmd.Process.Pid)
	}
}

// crashed returns a description of how the process ended if it ended without kill.
func (pp *proxyProc) crashed() string {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	select {
	case <-pp.done:
		if !pp.killed {
			return pp.cmd.ProcessState.String()
		}
	default:
	}
	return ""
}

func (pp *proxyProc) log() string {
	b, _ := os.ReadFile(pp.logPath)
	return string(b)
}

// waitServing waits until the proxy answers INFO.
func (pp *proxyProc) waitServing(timeout time.Duration) {
	pp.t.Helper()
	redistest.Eventually(pp.t, timeout, func() error {
		if c := pp.crashed(); c != "" {
			pp.t.Fatalf("psync-proxy exited on its own (%s)", c)
		}
		_, err := rawInfo(pp.addr, "", "server")
		return err
	})
}

// keyedWriter sends MULTI/EXEC transactions of values from 1 byte to 32 KiB to the master,
// 50 a second, besides redis-benchmark's small commands: commands of many sizes, spanning
// reads, inside transactions.
type keyedWriter struct {
	stop chan struct{}
	done chan error
	once sync.Once
	err  error
	txs  int // transactions acknowledged; valid after halt
	// skipped counts transactions refused because the master had become a replica
	// (READONLY, then EXECABORT): the master-failover fault; valid after halt.
	skipped int
}

func startKeyedWriter(t *testing.T, m *redistest.Server, seed uint64) *keyedWriter {
	t.Helper()
	c := redistest.Dial(t, m.Addr())
	// The master may be paused past --repl-timeout; that only delays the replies.
	c.SetTimeout(time.Minute)
	w := &keyedWriter{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.run(c, seed) }()
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *keyedWriter) run(c *redistest.Client, seed uint64) error {
	defer c.Close()
	rng := rand.New(rand.NewPCG(seed, 2))
	var key [32]byte
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	pool := make([]byte, 64<<10)
	_, _ = rand.NewChaCha8(key).Read(pool)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return nil
		case <-tick.C:
		}
		size := 1 + rng.IntN(32<<10)
		off := rng.IntN(len(pool) - size)
		list := "fw:l:" + strconv.Itoa(n%8)
		cmds := [][]string{{"MULTI"}, {"SET", "fw:big:" + strconv.Itoa(n%128), string(pool[off : off+size])},
			{"INCR", "fw:n"}, {"RPUSH", list, strconv.Itoa(n)}, {"LTRIM", list, "-100", "-1"}, {"EXEC"}}
		for _, cmd := range cmds {
			if err := c.Send(cmd...); err != nil {
				return fmt.Errorf("keyed writer: %w", err)
			}
		}
		refused := false
		for _, cmd := range cmds {
			v, err := c.ReadValue()
			if err != nil {
				return fmt.Errorf("keyed writer: reply to %s: %w", cmd[0], err)
			}
			switch {
			case v.Type() != tresp.Error:
			case strings.HasPrefix(v.String(), "READONLY"), refused && strings.HasPrefix(v.String(), "EXECABORT"):
				refused = true
			default:
				return fmt.Errorf("keyed writer: %s replied %s", cmd[0], v.String())
			}
		}
		if refused {
			w.skipped++
			continue
		}
		w.txs++
	}
}

// halt stops the writer and returns its error, if it failed.
func (w *keyedWriter) halt() error {
	w.once.Do(func() {
		close(w.stop)
		w.err = <-w.done
	})
	return w.err
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}
