package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The forward scenario measures how fast the proxy moves bytes, with nothing else in the way: a
// synthetic upstream in this process writes a replication stream as fast as it is taken (at
// most forwardLagCap ahead of the slowest sink), and sinks read and discard what the proxy
// sends. The baseline is the same upstream and one sink joined by a plain io.Copy relay.

const (
	// forwardReplid is the synthetic master's replication ID (any 40 hex digits).
	forwardReplid = "5f0e1c2b3a49586776859a4b3c2d1e0f5f0e1c2b"
	// forwardValueSize is the SET value size of every command in the stream.
	forwardValueSize = 1 << 10
	// forwardChunk is the stream buffer the upstream writes again and again.
	forwardChunk = 1 << 20
	// forwardReadSize is each sink's read size: big, so that the sinks cost little CPU.
	forwardReadSize = 256 << 10
	// forwardLagCap is how far the upstream may run ahead of the slowest sink. The proxy
	// never slows its upstream for a replica (it drops one that falls out of the backlog), so
	// an unpaced upstream measures how fast the proxy ingests, not how fast it forwards: the
	// sinks lag until they are dropped. Pacing makes the run closed-loop like the relay, whose
	// TCP flow control does the same within a few socket buffers. The cap is far below the
	// proxy's default 256 MB backlog, so no sink is ever dropped, and far above one write, so
	// no stage starves for want of bytes in flight.
	forwardLagCap = 64 << 20
	// forwardTimeout bounds each setup step, so a broken proxy fails the run instead of
	// hanging it.
	forwardTimeout = 30 * time.Second
)

// forwardRDB is the smallest payload the proxy accepts: length framing, the REDIS magic and
// version, EOF opcode and a zero checksum (the proxy checks only the magic).
func forwardRDB() []byte {
	body := append([]byte("REDIS0010\xff"), make([]byte, 8)...)
	return append(fmt.Appendf(nil, "$%d\r\n", len(body)), body...)
}

// forwardStream returns at most forwardChunk bytes of whole SET commands with 1 KiB values.
// Writing it repeatedly is a valid stream: every copy starts on a command boundary.
func forwardStream() []byte {
	val := make([]byte, forwardValueSize)
	for i := range val {
		val[i] = 'a' + byte(i%26)
	}
	b := make([]byte, 0, forwardChunk)
	for i := 0; ; i++ {
		key := fmt.Sprintf("key:%08d", i)
		cmd := fmt.Appendf(nil, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, len(val))
		cmd = append(append(cmd, val...), "\r\n"...)
		if len(b)+len(cmd) > forwardChunk {
			return b
		}
		b = append(b, cmd...)
	}
}

// forwardMeasure is one run's figures over the streaming window.
type forwardMeasure struct {
	elapsed time.Duration
	written int64         // stream bytes the upstream wrote
	paced   time.Duration // time the upstream waited for the slowest sink
	sinks   []int64       // stream bytes each sink received
	// The proxy's CPU time and INFO byte counters over the window (zero for the relay).
	cpu           float64
	netIn, netOut int64
	// self is this process's CPU time over the window: the upstream and the sinks (and the
	// relay), for telling where the machine's cores went.
	self float64
	// busy is CPU seconds used machine-wide over the window, by every process: beside cpu
	// and self it shows whether the cores were saturated, and whether anything else ran.
	busy float64
}

func (m forwardMeasure) secs() float64 { return m.elapsed.Seconds() }

func (m forwardMeasure) aggregate() int64 {
	var n int64
	for _, s := range m.sinks {
		n += s
	}
	return n
}

func (m forwardMeasure) slowest() int64 {
	low := m.sinks[0]
	for _, s := range m.sinks[1:] {
		low = min(low, s)
	}
	return low
}

