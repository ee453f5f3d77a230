package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

const hostilePass = "hostile-test-secret"

// rawClient is a downstream connection driven byte by byte.
type rawClient struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(addr string) (*rawClient, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawClient{Conn: c, br: bufio.NewReader(c)}, nil
}

// dialAuthed dials addr and authenticates with hostilePass.
func dialAuthed(addr string) (*rawClient, error) {
	c, err := dialRaw(addr)
	if err != nil {
		return nil, err
	}
	if s, err := c.do("AUTH", hostilePass); s != "+OK" {
		c.Close()
		return nil, fmt.Errorf("AUTH: %q %v", s, err)
	}
	return c, nil
}

// line reads one reply line, without its CRLF.
func (c *rawClient) line(d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	s, err := c.br.ReadString('\n')
	return strings.TrimSuffix(s, "\r\n"), err
}

// send writes args as one command.
func (c *rawClient) send(args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(c, b.String())
	return err
}

// do sends args as one command and returns the reply's first line.
func (c *rawClient) do(args ...string) (string, error) {
	if err := c.send(args...); err != nil {
		return "", err
	}
	return c.line(10 * time.Second)
}

// info returns a section of INFO through a fresh connection, authenticated with pass if set.
func rawInfo(addr, pass, section string) (map[string]string, error) {
	c, err := dialRaw(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if pass != "" {
		if s, err := c.do("AUTH", pass); err != nil || s != "+OK" {
			return nil, fmt.Errorf("AUTH: %q %v", s, err)
		}
	}
	return c.info(section)
}

func (c *rawClient) info(section string) (map[string]string, error) {
	head, err := c.do("INFO", section)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(head, "$"))
	if err != nil {
		return nil, fmt.Errorf("INFO reply %q", head)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return nil, err
	}
	return redistest.ParseInfo(string(body)), nil
}

// closedWithin reads until the proxy closes the connection and returns every line it sent
// before; an error if it is still open after d. A reset counts as a close: the proxy
// closes with the client's unread bytes still queued, as Redis does.
func (c *rawClient) closedWithin(d time.Duration) ([]string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	var lines []string
	for {
		s, err := c.br.ReadString('\n')
		if s != "" {
			lines = append(lines, strings.TrimSuffix(s, "\r\n"))
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			return lines, nil
		default:
			return lines, fmt.Errorf("still open after %v (%v), after %q", d, err, lines)
		}
	}
}

// hostileProxy is the psync-proxy binary under attack.
type hostileProxy struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
}

func startHostileProxy(t *testing.T, master *redistest.Server, args ...string) *hostileProxy {
	t.Helper()
	bin := buildProxyBinary(t, false)
	hp := &hostileProxy{addr: "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)), logPath: filepath.Join(t.TempDir(), "proxy.log")}
	logf, err := os.Create(hp.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	hp.cmd = exec.Command(bin, append([]string{"--master", master.Addr(), "--listen", hp.addr, "--dir", t.TempDir()}, args...)...)
	hp.cmd.Stderr = logf
	if err := hp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hp.cmd.Process.Kill()
		hp.cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(hp.logPath)
			lines := strings.Split(string(b), "\n")
			t.Logf("proxy log (last 60 lines):\n%s", strings.Join(lines[max(len(lines)-60, 0):], "\n"))
		}
	})
	redistest.Eventually(t, 30*time.Second, func() error {
		c, err := dialRaw(hp.addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.do("PING")
		return err
	})
	return hp
}

// info returns a section of the proxy's INFO through a fresh, authenticated connection.
func (hp *hostileProxy) info(section string) (map[string]string, error) {
	return rawInfo(hp.addr, hostilePass, section)
}

func (hp *hostileProxy) log() string {
	b, _ := os.ReadFile(hp.logPath)
	return string(b)
}

