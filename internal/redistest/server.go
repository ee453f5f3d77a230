package redistest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is one redis-server (or valkey-server) process. Port is its
// loopback port and Dir its working directory (where the RDB file lives,
// under t.TempDir()): fields of the instance it shares with Sentinel, as are
// the methods Addr, Do, MustDo, Running, Kill, Restart and Log.
type Server struct {
	instance

	extra []string // the caller's extra arguments

	mu        sync.Mutex
	replicaOf string // set by ReplicaOf, passed to Restart; guarded by mu
	flavor    Flavor // from INFO server at each launch; guarded by mu
	version   string // likewise

	writeSeq atomic.Int64 // WriteBytes calls, so each call writes new keys
}

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
	s := newServer(bin, args)
	s.start(t, "redis", nil)
	return s
}

// newServer returns a Server of bin with the caller's args, not started.
func newServer(bin string, args []string) *Server {
	s := &Server{extra: slices.Clone(args)}
	s.bin, s.gentleStop = bin, true
	s.argv, s.ready = s.serverArgv, s.started
	return s
}

// serverArgv returns the process's arguments: the defaults, the caller's, then
// --replicaof as set by ReplicaOf.
func (s *Server) serverArgv() []string {
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

// started records the flavor and version of the process that answered.
func (s *Server) started(info map[string]string) error {
	s.mu.Lock()
	s.flavor, s.version = flavorOf(info)
	s.mu.Unlock()
	return nil
}

// PID returns the process id of the current or last process.
func (s *Server) PID() int {
	if p := s.current(); p != nil {
		return p.pid()
	}
	return 0
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
		s.killWait(t, s.current())
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
	c, err := s.dial(DefaultTimeout)
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
	phrase := fmt.Sprintf("%q (%q)", substr, s.LogPhrase(substr))
	s.waitLog(t, phrase, n, timeout, func() int { return s.CountLog(t, substr) })
}
