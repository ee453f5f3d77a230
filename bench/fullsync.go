package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// The fullsync scenario measures how fast a full sync is served from the proxy's cached
// snapshot, against a plain sendfile copy of the same file (what the send path could be at
// best) and against the master's own disk-based full sync of the same dataset.
//
// The reader is a raw PSYNC client that reads the RDB into a 1 MiB buffer and discards it,
// not a real replica: a replica parses the RDB and builds the dataset as it reads, far slower
// than any of the three senders, so its speed would be the loading's, not the send path's.
// The same reader code reads all three, so their ratios compare the senders alone.

const (
	// fullSyncTransfers is how many times per repetition the proxy and the sendfile copy
	// each serve the snapshot, alternately: each transfer takes a fraction of a second.
	fullSyncTransfers = 5
	fullSyncReadSize  = 1 << 20
	fullSyncTimeout   = 2 * time.Minute
	// fullSyncGoal is the target, proxy over sendfile.
	fullSyncGoal = 0.9
)

// runFullSync loads the master, attaches a proxy (its own full sync caches the snapshot),
// then, in each repetition, reads the snapshot fullSyncTransfers times through a sendfile
// copy and through the proxy, alternately, and once through a full sync from the master.
func runFullSync(e *env) error {
	keys := 300_000 // 1 KiB random values: about 310 MB of RDB
	if e.cfg.quick {
		keys = 30_000
	}
	kase := fmt.Sprintf("%dk keys x 1 KiB", keys/1000)
	err := e.try("fullsync", func(r *run) { fullSyncRun(e, r, kase, keys) })
	fullSyncGoalRow(e, kase)
	return err
}

func fullSyncRun(e *env, r *run, kase string, keys int) {
	// Disk-based full syncs: the master forks, saves the RDB to its disk, then sends the file.
	master := redistest.Start(r, "--repl-diskless-sync", "no")
	r.Cleanup(func() { os.Remove(filepath.Join(master.Dir, "dump.rdb")) })
	e.step("fullsync: loading %d keys", keys)
	stormLoad(r, master, keys)
	e.step("fullsync: the proxy's first sync")
	proxy := startProxyProc(r, master.Addr())
	r.Cleanup(func() { os.RemoveAll(filepath.Join(proxy.dir, "data")) })
	redistest.Eventually(r, fullSyncTimeout, func() error {
		m, err := proxy.info("snapshot")
		if err != nil {
			return err
		}
		if n, _ := strconv.ParseInt(m["snapshot_size"], 10, 64); n <= 0 {
			return fmt.Errorf("proxy: no snapshot yet (%s)", m["snapshot_state"])
		}
		return nil
	})
	snapshot := filepath.Join(proxy.dir, "data", "snapshot.rdb")
	copier := startFileServer(r, snapshot)

	psync := []byte("*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n")
	for rep := 0; rep < e.cfg.reps; rep++ {
		measure := func(topology, addr string, req []byte, fullResync bool) {
			e.step("fullsync: %s, repetition %d of %d", topology, rep+1, e.cfg.reps)
			t, err := fullSyncRead(addr, req, fullResync)
			if err != nil {
				r.Fatalf("fullsync %s: %v", topology, err)
			}
			rec := func(metric, unit string, v float64) {
				e.record(result{Scenario: "fullsync", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
			}
			rec("MB_s", "MB/s", float64(t.size)/1e6/t.total.Seconds())
			rec("transfer_MB_s", "MB/s", float64(t.size)/1e6/t.transfer.Seconds())
			rec("first_byte_ms", "ms", float64(t.firstByte.Microseconds())/1000)
			rec("rdb_MB", "MB", float64(t.size)/1e6)
		}
		for range fullSyncTransfers {
			measure("sendfile", copier, []byte("SEND\r\n"), false)
			if e.selected("proxy") {
				measure("proxy", proxy.addr(), psync, true)
			}
		}
		if e.selected("direct") {
			measure("direct", master.Addr(), psync, true)
		}
	}
}

// fullSyncTiming is what the reader saw of one full sync.
type fullSyncTiming struct {
	size int64 // payload bytes
	// From the request's write: to the payload's header (the $<len> line), to its last byte.
	firstByte, total time.Duration
	transfer         time.Duration // from the header to the last byte
}

// fullSyncRead sends req on a new connection to addr, then reads what a replica reads of a
// full sync: keepalive newlines (the master sends them while it saves), +FULLRESYNC when
// fullResync, the $<len> line, and len bytes of payload, which it discards.
func fullSyncRead(addr string, req []byte, fullResync bool) (fullSyncTiming, error) {
	var t fullSyncTiming
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return t, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(fullSyncTimeout))
	br := bufio.NewReaderSize(c, 64<<10)
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		return t, fmt.Errorf("request: %w", err)
	}
	if fullResync {
		line, err := fullSyncLine(br)
		if err != nil || !strings.HasPrefix(line, "+FULLRESYNC ") {
			return t, fmt.Errorf("PSYNC reply %q: %v", line, err)
		}
	}
	line, err := fullSyncLine(br)
	if err != nil || !strings.HasPrefix(line, "$") {
		return t, fmt.Errorf("payload header %q: %v", line, err)
	}
	if t.size, err = strconv.ParseInt(line[1:], 10, 64); err != nil || t.size <= 0 {
		return t, fmt.Errorf("payload header %q: not a length (EOF-marked payloads are not asked for)", line)
	}
	header := time.Now()
	t.firstByte = header.Sub(start)
	// With a buffer larger than its own, bufio hands out what it holds, then reads the
	// socket straight into buf.
	buf := make([]byte, fullSyncReadSize)
	for got := int64(0); got < t.size; {
		n, err := br.Read(buf[:min(int64(len(buf)), t.size-got)])
		got += int64(n)
		if err != nil {
			return t, fmt.Errorf("payload: %d of %d bytes: %w", got, t.size, err)
		}
	}
	end := time.Now()
	t.total, t.transfer = end.Sub(start), end.Sub(header)
	return t, nil
}