func runForward(e *env) error {
	window := 5 * time.Second
	if e.cfg.quick {
		window = time.Second
	}
	stream := forwardStream()
	fanouts := []int{1, 8}
	var errs []error
	for rep := 0; rep < e.cfg.reps; rep++ {
		// The relay first, then the proxy, in every repetition, so that drift in the
		// machine's speed hits both alike.
		e.step("forward: relay, repetition %d of %d", rep+1, e.cfg.reps)
		var m forwardMeasure
		if err := e.try("forward-relay", func(r *run) { m = forwardRelayRun(r, stream, window) }); err != nil {
			errs = append(errs, fmt.Errorf("relay #%d: %w", rep, err))
		} else {
			// A relay feeds one sink; its figure is the ceiling reference for every case.
			rate := float64(m.aggregate()) / 1e6 / m.secs()
			for _, n := range fanouts {
				kase := "sinks=" + strconv.Itoa(n)
				e.record(result{"forward", kase, "relay", rep, "per_sink_MB_s", "MB/s", rate})
				e.record(result{"forward", kase, "relay", rep, "aggregate_MB_s", "MB/s", rate})
			}
		}
		for _, n := range fanouts {
			e.step("forward: proxy, %d sinks, repetition %d of %d", n, rep+1, e.cfg.reps)
			if err := e.try("forward-proxy", func(r *run) { m = forwardProxyRun(r, stream, window, n) }); err != nil {
				errs = append(errs, fmt.Errorf("proxy sinks=%d #%d: %w", n, rep, err))
				continue
			}
			kase := "sinks=" + strconv.Itoa(n)
			secs := m.secs()
			e.record(result{"forward", kase, "proxy", rep, "per_sink_MB_s", "MB/s", float64(m.aggregate()) / float64(n) / 1e6 / secs})
			e.record(result{"forward", kase, "proxy", rep, "aggregate_MB_s", "MB/s", float64(m.aggregate()) / 1e6 / secs})
			// The share of the window the upstream was held back for the slowest sink: 0 when
			// the proxy's ingest limits the rate, high when its forwarding (or the sinks) does.
			e.record(result{"forward", kase, "proxy", rep, "upstream_wait_pct", "%", 100 * m.paced.Seconds() / secs})
			if n > 1 {
				e.record(result{"forward", kase, "proxy", rep, "slowest_sink_MB_s", "MB/s", float64(m.slowest()) / 1e6 / secs})
			}
			if m.netOut > 0 {
				e.record(result{"forward", kase, "proxy", rep, "cpu_s_per_GB", "s/GB", m.cpu / (float64(m.netOut) / 1e9)})
			}
		}
	}
	forwardGoals(e)
	return errors.Join(errs...)
}

// forwardGoals evaluates the two forwarding targets from the medians.
func forwardGoals(e *env) {
	share := fmt.Sprintf("%d cores shared by upstream, proxy and sinks, so this is the whole loopback pipeline's ceiling; the relay's io.Copy is splice(2), no user-space copy", runtime.NumCPU())
	proxy1, ok1 := e.median("forward", "sinks=1", "proxy", "per_sink_MB_s")
	relay1, ok2 := e.median("forward", "sinks=1", "relay", "per_sink_MB_s")
	if ok1 && ok2 && relay1 > 0 {
		ratio := proxy1 / relay1
		e.addGoal(goal{
			Name:     "forward: bytes/s vs a plain io.Copy relay (1 sink)",
			Target:   ">= 0.66x",
			Measured: fmt.Sprintf("%.2fx (proxy %.0f MB/s, relay %.0f MB/s; %s)", ratio, proxy1, relay1, share),
			Met:      ratio >= 0.66,
		})
	}
	agg1, ok1 := e.median("forward", "sinks=1", "proxy", "aggregate_MB_s")
	agg8, ok2 := e.median("forward", "sinks=8", "proxy", "aggregate_MB_s")
	if ok1 && ok2 && agg1 > 0 {
		cpu1, _ := e.median("forward", "sinks=1", "proxy", "cpu_s_per_GB")
		cpu8, _ := e.median("forward", "sinks=8", "proxy", "cpu_s_per_GB")
		ratio := agg8 / agg1
		// Per-replica copies of the stream would show as aggregate throughput falling and CPU
		// per byte written rising with the replica count; a shared backlog keeps both flat.
		e.addGoal(goal{
			Name:   "forward: fan-out to 8 sinks without per-replica copies",
			Target: "8-sink aggregate >= 1-sink, CPU per GB written not higher",
			Measured: fmt.Sprintf("aggregate %.2fx (%.0f vs %.0f MB/s), CPU %.2f vs %.2f s/GB; %d cores time-shared by 8 sinks and 8 proxy writers, so each sink gets about 1/8",
				ratio, agg8, agg1, cpu8, cpu1, runtime.NumCPU()),
			Met: ratio >= 1 && (cpu1 == 0 || cpu8 <= cpu1),
		})
	}
}