// TestHostileClients runs the psync-proxy binary between a master under redis-benchmark
// load and a stock replica, and throws hostile input at its downstream port: bad headers,
// huge declared lengths, endless lines, garbage, wrong PSYNC/REPLCONF arguments, PSYNC
// before AUTH, an oversized command, a pipelined flood, thousands of idle connections and a
// replica that never reads. Each gets its error reply or a close; the replica keeps
// streaming throughout and ends with the master's dataset; the proxy's peak RSS stays bounded.
func TestHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a proxy under attack for about a minute")
	}
	const backlog = 16 << 20
	m := redistest.Start(t, "--repl-ping-replica-period", "1")
	hp := startHostileProxy(t, m, "--backlog-size", strconv.Itoa(backlog), "--repl-timeout", "5",
		"--requirepass", hostilePass, "--handshake-timeout", "3", "--timeout", "6", "--log-level", "debug")
	_, port, _ := net.SplitHostPort(hp.addr)
	r := redistest.Start(t, "--replicaof", "127.0.0.1", port, "--masterauth", hostilePass)
	redistest.WaitOnline(t, r, time.Minute)
	stopLoad := redistest.BenchmarkAsync(t, m, "-c", "2", "-n", "100000000", "-t", "set", "-r", "100000", "-d", "128")

	// The replica's offset, sampled throughout: it must never stall for long.
	var stall, samples, moved atomic.Int64
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		last, since := int64(-1), time.Now()
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if ri, err := r.InfoErr("replication"); err == nil {
				samples.Add(1)
				off, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
				if off != last {
					moved.Add(1)
					last, since = off, time.Now()
					continue
				}
			}
			// Unchanged for this long: at least one sampling interval between changes.
			if d := time.Since(since); int64(d) > stall.Load() {
				stall.Store(int64(d))
			}
		}
	}()
	startOff := stat(t, r, "slave_repl_offset")

	var tried atomic.Int64
	var wg sync.WaitGroup
	attack := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	attack("refusals", func() error { return hostileRefusals(hp, &tried) })
	attack("arguments", func() error { return hostileArguments(hp, &tried) })
	attack("garbage", func() error { return hostileGarbage(hp, &tried) })
	attack("query buffer", func() error { return hostileQueryBuffer(hp, &tried) })
	attack("pipelined flood", func() error { return hostileFlood(hp, &tried) })
	attack("idle connections", func() error { return hostileIdle(hp, &tried) })
	attack("replica that never reads", func() error { return hostileDeafReplica(t, hp, &tried) })
	wg.Wait()

	// Everyone else was served all along.
	if _, err := hp.info("stats"); err != nil {
		t.Errorf("INFO after the attack: %v", err)
	}
	close(done)
	<-watched
	endOff := stat(t, r, "slave_repl_offset")
	stopLoad()
	if endOff <= startOff {
		t.Errorf("the replica's offset did not advance during the attack: %d to %d", startOff, endOff)
	}
	if s := time.Duration(stall.Load()); s > 10*time.Second {
		t.Errorf("the replica's offset stalled for %v during the attack", s)
	}
	redistest.WaitInSync(t, time.Minute, m, r)
	if n := r.CountLog(t, "Connection with master lost"); n != 0 {
		t.Errorf("the streaming replica lost its link %d times during the attack", n)
	}

	log := hp.log()
	for _, want := range []string{"Protocol error (invalid bulk length) from client", "Closing client that reached max query buffer length",
		"asks for synchronization but with a wrong offset"} {
		if !strings.Contains(log, want) {
			t.Errorf("the proxy did not log %q", want)
		}
	}
	t.Logf("proxy log: %d protocol errors, %d query buffer closes", strings.Count(log, "Protocol error ("),
		strings.Count(log, "Closing client that reached max query buffer length"))
	peak := vmHWM(t, hp.cmd.Process.Pid)
	t.Logf("%d hostile inputs; the replica streamed %d MB meanwhile, its offset moved in %d of %d samples 200ms apart (longest stall %v); proxy peak RSS %d MB",
		tried.Load(), (endOff-startOff)>>20, moved.Load(), samples.Load(), time.Duration(stall.Load()).Round(time.Millisecond), peak>>20)
	// About 75 MB measured: the backlog, about 10 KB per idle connection, the runtime.
	if limit := int64(backlog + 96<<20); peak > limit {
		t.Errorf("proxy peak RSS %d MB > backlog %d MB + 96 MB", peak>>20, backlog>>20)
	}
}

