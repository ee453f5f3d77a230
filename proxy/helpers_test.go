package proxy_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// testProxy is an in-process psync-proxy on a loopback port.
type testProxy struct {
	t    *testing.T
	cfg  proxy.Config
	port int
	run  *serving // the running proxy; nil when stopped

	// tlsPort is the TLS listener's port, started beside the plain one when cfg has
	// TLSCertFile (tls_test.go); 0 otherwise.
	tlsPort int
}

// startProxy runs a proxy replicating master with cfg's other fields (Dir defaults to a
// temporary directory). It is stopped by t.Cleanup.
func startProxy(t *testing.T, master *redistest.Server, cfg proxy.Config) *testProxy {
	t.Helper()
	tp := startProxyAsync(t, master, cfg)
	tp.waitLinkUp()
	return tp
}

// startProxyAsync is startProxy without waiting for the master link.
func startProxyAsync(t *testing.T, master *redistest.Server, cfg proxy.Config) *testProxy {
	t.Helper()
	cfg.MasterAddr = master.Addr()
	return startProxyAddr(t, cfg)
}

// startProxyVia starts a proxy whose master is reached at addr, and waits for the link.
func startProxyVia(t *testing.T, addr string, cfg proxy.Config) *testProxy {
	t.Helper()
	cfg.MasterAddr = addr
	tp := startProxyAddr(t, cfg)
	tp.waitLinkUp()
	return tp
}

func startProxyAddr(t *testing.T, cfg proxy.Config) *testProxy {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.BacklogMode == "" {
		// PSYNC_PROXY_TEST_BACKLOG_MODE=disk runs the whole suite against the disk backlog.
		cfg.BacklogMode = os.Getenv("PSYNC_PROXY_TEST_BACKLOG_MODE")
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named("proxy")
	}
	tp := &testProxy{t: t, cfg: cfg}
	tp.start(0)
	t.Cleanup(tp.stop)
	return tp
}

// waitLinkUp waits until the proxy streams from its master.
func (tp *testProxy) waitLinkUp() {
	tp.t.Helper()
	redistest.Eventually(tp.t, syncTimeout, func() error {
		if s := tp.info("replication")["master_link_status"]; s != "up" {
			return errString("proxy master_link_status:" + s)
		}
		return nil
	})
}

func (tp *testProxy) start(port int) {
	tp.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		tp.t.Fatalf("listen: %v", err)
	}
	tp.port = ln.Addr().(*net.TCPAddr).Port
	var tlsRaw net.Listener
	if tp.cfg.TLSCertFile != "" {
		tlsRaw = tp.listenTLSRaw()
	}
	p, err := proxy.New(tp.cfg)
	if err != nil {
		tp.t.Fatalf("proxy.New: %v", err)
	}
	lns := []net.Listener{ln}
	if tlsRaw != nil {
		// As Redis: the TLS port is announced upstream with tls-replication.
		tln, err := p.TLSListener(tlsRaw)
		if err != nil {
			tp.t.Fatalf("TLSListener: %v", err)
		}
		if tp.cfg.TLSReplication {
			lns = []net.Listener{tln, ln}
		} else {
			lns = append(lns, tln)
		}
	}
	tp.run = serveAll(tp.t, p, lns...)
}

// serving is a proxy served on its listeners.
type serving struct {
	t    *testing.T
	srv  *proxy.Server
	done chan error // one result of Serve per listener
	n    int
}

// serveAll serves p on every listener, the first first (its port is announced upstream).
func serveAll(t *testing.T, p *proxy.Server, lns ...net.Listener) *serving {
	s := &serving{t: t, srv: p, done: make(chan error, len(lns)), n: len(lns)}
	for _, ln := range lns {
		go func() { s.done <- p.Serve(ln) }()
	}
	return s
}

// stop shuts the proxy down; it fails the test if Serve failed or the proxy did not stop
// within 15s.
func (s *serving) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.t.Errorf("proxy did not stop within 15s")
		return
	}
	for range s.n {
		if err := <-s.done; !errors.Is(err, proxy.ErrServerClosed) {
			s.t.Errorf("proxy Serve: %v", err)
		}
	}
}

// stop ends the proxy and waits until every goroutine it started has returned.
func (tp *testProxy) stop() {
	if tp.run == nil {
		return
	}
	run := tp.run
	tp.run = nil
	run.stop()
}

