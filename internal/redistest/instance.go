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

const (
	startTimeout = 10 * time.Second // launch until PONG
	stopTimeout  = 5 * time.Second  // SHUTDOWN NOSAVE until exit, then SIGKILL
	saveTimeout  = 30 * time.Second // SHUTDOWN SAVE until exit (RDB save, lagging replicas)
	killTimeout  = 10 * time.Second // SIGKILL until reaped
	tailLines    = 40
	startTries   = 5 // ports tried by Start when another process takes the port
)

// instance is what a Server and a Sentinel share: a redis-server process of
// ours on a loopback port, which Restart launches again with the same
// arguments, the files it writes its log and output to, and the cached
// connection Do sends on.
type instance struct {
	Port int
	Dir  string // its working directory, under t.TempDir()

	label   string // "Sentinel " for a Sentinel, "" for a Server: names it in messages
	bin     string
	logPath string // its log file
	outPath string // stdout and stderr (errors before the log file opens)
	auth    string // a password sent as AUTH on every connection; "" for none

	argv       func() []string                    // the process's arguments, read at each launch
	ready      func(info map[string]string) error // once the process answers PING, with its INFO server
	gentleStop bool                               // cleanup sends SHUTDOWN NOSAVE NOW before SIGKILL

	procMu sync.Mutex
	p      *proc // current or last process; guarded by procMu

	doMu  sync.Mutex // serializes Do; guards conn and connP
	conn  *Client    // cached connection for Do
	connP *proc      // the process conn was dialed to
}

// Addr returns "127.0.0.1:<port>".
func (in *instance) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(in.Port)) }

// name names the instance in messages: "127.0.0.1:<port>", or "Sentinel
// 127.0.0.1:<port>".
func (in *instance) name() string { return in.label + in.Addr() }

// start launches the process on a free port, its log and output in Dir as
// file.log and file.out, and tries another port (and directory) when another
// process takes the port before the process binds it. prepare, if not nil,
// writes what the process reads from Dir before each try. t.Cleanup ends the
// process and, if the test failed, logs the end of its log.
func (in *instance) start(t TB, file string, prepare func() error) {
	t.Helper()
	// The first TempDir before the Cleanup: testing removes the temporary
	// directories in a cleanup registered by the first call, and cleanups run
	// last in, first out, so the log is still there when cleanup shows it.
	in.Dir = t.TempDir()
	t.Cleanup(func() { in.cleanup(t) })
	for try := 1; ; try++ {
		if try > 1 {
			in.Dir = t.TempDir()
		}
		in.Port = FreePort(t)
		in.logPath = filepath.Join(in.Dir, file+".log")
		in.outPath = filepath.Join(in.Dir, file+".out")
		if prepare != nil {
			if err := prepare(); err != nil {
				t.Fatalf("redistest: %v", err)
			}
		}
		portTaken, err := in.launch()
		if err == nil {
			return
		}
		if portTaken && try < startTries {
			t.Logf("redistest: port %d was taken (%v); trying another", in.Port, err)
			continue
		}
		t.Fatalf("redistest: start %s (%s): %v\n%s", in.name(), in.bin, err, in.tail())
	}
}

