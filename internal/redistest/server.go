package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tresp "github.com/tidwall/resp"
)

const (
	startTimeout = 10 * time.Second // launch until PONG
	stopTimeout  = 5 * time.Second  // SHUTDOWN NOSAVE until exit, then SIGKILL
	saveTimeout  = 30 * time.Second // SHUTDOWN SAVE until exit (RDB save, lagging replicas)
	killTimeout  = 10 * time.Second // SIGKILL until reaped
	tailLines    = 40
	startTries   = 5 // ports tried by Start when another process takes the port
)

// Server is one redis-server (or valkey-server) process.
type Server struct {
	Port int
	Dir  string // its working dir (RDB file lives here), under t.TempDir()

	bin     string
	extra   []string // the caller's extra arguments
	logPath string   // --logfile
	outPath string   // stdout and stderr (errors before the log file opens)

	mu        sync.Mutex
	p         *proc  // current or last process; guarded by mu
	replicaOf string // set by ReplicaOf, passed to Restart; guarded by mu
	flavor    Flavor // from INFO server at each launch; guarded by mu
	version   string // likewise

	doMu  sync.Mutex // serializes Do; guards conn and connP
	conn  *Client    // cached connection for Do
	connP *proc      // the process conn was dialed to

	writeSeq atomic.Int64 // WriteBytes calls, so each call writes new keys
}

// Addr returns "127.0.0.1:<port>".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Start launches Debian's redis-server (7.0) on a free port with --bind
// 127.0.0.1 --port N --dir <tmp> --logfile <dir>/redis.log --save ""
// --appendonly no --enable-debug-command local --daemonize no
// --protected-mode no --repl-diskless-sync-delay 0, then args (e.g.
// "--repl-backlog-size", "1mb"; a later value of the same option wins), and
// waits until PING answers PONG. If the port is taken before the server
// binds it, Start tries another. t.Cleanup ends the process (SHUTDOWN NOSAVE
// NOW, SIGKILL after 5s) and, if the test failed, logs the last 40 lines of
// its log.
func Start(t TB, args ...string) *Server {
	t.Helper()
	return StartBin(t, findBinary(t, "redis-server"), args...)
}

// StartBin is Start with the server binary bin: a redis-server or
// valkey-server of any release from 7.0 on (they take the same options), such
// as one CompatBinary returns.
func StartBin(t TB, bin string, args ...string) *Server {
	t.Helper()
	// The first TempDir before the Cleanup: testing removes the temporary
	// directories in a cleanup registered by the first call, and cleanups run
	// last in, first out, so the log is still there when s.cleanup shows it.
	s := &Server{bin: bin, extra: slices.Clone(args), Dir: t.TempDir()}
	t.Cleanup(func() { s.cleanup(t) })
	for try := 1; ; try++ {
		if try > 1 {
			s.Dir = t.TempDir()
		}
		s.Port = FreePort(t)
		s.logPath = filepath.Join(s.Dir, "redis.log")
		s.outPath = filepath.Join(s.Dir, "redis.out")
		portTaken, err := s.launch()
		if err == nil {
			return s
		}
		if portTaken && try < startTries {
			t.Logf("redistest: port %d was taken (%v); trying another", s.Port, err)
			continue
		}
		t.Fatalf("redistest: start %s on %s: %v\n%s", s.bin, s.Addr(), err, s.tail())
	}
}

func (s *Server) argv() []string {
	argv := append([]string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.Port),
		"--dir", s.Dir,
		"--logfile", s.logPath,
		"--save", "",
		"--appendonly", "no",
		"--enable-debug-command", "local",
		"--daemonize", "no",
		"--protected-mode", "no",
		// Redis 7 defaults to diskless full syncs that wait 5s for more
		// replicas; tests want them at once. The caller's args override it.
		"--repl-diskless-sync-delay", "0",
	}, s.extra...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if host, port, err := net.SplitHostPort(s.replicaOf); err == nil {
		argv = append(argv, "--replicaof", host, port)
	}
	return argv
}