func (tp *testProxy) Addr() string { return "127.0.0.1:" + strconv.Itoa(tp.port) }

// replicaArgs are redis-server arguments that make it a replica of the proxy, kept across restarts.
func (tp *testProxy) replicaArgs(extra ...string) []string {
	return append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(tp.port)}, extra...)
}

// do sends one command to the proxy and returns the reply as a string (errors too, with their prefix).
func (tp *testProxy) do(args ...string) string {
	tp.t.Helper()
	c := redistest.Dial(tp.t, tp.Addr())
	defer c.Close()
	if tp.cfg.RequirePass != "" {
		if _, err := c.Do("AUTH", tp.cfg.RequirePass); err != nil {
			tp.t.Fatalf("AUTH: %v", err)
		}
	} else if len(tp.cfg.Users) > 0 {
		if _, err := c.Do("AUTH", tp.cfg.Users[0].Name, tp.cfg.Users[0].Password); err != nil {
			tp.t.Fatalf("AUTH: %v", err)
		}
	}
	c.Send(args...)
	v, err := c.ReadValue()
	if err != nil {
		tp.t.Fatalf("%s: %v", args[0], err)
	}
	if e := v.Error(); e != nil {
		return "-" + e.Error()
	}
	return v.String()
}

// info returns the proxy's INFO fields.
func (tp *testProxy) info(section string) map[string]string {
	tp.t.Helper()
	return redistest.ParseInfo(tp.do("INFO", section))
}

func (tp *testProxy) stat(name string) int64 {
	tp.t.Helper()
	n, err := strconv.ParseInt(tp.info("stats")[name], 10, 64)
	if err != nil {
		tp.t.Fatalf("proxy stat %s: %v", name, err)
	}
	return n
}

func stat(t *testing.T, s *redistest.Server, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s.Info(t, "all")[name], 10, 64)
	if err != nil {
		t.Fatalf("stat %s of %s: %v", name, s.Addr(), err)
	}
	return n
}

// mixedLoad writes a varied dataset: several DBs, lists, hashes, sets, sorted sets, scripts
// (which Redis 7 wraps in MULTI/EXEC in the stream), expires, and values of 1 MB.
func mixedLoad(t *testing.T, m *redistest.Server, scale int) {
	t.Helper()
	n := strconv.Itoa(2000 * scale)
	for _, db := range []string{"0", "3", "9"} {
		redistest.Benchmark(t, m, "--dbnum", db, "-P", "16", "-r", "5000", "-n", n,
			"-t", "set,incr,lpush,rpush,lpop,sadd,spop,hset,zadd,mset")
	}
	redistest.Benchmark(t, m, "-n", strconv.Itoa(500*scale), "-r", "1000", "EVAL",
		"redis.call('set', KEYS[1], ARGV[1]); redis.call('incr', 'evals'); redis.call('hset', 'h', KEYS[1], ARGV[1]); return 1",
		"1", "ev:__rand_int__", "v")
	redistest.Benchmark(t, m, "-n", strconv.Itoa(500*scale), "-r", "1000", "SET", "ttl:__rand_int__", "v", "EX", "100000")
	redistest.Benchmark(t, m, "-n", strconv.Itoa(200*scale), "-r", "1000", "SET", "short:__rand_int__", "v", "PX", "300")
	redistest.Benchmark(t, m, "-t", "set", "-d", "1000000", "-n", "12", "-r", "4")
	c := redistest.Dial(t, m.Addr())
	defer c.Close()
	for i := 0; i < 50*scale; i++ {
		for _, cmd := range [][]string{{"MULTI"}, {"SELECT", "5"}, {"INCR", "tx"}, {"LPUSH", "txl", strconv.Itoa(i)},
			{"HINCRBY", "txh", "f", "1"}, {"EXEC"}} {
			c.Send(cmd...)
		}
		for range 6 {
			if _, err := c.ReadValue(); err != nil {
				t.Fatalf("MULTI/EXEC: %v", err)
			}
		}
	}
}

// buildProxyBinary builds cmd/psync-proxy into a temporary directory, with the race
// detector when race is set.
func buildProxyBinary(t testing.TB, race bool) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "psync-proxy")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, "../cmd/psync-proxy")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