// hostileRefusals sends headers and lines the proxy must refuse with Redis's reply and a
// close. Each input is sent whole, and no more, so that the close is no reset.
func hostileRefusals(hp *hostileProxy, tried *atomic.Int64) error {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("1", n) }
	for _, c := range []struct {
		in     string
		authed bool
		want   string
	}{
		{"*99999999\r\n", false, "-ERR Protocol error: invalid multibulk length"},
		{"*99999999\r\n", true, "-ERR Protocol error: invalid multibulk length"},
		{"*11\r\n", false, "-ERR Protocol error: unauthenticated multibulk length"},
		{"*-5\r\n", true, "-ERR Protocol error: invalid multibulk length"},
		{"*1\r\n$9999999999\r\n", false, "-ERR Protocol error: invalid bulk length"},
		{"*1\r\n$9999999999\r\n", true, "-ERR Protocol error: invalid bulk length"},
		{"*1\r\n$9223372036854775807\r\n", true, "-ERR Protocol error: invalid bulk length"},
		{"*2\r\n$4\r\nAUTH\r\n$20000\r\n", false, "-ERR Protocol error: unauthenticated bulk length"},
		{"*2\r\n$4\r\nECHO\r\n$70000\r\n", true, "-ERR Protocol error: invalid bulk length"},
		{"*1\r\nfoo\r\n", true, "-ERR Protocol error: expected '$', got 'f'"},
		{"\"unbalanced\r\n", true, "-ERR Protocol error: unbalanced quotes in request"},
		// 64 KB + 1 in the line, its last byte refused: nothing is left unread.
		{long("x", 64<<10), false, "-ERR Protocol error: too big inline request"},
		{long("x", 64<<10), true, "-ERR Protocol error: too big inline request"},
		{long("*", 64<<10), true, "-ERR Protocol error: too big mbulk count string"},
		{long("*1\r\n$", 64<<10), true, "-ERR Protocol error: too big bulk count string"},
	} {
		tried.Add(1)
		dial := dialRaw
		if c.authed {
			dial = dialAuthed
		}
		cl, err := dial(hp.addr)
		if err != nil {
			return err
		}
		err = func() error {
			defer cl.Close()
			cl.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(cl, c.in); err != nil {
				return fmt.Errorf("%.40q: %v", c.in, err)
			}
			lines, err := cl.closedWithin(20 * time.Second)
			if err != nil || len(lines) != 1 || lines[0] != c.want {
				return fmt.Errorf("%.40q (authenticated %v): got %q then %v, want %q and a close", c.in, c.authed, lines, err, c.want)
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// hostileArguments sends PSYNC, SYNC and REPLCONF with wrong arity or values, before and
// after AUTH: each gets Redis's error and the connection goes on.
func hostileArguments(hp *hostileProxy, tried *atomic.Int64) error {
	cl, err := dialRaw(hp.addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"PSYNC", "?", "-1"}, "-NOAUTH Authentication required."},
		{[]string{"SYNC"}, "-NOAUTH Authentication required."},
		{[]string{"REPLCONF", "capa", "eof"}, "-NOAUTH Authentication required."},
		{[]string{"AUTH", "wrong"}, "-WRONGPASS invalid username-password pair or user is disabled."},
		{[]string{"AUTH", hostilePass}, "+OK"},
		{[]string{"PSYNC"}, "-ERR wrong number of arguments for 'psync' command"},
		{[]string{"PSYNC", "?"}, "-ERR wrong number of arguments for 'psync' command"},
		{[]string{"PSYNC", "?", "abc"}, "-ERR value is not an integer or out of range"},
		{[]string{"PSYNC", "?", "99999999999999999999"}, "-ERR value is not an integer or out of range"},
		{[]string{"PSYNC", "?", "1.5"}, "-ERR value is not an integer or out of range"},
		{[]string{"SYNC", "x"}, "-ERR wrong number of arguments for 'sync' command"},
		{[]string{"REPLCONF", "listening-port"}, "-ERR syntax error"},
		{[]string{"REPLCONF", "ACK"}, "-ERR syntax error"},
		{[]string{"REPLCONF", "listening-port", "abc"}, "-ERR value is not an integer or out of range"},
		{[]string{"REPLCONF", "rdb-only", "2"}, "-ERR value is out of range, value must between 0 and 1"},
		{[]string{"REPLCONF", "bogus", "1"}, "-ERR Unrecognized REPLCONF option: bogus"},
		{[]string{"REPLCONF", "ACK", "abc"}, ""}, // never a reply, as in Redis
		{[]string{"PING"}, "+PONG"},
	}
	for _, s := range steps {
		tried.Add(1)
		var got string
		if s.want == "" {
			err = cl.send(s.args...)
		} else {
			got, err = cl.do(s.args...)
		}
		if err != nil || got != s.want {
			return fmt.Errorf("%q: %q %v, want %q", s.args, got, err, s.want)
		}
	}
	return nil
}

// hostileGarbage sends random bytes on 40 unauthenticated connections at once: every reply
// is an error, and each connection is closed (by a protocol error or the handshake deadline).
func hostileGarbage(hp *hostileProxy, tried *atomic.Int64) error {
	rng := rand.New(rand.NewPCG(6, 6))
	var conns []*rawClient
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 40 {
		tried.Add(1)
		b := make([]byte, 1+rng.IntN(16<<10))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		cl, err := dialRaw(hp.addr)
		if err != nil {
			return err
		}
		conns = append(conns, cl)
		cl.SetWriteDeadline(time.Now().Add(10 * time.Second))
		cl.Write(b) // may fail once the proxy has closed
	}
	for i, cl := range conns {
		lines, err := cl.closedWithin(20 * time.Second)
		if err != nil {
			return fmt.Errorf("garbage %d: %v", i, err)
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, "-") {
				return fmt.Errorf("garbage %d: a reply that is no error: %q", i, l)
			}
		}
	}
	return nil
}