// launch starts the process and waits for PONG from it. On failure the
// process is gone when launch returns; portTaken says whether another
// process holds the port.
func (in *instance) launch() (portTaken bool, err error) {
	out, err := os.OpenFile(in.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	p, err := startProc(in.bin, in.argv(), in.Dir, out)
	out.Close() // the child has its own descriptor
	if err != nil {
		return false, err
	}
	in.procMu.Lock()
	in.p = p
	in.procMu.Unlock()
	info, portTaken, err := in.waitReady(p)
	if err == nil && in.ready != nil {
		err = in.ready(info)
	}
	if err != nil {
		p.kill()
		p.wait(killTimeout)
		if strings.Contains(in.readLog(), "Address already in use") {
			portTaken = true
		}
	}
	return portTaken, err
}

// waitReady polls until the process answers PING on its port, and returns
// its INFO server.
func (in *instance) waitReady(p *proc) (info map[string]string, portTaken bool, err error) {
	deadline := time.Now().Add(startTimeout)
	for {
		if p.exited() {
			return nil, false, fmt.Errorf("%s exited before answering PING: %v", filepath.Base(in.bin), p.err)
		}
		info, err := in.pingInfo()
		if err == nil {
			if pid := info["process_id"]; pid != strconv.Itoa(p.pid()) {
				return nil, true, fmt.Errorf("port answered by another process (pid %s, ours %d)", pid, p.pid())
			}
			return info, false, nil
		}
		if time.Now().After(deadline) {
			return nil, false, fmt.Errorf("no PONG within %v: %v", startTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// pingInfo sends PING and, on PONG, returns INFO server.
func (in *instance) pingInfo() (map[string]string, error) {
	c, err := in.dial(time.Second)
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

// dial connects, and sends AUTH when the instance has a password.
func (in *instance) dial(timeout time.Duration) (*Client, error) {
	c, err := dialClient(in.Addr(), timeout)
	if err != nil {
		return nil, err
	}
	if in.auth != "" {
		if _, err := c.Do("AUTH", in.auth); err != nil {
			c.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

// current returns the current or last process (nil before the first launch).
func (in *instance) current() *proc {
	in.procMu.Lock()
	defer in.procMu.Unlock()
	return in.p
}

// Running reports whether the process is alive.
func (in *instance) Running() bool {
	p := in.current()
	return p != nil && !p.exited()
}

func (in *instance) mustRunning(t TB, what string) *proc {
	t.Helper()
	p := in.current()
	if p == nil || p.exited() {
		t.Fatalf("redistest: %s %s: the process is not running", what, in.name())
	}
	return p
}

// Restart starts the process again with the same port, dir and arguments
// (after Kill, or a Server's Stop or ShutdownSave) and waits for PONG. It
// starts from what the process left in its dir: a Server from its RDB, if it
// saved one, and with --replicaof for the master set by ReplicaOf, as a
// replica whose config file names its master would, so it loads the
// replication id and offset and can continue with a partial resync; a
// Sentinel from its sentinel.conf as it had rewritten it.
func (in *instance) Restart(t TB) {
	t.Helper()
	if in.Running() {
		t.Fatalf("redistest: Restart %s: the process is still running", in.name())
	}
	in.dropConn()
	if _, err := in.launch(); err != nil {
		t.Fatalf("redistest: restart %s (%s): %v\n%s", in.name(), in.bin, err, in.tail())
	}
}

// Kill sends SIGKILL to the process (and anything it forked) and waits.
func (in *instance) Kill(t TB) {
	t.Helper()
	p := in.mustRunning(t, "Kill")
	in.dropConn()
	in.killWait(t, p)
}

// killWait sends SIGKILL to p and Fatals if it does not end.
func (in *instance) killWait(t TB, p *proc) {
	t.Helper()
	p.kill()
	if !p.wait(killTimeout) {
		t.Fatalf("redistest: %s (pid %d) still running %v after SIGKILL", in.name(), p.pid(), killTimeout)
	}
}

func (in *instance) cleanup(t TB) {
	in.dropConn()
	if p := in.current(); p != nil {
		if in.gentleStop && !p.exited() {
			if c, err := in.dial(time.Second); err == nil {
				c.SetTimeout(stopTimeout)
				_, _ = c.Do("SHUTDOWN", "NOSAVE", "NOW")
				c.Close()
			}
			if !p.wait(stopTimeout) {
				t.Logf("redistest: %s did not exit after SHUTDOWN NOSAVE NOW; sending SIGKILL", in.name())
			}
		}
		p.kill()
		p.wait(killTimeout)
		// A fork child (an RDB save, a diskless transfer, a Sentinel's
		// notification script) can outlive its parent for a moment and still
		// write in the directory the test is about to remove.
		reapGroup(p.pid(), killTimeout)
	}
	if failed(t) && in.logPath != "" {
		t.Logf("redistest: %s %s (%s):\n%s", filepath.Base(in.bin), in.name(), in.logPath, in.tail())
	}
}

func (in *instance) dropConn() {
	in.doMu.Lock()
	defer in.doMu.Unlock()
	if in.conn != nil {
		in.conn.Close()
		in.conn, in.connP = nil, nil
	}
}

// Do sends one command on a cached connection (dialed again after an I/O
// error or a restart) and returns the reply. Error replies come back as a
// ReplyError. Each call has a 10s deadline, so don't block longer (BLPOP,
// WAIT) through Do; use a Client. Do is safe for concurrent use.
func (in *instance) Do(args ...string) (tresp.Value, error) {
	if len(args) == 0 {
		return tresp.Value{}, errors.New("redistest: Do with no command")
	}
	in.doMu.Lock()
	defer in.doMu.Unlock()
	p := in.current()
	if in.conn != nil && in.connP != p {
		in.conn.Close()
		in.conn = nil
	}
	if in.conn == nil {
		c, err := in.dial(DefaultTimeout)
		if err != nil {
			return tresp.Value{}, fmt.Errorf("redistest: %s: %w", in.name(), err)
		}
		in.conn, in.connP = c, p
	}
	v, err := in.conn.Do(args...)
	if err != nil && !errors.As(err, new(ReplyError)) {
		in.conn.Close()
		in.conn = nil
		return v, fmt.Errorf("redistest: %s %s: %w", in.name(), args[0], err)
	}
	return v, err
}

// MustDo is Do that Fatals on error (error replies included).
func (in *instance) MustDo(t TB, args ...string) tresp.Value {
	t.Helper()
	v, err := in.Do(args...)
	if err != nil {
		t.Fatalf("redistest: %s %q: %v", in.name(), args, err)
	}
	return v
}

func (in *instance) readLog() string {
	b, _ := os.ReadFile(in.logPath)
	return string(b)
}

// Log returns the whole log file so far (every run of the process: Restart
// appends to it).
func (in *instance) Log(t TB) string {
	t.Helper()
	b, err := os.ReadFile(in.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("redistest: read log: %v", err)
	}
	return string(b)
}

// waitLog waits until count() is at least n, and Fatals with the log tail
// after timeout; phrase names what count counts in that message.
func (in *instance) waitLog(t TB, phrase string, n int, timeout time.Duration, count func() int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := count()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s log has %d lines with %s after %v, want %d\n%s",
				in.name(), got, phrase, timeout, n, in.tail())
		}
		time.Sleep(pollInterval)
	}
}

// tail describes the end of the log, and the process output if any.
func (in *instance) tail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", tailLines, in.logPath, lastLines([]byte(in.readLog()), tailLines))
	if out, _ := os.ReadFile(in.outPath); len(strings.TrimSpace(string(out))) > 0 {
		fmt.Fprintf(&b, "--- stdout/stderr ---\n%s\n", lastLines(out, tailLines))
	}
	return b.String()
}