// forwardProxyRun streams through a psync-proxy to n sinks for the window.
func forwardProxyRun(r *run, stream []byte, window time.Duration, n int) forwardMeasure {
	up := forwardListen(r)
	defer up.close()
	// startProxyProc returns once the proxy's link is up, which is after the full sync: the
	// upstream has already handed over the connection to stream on.
	p := startProxyProc(r, up.addr())
	conn := up.next(r)
	sinks := forwardSinks(r, p.addr(), n)
	defer sinks.close()

	info := func() (in, out int64) {
		m, err := p.info("stats")
		if err != nil {
			r.Fatalf("proxy INFO stats: %v", err)
		}
		in, _ = strconv.ParseInt(m["total_net_repl_input_bytes"], 10, 64)
		out, _ = strconv.ParseInt(m["total_net_repl_output_bytes"], 10, 64)
		return in, out
	}
	in0, out0 := info()
	cpu0 := p.cpuSeconds()
	m := forwardPump(r, conn, stream, window, sinks)
	m.cpu = p.cpuSeconds() - cpu0
	in1, out1 := info()
	m.netIn, m.netOut = in1-in0, out1-out0
	sinks.check(r)
	r.Logf("proxy, %d sinks: upstream wrote %d MB in %.2fs (%.0f%% of it waiting for the slowest sink), proxy read %d MB, wrote %d MB, CPU %.2fs; upstream+sinks CPU %.2fs; machine busy %.2fs; sinks received %v MB",
		n, m.written/1e6, m.secs(), 100*m.paced.Seconds()/m.secs(), m.netIn/1e6, m.netOut/1e6, m.cpu, m.self, m.busy, forwardMB(m.sinks))
	return m
}

// forwardRelayRun streams through a plain io.Copy relay to one sink for the window.
func forwardRelayRun(r *run, stream []byte, window time.Duration) forwardMeasure {
	up := forwardListen(r)
	defer up.close()
	relay := forwardStartRelay(r, up.addr())
	defer relay.close()
	// The sink's handshake goes through the relay to the upstream, like the proxy's does.
	sinks := forwardSinks(r, relay.addr(), 1)
	defer sinks.close()
	conn := up.next(r)
	m := forwardPump(r, conn, stream, window, sinks)
	sinks.check(r)
	r.Logf("relay: upstream wrote %d MB in %.2fs; upstream+relay+sink CPU %.2fs; machine busy %.2fs; sink received %v MB",
		m.written/1e6, m.secs(), m.self, m.busy, forwardMB(m.sinks))
	return m
}

func forwardMB(ns []int64) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n / 1e6
	}
	return out
}

// forwardPump writes the stream on conn as fast as it is taken for the window, never more
// than forwardLagCap ahead of the slowest sink, and reads each sink's count at the end of it.
func forwardPump(r *run, conn net.Conn, stream []byte, window time.Duration, sinks *forwardSinkSet) forwardMeasure {
	before := sinks.counts()
	self0, busy0 := forwardSelfCPU(), forwardBusyCPU()
	start := time.Now()
	end := start.Add(window)
	timer := time.NewTimer(window)
	defer timer.Stop()
	// The deadline ends a write blocked on a full socket exactly at the window's end.
	conn.SetWriteDeadline(end)
	var m forwardMeasure
	for time.Now().Before(end) {
		if m.written-sinks.slowest(before) > forwardLagCap {
			t := time.Now()
			select {
			case <-sinks.progress:
			case <-timer.C:
			}
			m.paced += time.Since(t)
			continue
		}
		n, err := conn.Write(stream)
		m.written += int64(n)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			r.Fatalf("upstream write: %v", err)
		}
	}
	after := sinks.counts()
	m.elapsed = time.Since(start)
	m.self, m.busy = forwardSelfCPU()-self0, forwardBusyCPU()-busy0
	m.sinks = make([]int64, len(after))
	for i := range after {
		m.sinks[i] = after[i] - before[i]
	}
	return m
}

// forwardSelfCPU is this process's user+system CPU seconds so far.
func forwardSelfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// forwardBusyCPU is the CPU seconds all cores have spent not idle since boot, from /proc/stat.
func forwardBusyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue // idle, iowait
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100 // USER_HZ
}