// fullSyncLine reads one CRLF line, skipping the bare newlines a master sends as keepalives
// before the payload.
func fullSyncLine(br *bufio.Reader) (string, error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return line, err
		}
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			return line, nil
		}
	}
}

// fileServerEnv, set to a file's path, makes the bench binary the baseline sender instead
// (serveFileMain): a process of its own, as the proxy is, so that neither sender shares a Go
// runtime with the reader.
const fileServerEnv = "PSYNC_BENCH_SENDFILE"

// startFileServer runs this binary again as the baseline sender of path and returns the
// address it listens on, read from its first line of output. For each connection the sender
// reads one request line, then writes $<size>\r\n and the file with io.Copy from an
// *os.File to a *net.TCPConn, which Go does with sendfile(2). It opens the file for each
// request, as the proxy does.
func startFileServer(r *run, path string) string {
	bin, err := os.Executable()
	if err != nil {
		r.Fatalf("file server: %v", err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fileServerEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.Fatalf("file server: %v", err)
	}
	if err := cmd.Start(); err != nil {
		r.Fatalf("file server: %v", err)
	}
	r.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		r.Fatalf("file server: no address: %v", err)
	}
	return strings.TrimSpace(line)
}

// serveFileMain is the baseline sender's main: it prints its address, then answers one
// connection at a time (the reader never asks twice at once) until it is killed.
func serveFileMain(path string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench file server:", err)
		return 1
	}
	fmt.Println(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench file server:", err)
			return 1
		}
		if err := sendFile(c.(*net.TCPConn), path); err != nil {
			fmt.Fprintln(os.Stderr, "bench file server:", err)
		}
		c.Close()
	}
}

func sendFile(c *net.TCPConn, path string) error {
	c.SetDeadline(time.Now().Add(fullSyncTimeout))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(c, "$%d\r\n", fi.Size()); err != nil {
		return err
	}
	n, err := io.Copy(c, f)
	if err == nil && n != fi.Size() {
		err = errors.New("short copy")
	}
	return err
}

// fullSyncGoalRow states the target: a full sync from the snapshot at least 0.9x
// as fast as a plain sendfile copy of the same file, with the master's own for reference.
func fullSyncGoalRow(e *env, kase string) {
	g := goal{Name: "fullsync: bytes/s of a full sync from the proxy's snapshot",
		Target: fmt.Sprintf(">= %.1fx a sendfile copy of the same file (request to last byte)", fullSyncGoal), Measured: "no result"}
	p, okp := e.median("fullsync", kase, "proxy", "MB_s")
	s, oks := e.median("fullsync", kase, "sendfile", "MB_s")
	if okp && oks && s > 0 {
		g.Measured = fmt.Sprintf("%.2fx (proxy %.0f MB/s, sendfile %.0f MB/s)", p/s, p, s)
		g.Met = p/s >= fullSyncGoal
		if d, ok := e.median("fullsync", kase, "direct", "MB_s"); ok && d > 0 {
			dt, _ := e.median("fullsync", kase, "direct", "transfer_MB_s")
			g.Measured += fmt.Sprintf("; the master's disk-based full sync %.0f MB/s from PSYNC to the last byte (%.0f MB/s once its RDB was saved), so the proxy's is %.1fx", d, dt, p/d)
		}
	}
	e.addGoal(g)
}