// hostileQueryBuffer sends a command larger than client-query-buffer-limit (1mb by default)
// in arguments each within proto-max-bulk-len: the proxy closes the connection, no reply.
func hostileQueryBuffer(hp *hostileProxy, tried *atomic.Int64) error {
	tried.Add(1)
	cl, err := dialAuthed(hp.addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	var b bytes.Buffer
	b.WriteString("*20\r\n$4\r\nECHO\r\n")
	for range 19 {
		b.WriteString("$60000\r\n" + strings.Repeat("q", 60000) + "\r\n")
	}
	cl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	cl.Write(b.Bytes()) // fails once the proxy has closed
	lines, err := cl.closedWithin(20 * time.Second)
	if err != nil || len(lines) != 0 {
		return fmt.Errorf("got %q then %v, want a close without reply", lines, err)
	}
	return nil
}

// hostileFlood pipelines 8 MB of REPLCONF ACK, which get no reply, in writes that end
// anywhere: the connection is served throughout and memory stays put.
func hostileFlood(hp *hostileProxy, tried *atomic.Int64) error {
	tried.Add(1)
	cl, err := dialAuthed(hp.addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	var b bytes.Buffer
	for i := 0; b.Len() < 8<<20; i++ {
		n := strconv.Itoa(i)
		fmt.Fprintf(&b, "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$%d\r\n%s\r\n", len(n), n)
	}
	for p := b.Bytes(); len(p) > 0; {
		n := min(len(p), 65521) // a prime: writes end mid-command
		cl.SetWriteDeadline(time.Now().Add(20 * time.Second))
		if _, err := cl.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	if s, err := cl.line(0); err == nil {
		return fmt.Errorf("a reply to REPLCONF ACK: %q", s)
	}
	if s, err := cl.do("PING"); s != "+PONG" {
		return fmt.Errorf("PING after the flood: %q %v", s, err)
	}
	return nil
}

// hostileIdle opens 2000 connections that never authenticate and 200 that authenticate and
// then say nothing: the handshake deadline closes the first, --timeout the others.
func hostileIdle(hp *hostileProxy, tried *atomic.Int64) error {
	var conns []*rawClient
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2000 {
		c, err := dialRaw(hp.addr)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	firstAuthed := len(conns)
	for range 200 {
		c, err := dialAuthed(hp.addr)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	tried.Add(int64(len(conns)))
	if inf, err := hp.info("clients"); err != nil {
		return err
	} else if n, _ := strconv.Atoi(inf["connected_clients"]); n < 1000 {
		return fmt.Errorf("connected_clients:%d while 2200 idle connections are open", n)
	}
	for i, c := range conns {
		lines, err := c.closedWithin(30 * time.Second)
		if err != nil || len(lines) != 0 {
			return fmt.Errorf("idle connection %d (authenticated %v): %q, %v", i, i >= firstAuthed, lines, err)
		}
	}
	return nil
}

// hostileDeafReplica is a replica that asks for +CONTINUE, acknowledges every half second
// and never reads: the proxy drops it after --repl-timeout (5s) without buffering for it.
// Usually its stream write times out; sometimes the write timeout loses to the read timeout
// because the kernel holds back this client's ACKs (ss showed them piling up in its Send-Q
// while its receive buffer was full). Either way it is dropped in time.
func hostileDeafReplica(t *testing.T, hp *hostileProxy, tried *atomic.Int64) error {
	tried.Add(1)
	inf, err := hp.info("replication")
	if err != nil {
		return err
	}
	off, _ := strconv.ParseInt(inf["master_repl_offset"], 10, 64)
	cl, err := dialAuthed(hp.addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	cl.Conn.(*net.TCPConn).SetReadBuffer(4096)
	if s, err := cl.do("REPLCONF", "capa", "eof", "capa", "psync2"); s != "+OK" {
		return fmt.Errorf("REPLCONF: %q %v", s, err)
	}
	if s, err := cl.do("PSYNC", inf["master_replid"], strconv.FormatInt(off+1, 10)); !strings.HasPrefix(s, "+CONTINUE") {
		return fmt.Errorf("PSYNC: %q %v", s, err)
	}
	// From here on, never read.
	start := time.Now()
	stop := make(chan struct{})
	acks := make(chan struct{})
	go func() {
		defer close(acks)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			cl.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(cl, "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n"); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		<-acks
	}()
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		lost := "Connection with replica " + cl.LocalAddr().String() + " lost"
		if inf, err := hp.info("replication"); err == nil && inf["connected_slaves"] == "1" && strings.Contains(hp.log(), lost) {
			log := hp.log()
			line := log[strings.Index(log, lost):]
			took := time.Since(start)
			t.Logf("the replica that never reads was dropped after %v: %s", took.Round(time.Millisecond), line[:strings.IndexByte(line, '\n')])
			// repl-timeout is 5 s, on the write or the read side; the rest is slack.
			if took > 20*time.Second {
				return fmt.Errorf("the replica that never reads was dropped only after %v, repl-timeout is 5s", took)
			}
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the replica that never reads was not dropped within 40s")
}

// TestMaxClients: past --maxclients a connection gets Redis's error and a close, counted in
// rejected_connections; a place that frees is taken again.
func TestMaxClients(t *testing.T) {
	m := redistest.Start(t)
	tp := startProxy(t, m, proxy.Config{MaxClients: 5})
	// The helper's own connections may still count for a moment: retry until 5 are held.
	var held []*rawClient
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	redistest.Eventually(t, 10*time.Second, func() error {
		c, err := dialRaw(tp.Addr())
		if err != nil {
			return err
		}
		if s, err := c.do("PING"); s != "+PONG" {
			c.Close()
			return fmt.Errorf("PING: %q %v", s, err)
		}
		if held = append(held, c); len(held) < 5 {
			return errors.New("not 5 yet")
		}
		return nil
	})
	over, err := dialRaw(tp.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if lines, err := over.closedWithin(10 * time.Second); err != nil || len(lines) != 1 || lines[0] != "-ERR max number of clients reached" {
		t.Fatalf("connection over maxclients: %q, %v", lines, err)
	}
	held[0].Close()
	// The freed place is taken again; refusals until the proxy has seen the close count too.
	var c *rawClient
	redistest.Eventually(t, 10*time.Second, func() error {
		var err error
		if c, err = dialRaw(tp.Addr()); err != nil {
			return err
		}
		inf, err := c.info("stats")
		if err != nil {
			c.Close()
			return err
		}
		if n, _ := strconv.Atoi(inf["rejected_connections"]); n < 1 {
			t.Fatalf("rejected_connections:%s after a refusal", inf["rejected_connections"])
		}
		return nil
	})
	defer c.Close()
	c.send("CONFIG", "GET", "maxclients")
	var reply []string
	for range 5 {
		l, err := c.line(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		reply = append(reply, l)
	}
	if strings.Join(reply, " ") != "*2 $10 maxclients $1 5" {
		t.Fatalf("CONFIG GET maxclients: %q", reply)
	}
}