// forwardUpstream is the synthetic master: it answers any replica's handshake and PSYNC with a
// full sync of an empty dataset, then hands the connection over to be streamed on.
type forwardUpstream struct {
	ln     net.Listener
	synced chan net.Conn // connections that got the RDB, in order
	done   chan struct{} // closed by close
	conns  forwardConns
	wg     sync.WaitGroup
}

func forwardListen(r *run) *forwardUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.Fatalf("upstream listen: %v", err)
	}
	u := &forwardUpstream{ln: ln, synced: make(chan net.Conn, 1), done: make(chan struct{})}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil || !u.conns.add(c) {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				u.serve(c)
			}()
		}
	}()
	return u
}

func (u *forwardUpstream) addr() string { return u.ln.Addr().String() }

// close stops accepting, closes every connection and waits for every goroutine.
func (u *forwardUpstream) close() {
	close(u.done)
	u.ln.Close()
	u.conns.closeAll()
	u.wg.Wait()
}

// forwardConns is a set of connections to close at the end, including any registered after.
type forwardConns struct {
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

// add registers c; once closeAll has run it closes c instead and reports false.
func (s *forwardConns) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.conns = append(s.conns, c)
	return true
}

func (s *forwardConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
}

// next waits for a connection that has been fully synced.
func (u *forwardUpstream) next(r *run) net.Conn {
	select {
	case c := <-u.synced:
		return c
	case <-time.After(forwardTimeout):
		r.Fatalf("upstream: no replica completed a full sync within %v", forwardTimeout)
		return nil
	}
}

// serve answers one replica's handshake, then only reads (the proxy's REPLCONF ACKs) so that
// they never fill the socket.
func (u *forwardUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		args, err := forwardReadCommand(br)
		if err != nil {
			return
		}
		switch strings.ToUpper(args[0]) {
		case "PING":
			_, err = io.WriteString(c, "+PONG\r\n")
		case "PSYNC", "SYNC":
			head := "+FULLRESYNC " + forwardReplid + " 0\r\n"
			if _, err = c.Write(append([]byte(head), forwardRDB()...)); err != nil {
				return
			}
			select {
			case u.synced <- c:
			case <-u.done:
				return
			}
			io.Copy(io.Discard, br)
			return
		default:
			_, err = io.WriteString(c, "+OK\r\n")
		}
		if err != nil {
			return
		}
	}
}

// forwardReadCommand reads one multibulk command. It is only for handshakes: small, trusted.
func forwardReadCommand(br *bufio.Reader) ([]string, error) {
	line, err := forwardLine(br)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[0] != '*' {
		return nil, fmt.Errorf("expected a multibulk command, got %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 1 || n > 64 {
		return nil, fmt.Errorf("bad multibulk length %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := forwardLine(br)
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimPrefix(line, "$"))
		if line == "" || line[0] != '$' || err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bad bulk length %q", line)
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:size])
	}
	return args, nil
}

// forwardLine reads one line without its line ending, skipping bare newlines: the keep-alives
// a master (and the proxy) sends before the PSYNC reply and the payload.
func forwardLine(br *bufio.Reader) (string, error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			return line, nil
		}
	}
}

// forwardRelay is the baseline: it joins one client to the upstream with io.Copy both ways,
// without looking at the bytes.
type forwardRelay struct {
	ln    net.Listener
	conns forwardConns
	wg    sync.WaitGroup
}

func forwardStartRelay(r *run, upstream string) *forwardRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.Fatalf("relay listen: %v", err)
	}
	x := &forwardRelay{ln: ln}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		down, err := ln.Accept()
		if err != nil || !x.conns.add(down) {
			return
		}
		up, err := net.DialTimeout("tcp", upstream, forwardTimeout)
		if err != nil {
			down.Close()
			return
		}
		if !x.conns.add(up) {
			return
		}
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			io.Copy(up, down)
		}()
		// *net.TCPConn to *net.TCPConn: io.Copy uses splice(2) on Linux.
		io.Copy(down, up)
	}()
	return x
}

func (x *forwardRelay) addr() string { return x.ln.Addr().String() }

func (x *forwardRelay) close() {
	x.ln.Close()
	x.conns.closeAll()
	x.wg.Wait()
}