// launch starts the process and waits for PONG from it. On failure the
// process is gone when launch returns; portTaken says whether another
// process holds the port.
func (s *Server) launch() (portTaken bool, err error) {
	out, err := os.OpenFile(s.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	p, err := startProc(s.bin, s.argv(), s.Dir, out)
	out.Close() // the child has its own descriptor
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	portTaken, err = s.waitReady(p)
	if err != nil {
		p.kill()
		p.wait(killTimeout)
		if strings.Contains(s.readLog(), "Address already in use") {
			portTaken = true
		}
	}
	return portTaken, err
}

// waitReady polls until the process answers PING on its port.
func (s *Server) waitReady(p *proc) (portTaken bool, err error) {
	deadline := time.Now().Add(startTimeout)
	for {
		if p.exited() {
			return false, fmt.Errorf("%s exited before answering PING: %v", filepath.Base(s.bin), p.err)
		}
		info, err := pingInfo(s.Addr())
		if err == nil {
			if pid := info["process_id"]; pid != strconv.Itoa(p.pid()) {
				return true, fmt.Errorf("port answered by another process (pid %s, ours %d)", pid, p.pid())
			}
			s.mu.Lock()
			s.flavor, s.version = flavorOf(info)
			s.mu.Unlock()
			return false, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("no PONG within %v: %v", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pingInfo sends PING to addr and, on PONG, returns its INFO server.
func pingInfo(addr string) (map[string]string, error) {
	c, err := dialClient(addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	v, err := c.Do("PING")
	if err != nil {
		return nil, err
	}
	if v.String() != "PONG" {
		return nil, fmt.Errorf("PING: got %q", v.String())
	}
	v, err = c.Do("INFO", "server")
	if err != nil {
		return nil, err
	}
	return ParseInfo(v.String()), nil
}

// Restart starts the process again with the same port, dir and args (after
// Stop, ShutdownSave or Kill) and waits for PONG. If ReplicaOf was used, the
// process starts with --replicaof for that master, as a replica whose config
// file names its master would, so it loads the replication id and offset
// from its RDB and can continue with a partial resync.
func (s *Server) Restart(t TB) {
	t.Helper()
	if s.Running() {
		t.Fatalf("redistest: Restart %s: the process is still running", s.Addr())
	}
	s.dropConn()
	if _, err := s.launch(); err != nil {
		t.Fatalf("redistest: restart %s on %s: %v\n%s", s.bin, s.Addr(), err, s.tail())
	}
}

// current returns the current or last process (nil before the first launch).
func (s *Server) current() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// Running reports whether the process is alive.
func (s *Server) Running() bool {
	p := s.current()
	return p != nil && !p.exited()
}

// PID returns the process id of the current or last process.
func (s *Server) PID() int {
	if p := s.current(); p != nil {
		return p.pid()
	}
	return 0
}

func (s *Server) mustRunning(t TB, what string) *proc {
	t.Helper()
	p := s.current()
	if p == nil || p.exited() {
		t.Fatalf("redistest: %s %s: the process is not running", what, s.Addr())
	}
	return p
}

// ShutdownSave sends SHUTDOWN SAVE and waits for the process to exit (the
// replica scenario: it restarts from its RDB). A master with replicas first
// waits for them to catch up, as Redis 7 does (shutdown-timeout).
func (s *Server) ShutdownSave(t TB) {
	t.Helper()
	if err := s.Shutdown(t, saveTimeout, "SAVE"); err != nil {
		s.current().kill()
		t.Fatalf("redistest: SHUTDOWN SAVE %s: %v\n%s", s.Addr(), err, s.tail())
	}
}

// Stop sends SHUTDOWN NOSAVE NOW and waits for exit, sending SIGKILL if the
// process still runs after 5s. NOW skips Redis 7's wait for lagging replicas.
func (s *Server) Stop(t TB) {
	t.Helper()
	if err := s.Shutdown(t, stopTimeout, "NOSAVE", "NOW"); err != nil {
		t.Logf("redistest: SHUTDOWN NOSAVE NOW %s: %v; sending SIGKILL", s.Addr(), err)
		p := s.current()
		p.kill()
		if !p.wait(killTimeout) {
			t.Fatalf("redistest: %s (pid %d) still running %v after SIGKILL", s.Addr(), p.pid(), killTimeout)
		}
	}
}

// Shutdown sends SHUTDOWN with the given modifiers ("NOSAVE", "SAVE",
// "NOW", "FORCE") and waits up to timeout for the process to exit. It
// returns an error reply, or an error if the process is still running at
// the deadline; it Fatals if the process is not running.
func (s *Server) Shutdown(t TB, timeout time.Duration, modifiers ...string) error {
	t.Helper()
	p := s.mustRunning(t, "SHUTDOWN")
	s.dropConn()
	deadline := time.Now().Add(timeout)
	c, err := dialClient(s.Addr(), DefaultTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(timeout)
	v, err := c.Do(append([]string{"SHUTDOWN"}, modifiers...)...)
	if err == nil {
		return fmt.Errorf("SHUTDOWN replied %q", v.String())
	}
	if errors.As(err, new(ReplyError)) {
		return err
	}
	// The server closes the connection as it exits.
	if !p.wait(time.Until(deadline)) {
		return fmt.Errorf("still running %v after SHUTDOWN (%v)", timeout, err)
	}
	return nil
}

// Kill sends SIGKILL to the process (and anything it forked) and waits.
func (s *Server) Kill(t TB) {
	t.Helper()
	p := s.mustRunning(t, "Kill")
	s.dropConn()
	p.kill()
	if !p.wait(killTimeout) {
		t.Fatalf("redistest: %s (pid %d) still running %v after SIGKILL", s.Addr(), p.pid(), killTimeout)
	}
}

func (s *Server) cleanup(t TB) {
	s.dropConn()
	if p := s.current(); p != nil && !p.exited() {
		if c, err := dialClient(s.Addr(), time.Second); err == nil {
			c.SetTimeout(stopTimeout)
			_, _ = c.Do("SHUTDOWN", "NOSAVE", "NOW")
			c.Close()
		}
		if !p.wait(stopTimeout) {
			t.Logf("redistest: %s did not exit after SHUTDOWN NOSAVE NOW; sending SIGKILL", s.Addr())
			p.kill()
			p.wait(killTimeout)
		}
	}
	if p := s.current(); p != nil {
		// A fork child (an RDB save or a diskless transfer) can outlive its parent for a
		// moment and still write in the directory the test is about to remove.
		reapGroup(p.pid(), killTimeout)
	}
	if failed(t) && s.logPath != "" {
		t.Logf("redistest: %s %s (%s):\n%s", filepath.Base(s.bin), s.Addr(), s.logPath, s.tail())
	}
}

func (s *Server) dropConn() {
	s.doMu.Lock()
	defer s.doMu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.connP = nil, nil
	}
}

// Do sends one command on a cached connection (dialed again after an I/O
// error or a restart) and returns the reply. Error replies come back as a
// ReplyError. Each call has a 10s deadline, so don't block longer (BLPOP,
// WAIT) through Do; use a Client. Do is safe for concurrent use.
func (s *Server) Do(args ...string) (tresp.Value, error) {
	if len(args) == 0 {
		return tresp.Value{}, errors.New("redistest: Do with no command")
	}
	s.doMu.Lock()
	defer s.doMu.Unlock()
	p := s.current()
	if s.conn != nil && s.connP != p {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		c, err := dialClient(s.Addr(), DefaultTimeout)
		if err != nil {
			return tresp.Value{}, fmt.Errorf("redistest: %s: %w", s.Addr(), err)
		}
		s.conn, s.connP = c, p
	}
	v, err := s.conn.Do(args...)
	if err != nil && !errors.As(err, new(ReplyError)) {
		s.conn.Close()
		s.conn = nil
		return v, fmt.Errorf("redistest: %s %s: %w", s.Addr(), args[0], err)
	}
	return v, err
}

// MustDo is Do that Fatals on error (error replies included).
func (s *Server) MustDo(t TB, args ...string) tresp.Value {
	t.Helper()
	v, err := s.Do(args...)
	if err != nil {
		t.Fatalf("redistest: %s %q: %v", s.Addr(), args, err)
	}
	return v
}

// Info returns the fields of INFO <section> ("replication", "stats",
// "persistence", "all"...) as a map.
func (s *Server) Info(t TB, section string) map[string]string {
	t.Helper()
	m, err := s.InfoErr(section)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return m
}

// InfoErr is Info returning an error instead of failing, for use inside
// Eventually while a server may be down.
func (s *Server) InfoErr(section string) (map[string]string, error) {
	v, err := s.Do("INFO", section)
	if err != nil {
		return nil, fmt.Errorf("INFO %s on %s: %w", section, s.Addr(), err)
	}
	return ParseInfo(v.String()), nil
}

// ParseInfo parses the text of an INFO reply into its "field:value" pairs.
func ParseInfo(text string) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Digest returns DEBUG DIGEST.
func (s *Server) Digest(t TB) string {
	t.Helper()
	return s.MustDo(t, "DEBUG", "DIGEST").String()
}

// ReplicaOf runs REPLICAOF host port; addr "" means REPLICAOF NO ONE.
// Restart keeps the setting (see Restart).
func (s *Server) ReplicaOf(t TB, addr string) {
	t.Helper()
	args := []string{"REPLICAOF", "NO", "ONE"}
	if addr != "" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("redistest: ReplicaOf %q: %v", addr, err)
		}
		args = []string{"REPLICAOF", host, port}
	}
	s.MustDo(t, args...)
	s.mu.Lock()
	s.replicaOf = addr
	s.mu.Unlock()
}

func (s *Server) readLog() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Log returns the whole log file so far (every run of the process: Restart
// appends to it).
func (s *Server) Log(t TB) string {
	t.Helper()
	b, err := os.ReadFile(s.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("redistest: read log: %v", err)
	}
	return string(b)
}

// CountLog counts the log lines containing substr, or on a Valkey server
// containing substr or LogPhrase(substr): a phrase in Redis's words ("Full
// resync from master") also counts Valkey's lines ("Full resync from
// primary").
func (s *Server) CountLog(t TB, substr string) int {
	t.Helper()
	return s.CountLogAny(t, substr)
}

// CountLogAny counts the log lines containing any of the phrases (each also
// in its LogPhrase form), for lines whose wording differs in other ways.
func (s *Server) CountLogAny(t TB, phrases ...string) int {
	t.Helper()
	all := slices.Clone(phrases)
	for _, p := range phrases {
		if w := s.LogPhrase(p); w != p {
			all = append(all, w)
		}
	}
	return countLines(s.Log(t), all)
}

// WaitLog waits until CountLog(substr) is at least n (Fatal with the log
// tail after timeout).
func (s *Server) WaitLog(t TB, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.CountLog(t, substr)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s log has %d lines with %q (%q) after %v, want %d\n%s",
				s.Addr(), got, substr, s.LogPhrase(substr), timeout, n, s.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail describes the end of the log, and the process output if any.
func (s *Server) tail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", tailLines, s.logPath, lastLines([]byte(s.readLog()), tailLines))
	if out, _ := os.ReadFile(s.outPath); len(strings.TrimSpace(string(out))) > 0 {
		fmt.Fprintf(&b, "--- stdout/stderr ---\n%s\n", lastLines(out, tailLines))
	}
	return b.String()
}
