package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	tresp "github.com/tidwall/resp"
)

// Sentinel is one redis-server process in Sentinel mode
// (redis-server sentinel.conf --sentinel) monitoring one master.
type Sentinel struct {
	Port       int
	Dir        string // its working dir, holding sentinel.conf, which Sentinel rewrites
	MasterName string
	Password   string // its requirepass (taken from extraConf), sent by Do as AUTH

	bin      string
	confPath string
	logPath  string
	outPath  string

	mu sync.Mutex
	p  *proc // guarded by mu

	doMu  sync.Mutex // serializes Do; guards conn and connP
	conn  *Client
	connP *proc
}

// StartSentinel starts a Sentinel on a free port that monitors master under
// masterName with the given quorum. Its sentinel.conf holds
//
//	port N, bind 127.0.0.1, dir, logfile, protected-mode no
//	sentinel monitor <masterName> 127.0.0.1 <master port> <quorum>
//	sentinel down-after-milliseconds <masterName> 1000
//	sentinel failover-timeout <masterName> 5000
//
// then extraConf, one config line each ("requirepass secret", "sentinel
// parallel-syncs mymaster 2"; a later line wins). A "requirepass" line also sets
// Password. StartSentinel waits until PING answers, then shortens TILT mode to
// 2 s (SENTINEL DEBUG tilt-period 2000; Restart does it again). t.Cleanup kills
// it and, if the test failed, logs the end of its log.
func StartSentinel(t TB, masterName string, master *Server, quorum int, extraConf ...string) *Sentinel {
	t.Helper()
	s := &Sentinel{bin: findBinary(t, "redis-server"), MasterName: masterName}
	for _, line := range extraConf {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && strings.EqualFold(k, "requirepass") {
			s.Password = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Cleanup(func() { s.cleanup(t) })
	for try := 1; ; try++ {
		s.Dir = t.TempDir()
		s.Port = FreePort(t)
		s.confPath = filepath.Join(s.Dir, "sentinel.conf")
		s.logPath = filepath.Join(s.Dir, "sentinel.log")
		s.outPath = filepath.Join(s.Dir, "sentinel.out")
		conf := s.config(master.Port, quorum, extraConf)
		if err := os.WriteFile(s.confPath, []byte(conf), 0o644); err != nil {
			t.Fatalf("redistest: write %s: %v", s.confPath, err)
		}
		portTaken, err := s.launch()
		if err == nil {
			return s
		}
		if portTaken && try < startTries {
			t.Logf("redistest: port %d was taken (%v); trying another", s.Port, err)
			continue
		}
		t.Fatalf("redistest: start Sentinel on %s: %v\n%s", s.Addr(), err, s.tail())
	}
}

func (s *Sentinel) config(masterPort, quorum int, extra []string) string {
	lines := []string{
		"port " + strconv.Itoa(s.Port),
		"bind 127.0.0.1",
		"dir " + s.Dir,
		"logfile " + s.logPath,
		"daemonize no",
		"protected-mode no",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", s.MasterName, masterPort, quorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", s.MasterName),
		fmt.Sprintf("sentinel failover-timeout %s 5000", s.MasterName),
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

// Addr returns "127.0.0.1:<port>".
func (s *Sentinel) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// launch starts the process on the current sentinel.conf and waits for PONG.
func (s *Sentinel) launch() (portTaken bool, err error) {
	out, err := os.OpenFile(s.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	p, err := startProc(s.bin, []string{s.confPath, "--sentinel"}, s.Dir, out)
	out.Close()
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	if err = s.waitReady(p); err == nil {
		// A test machine that stalls for 2 s (Sentinel's tilt-trigger) sends
		// Sentinel into TILT mode, where it takes no action for 30 s. 2 s of
		// TILT still let it see the instances again before it judges them.
		_, err = s.Do("SENTINEL", "DEBUG", "tilt-period", "2000")
	}
	if err != nil {
		p.kill()
		p.wait(killTimeout)
		b, _ := os.ReadFile(s.logPath)
		portTaken = strings.Contains(string(b), "Address already in use")
	}
	return portTaken, err
}

// waitReady polls until the process answers PING, checking that it is ours.
func (s *Sentinel) waitReady(p *proc) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if p.exited() {
			return fmt.Errorf("Sentinel exited before answering PING: %v", p.err)
		}
		pid, err := s.pingPID()
		if err == nil {
			if pid != p.pid() {
				return fmt.Errorf("port answered by another process (pid %d, ours %d)", pid, p.pid())
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v: %v", startTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

func (s *Sentinel) pingPID() (int, error) {
	c, err := s.dial(time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if v, err := c.Do("PING"); err != nil || v.String() != "PONG" {
		return 0, fmt.Errorf("PING: %q %v", v.String(), err)
	}
	v, err := c.Do("INFO", "server")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(ParseInfo(v.String())["process_id"])
}

// dial connects and sends AUTH when the Sentinel has a password.
func (s *Sentinel) dial(timeout time.Duration) (*Client, error) {
	c, err := dialClient(s.Addr(), timeout)
	if err != nil {
		return nil, err
	}
	if s.Password != "" {
		if _, err := c.Do("AUTH", s.Password); err != nil {
			c.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

func (s *Sentinel) current() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// Running reports whether the process is alive.
func (s *Sentinel) Running() bool {
	p := s.current()
	return p != nil && !p.exited()
}

// Kill sends SIGKILL and waits. sentinel.conf keeps what the Sentinel had
// written to it, so Restart starts from that state, as a real restart would.
func (s *Sentinel) Kill(t TB) {
	t.Helper()
	p := s.current()
	if p == nil || p.exited() {
		t.Fatalf("redistest: Kill Sentinel %s: the process is not running", s.Addr())
	}
	s.dropConn()
	p.kill()
	if !p.wait(killTimeout) {
		t.Fatalf("redistest: Sentinel %s (pid %d) still running %v after SIGKILL", s.Addr(), p.pid(), killTimeout)
	}
}

// Restart starts the Sentinel again, on the same port, from its sentinel.conf.
func (s *Sentinel) Restart(t TB) {
	t.Helper()
	if s.Running() {
		t.Fatalf("redistest: Restart Sentinel %s: the process is still running", s.Addr())
	}
	s.dropConn()
	if _, err := s.launch(); err != nil {
		t.Fatalf("redistest: restart Sentinel on %s: %v\n%s", s.Addr(), err, s.tail())
	}
}

func (s *Sentinel) cleanup(t TB) {
	s.dropConn()
	if p := s.current(); p != nil {
		p.kill()
		p.wait(killTimeout)
		reapGroup(p.pid(), killTimeout) // a notification script it forked
	}
	if failed(t) && s.logPath != "" {
		t.Logf("redistest: Sentinel %s (%s):\n%s", s.Addr(), s.logPath, s.tail())
	}
}

func (s *Sentinel) dropConn() {
	s.doMu.Lock()
	defer s.doMu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.connP = nil, nil
	}
}

// Do sends one command on a cached connection (dialed again after an I/O error
// or a restart) and returns the reply; error replies come back as ReplyError.
func (s *Sentinel) Do(args ...string) (tresp.Value, error) {
	if len(args) == 0 {
		return tresp.Value{}, errors.New("redistest: Do with no command")
	}
	s.doMu.Lock()
	defer s.doMu.Unlock()
	if p := s.current(); s.conn != nil && s.connP != p {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		c, err := s.dial(DefaultTimeout)
		if err != nil {
			return tresp.Value{}, fmt.Errorf("redistest: Sentinel %s: %w", s.Addr(), err)
		}
		s.conn, s.connP = c, s.current()
	}
	v, err := s.conn.Do(args...)
	if err != nil && !errors.As(err, new(ReplyError)) {
		s.conn.Close()
		s.conn = nil
		return v, fmt.Errorf("redistest: Sentinel %s %s: %w", s.Addr(), args[0], err)
	}
	return v, err
}

// MustDo is Do that Fatals on error (error replies included).
func (s *Sentinel) MustDo(t TB, args ...string) tresp.Value {
	t.Helper()
	v, err := s.Do(args...)
	if err != nil {
		t.Fatalf("redistest: Sentinel %s %q: %v", s.Addr(), args, err)
	}
	return v
}

// MasterInfo returns SENTINEL MASTER <MasterName> as a map (ip, port, flags,
// config-epoch, num-slaves, num-other-sentinels...).
func (s *Sentinel) MasterInfo() (map[string]string, error) {
	v, err := s.Do("SENTINEL", "MASTER", s.MasterName)
	if err != nil {
		return nil, err
	}
	a := v.Array()
	m := make(map[string]string, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		m[a[i].String()] = a[i+1].String()
	}
	return m, nil
}

// WaitSentinelsReady waits until every Sentinel knows all the others and at
// least replicas replicas of its master, so that a failover can be agreed.
func WaitSentinelsReady(t TB, timeout time.Duration, replicas int, sentinels ...*Sentinel) {
	t.Helper()
	Eventually(t, timeout, func() error {
		for _, s := range sentinels {
			m, err := s.MasterInfo()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != strconv.Itoa(len(sentinels)-1) {
				return fmt.Errorf("Sentinel %s: num-other-sentinels:%s, want %d", s.Addr(), m["num-other-sentinels"], len(sentinels)-1)
			}
			if n, _ := strconv.Atoi(m["num-slaves"]); n < replicas {
				return fmt.Errorf("Sentinel %s: num-slaves:%s, want %d", s.Addr(), m["num-slaves"], replicas)
			}
		}
		return nil
	})
}

// Log returns the Sentinel's whole log so far (every run).
func (s *Sentinel) Log(t TB) string {
	t.Helper()
	b, err := os.ReadFile(s.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("redistest: read log: %v", err)
	}
	return string(b)
}

// CountLog counts the log lines containing substr.
func (s *Sentinel) CountLog(t TB, substr string) int {
	t.Helper()
	return countLines(s.Log(t), []string{substr})
}

// WaitLog waits until the log contains substr at least n times (Fatal with
// the log tail after timeout).
func (s *Sentinel) WaitLog(t TB, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.CountLog(t, substr)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: Sentinel %s log has %d lines with %q after %v, want %d\n%s",
				s.Addr(), got, substr, timeout, n, s.tail())
		}
		time.Sleep(pollInterval)
	}
}

func (s *Sentinel) tail() string {
	var b strings.Builder
	log, _ := os.ReadFile(s.logPath)
	fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", tailLines, s.logPath, lastLines(log, tailLines))
	if out, _ := os.ReadFile(s.outPath); len(strings.TrimSpace(string(out))) > 0 {
		fmt.Fprintf(&b, "--- stdout/stderr ---\n%s\n", lastLines(out, tailLines))
	}
	return b.String()
}