// forwardSinkSet is n replicas that full-sync and then read and discard the stream, counting.
type forwardSinkSet struct {
	sinks    []*forwardSink
	progress chan struct{} // a token after each read, for the pacing upstream
	wg       sync.WaitGroup
}

type forwardSink struct {
	conn  net.Conn
	n     atomic.Int64  // stream bytes received after the RDB
	ended chan struct{} // closed when the read loop stops
	err   error         // why it stopped; read after ended
}

// forwardSinks connects n sinks to addr, each through its full sync, and starts their read
// loops. The stream has not started yet, so every sink sees it from its first byte.
func forwardSinks(r *run, addr string, n int) *forwardSinkSet {
	set := &forwardSinkSet{progress: make(chan struct{}, 1)}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, forwardTimeout)
		if err != nil {
			set.close()
			r.Fatalf("sink %d: dial %s: %v", i, addr, err)
		}
		s := &forwardSink{conn: c, ended: make(chan struct{})}
		set.sinks = append(set.sinks, s)
		br, err := forwardSinkSync(c)
		if err != nil {
			set.close()
			r.Fatalf("sink %d: %v", i, err)
		}
		set.wg.Add(1)
		go func() {
			defer set.wg.Done()
			defer close(s.ended)
			buf := make([]byte, forwardReadSize)
			for {
				// br's buffer is empty and buf is as large as it, so these reads go
				// straight to the socket.
				k, err := br.Read(buf)
				s.n.Add(int64(k))
				select {
				case set.progress <- struct{}{}:
				default: // a token is already waiting; the upstream reads every count
				}
				if err != nil {
					s.err = err
					return
				}
			}
		}()
	}
	return set
}

// forwardSinkSync does a replica's side of a full sync, up to the end of the RDB.
func forwardSinkSync(c net.Conn) (*bufio.Reader, error) {
	c.SetDeadline(time.Now().Add(forwardTimeout))
	defer c.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(c, forwardReadSize)
	if _, err := io.WriteString(c, "*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n"); err != nil {
		return nil, err
	}
	// Read the reply before PSYNC: a master refuses PSYNC with replies pending.
	if line, err := forwardLine(br); err != nil || line != "+OK" {
		return nil, fmt.Errorf("REPLCONF capa: %q %v", line, err)
	}
	if _, err := io.WriteString(c, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"); err != nil {
		return nil, err
	}
	line, err := forwardLine(br)
	if err != nil || !strings.HasPrefix(line, "+FULLRESYNC ") {
		return nil, fmt.Errorf("PSYNC reply: %q %v", line, err)
	}
	line, err = forwardLine(br)
	if err != nil {
		return nil, fmt.Errorf("RDB payload header: %v", err)
	}
	size, perr := strconv.ParseInt(strings.TrimPrefix(line, "$"), 10, 64)
	if line[0] != '$' || perr != nil || size < 0 {
		// The proxy and the synthetic upstream both use length framing, never $EOF:.
		return nil, fmt.Errorf("RDB payload header %q", line)
	}
	if _, err := io.CopyN(io.Discard, br, size); err != nil {
		return nil, fmt.Errorf("RDB payload: %v", err)
	}
	return br, nil
}

// counts reads every sink's byte count.
func (set *forwardSinkSet) counts() []int64 {
	out := make([]int64, len(set.sinks))
	for i, s := range set.sinks {
		out[i] = s.n.Load()
	}
	return out
}

// slowest is the smallest count since before.
func (set *forwardSinkSet) slowest(before []int64) int64 {
	low := int64(-1)
	for i, s := range set.sinks {
		if n := s.n.Load() - before[i]; low < 0 || n < low {
			low = n
		}
	}
	return low
}

// check fails the run if a sink stopped before close: the proxy dropped it (it fell behind
// the backlog, or timed out), so its count covers less than the window.
func (set *forwardSinkSet) check(r *run) {
	for i, s := range set.sinks {
		select {
		case <-s.ended:
			r.Fatalf("sink %d stopped during the window after %d bytes: %v", i, s.n.Load(), s.err)
		default:
		}
	}
}

// close closes every sink and waits for their read loops.
func (set *forwardSinkSet) close() {
	for _, s := range set.sinks {
		s.conn.Close()
	}
	set.wg.Wait()
}
