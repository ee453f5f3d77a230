package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// loadRandom writes keys SETs of size-byte random values (incompressible, so the RDB is as
// large as the data) on its own pipelined connection.
func loadRandom(t *testing.T, m *redistest.Server, prefix string, keys, size int) {
	t.Helper()
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(keys))
	pool := make([]byte, 1<<20)
	rand.NewChaCha8(seed).Read(pool)
	c := redistest.Dial(t, m.Addr())
	defer c.Close()
	const batch = 256
	var buf []byte
	for i := 0; i < keys; i += batch {
		n := min(batch, keys-i)
		buf = buf[:0]
		for j := i; j < i+n; j++ {
			off := (j * 4099) % (len(pool) - size)
			key := prefix + strconv.Itoa(j)
			buf = append(buf, "*3\r\n$3\r\nSET\r\n$"...)
			buf = strconv.AppendInt(buf, int64(len(key)), 10)
			buf = append(buf, "\r\n"+key+"\r\n$"...)
			buf = strconv.AppendInt(buf, int64(size), 10)
			buf = append(buf, "\r\n"...)
			buf = append(buf, pool[off:off+size]...)
			buf = append(buf, "\r\n"...)
		}
		if err := c.SendRaw(buf); err != nil {
			t.Fatalf("load: %v", err)
		}
		for range n {
			if v, err := c.ReadValue(); err != nil || v.String() != "OK" {
				t.Fatalf("load: SET replied %q, %v", v.String(), err)
			}
		}
	}
}

// TestStormFromCache: after the proxy's own initial sync, 6 replicas full-sync at once and a
// 7th joins after 40 MB more writes. The master never forks again and every digest is equal.
func TestStormFromCache(t *testing.T) {
	m := redistest.Start(t)
	loadRandom(t, m, "storm:", 8000, 1024)
	p := startProxy(t, m, proxy.Config{BacklogSize: 128 << 20})
	forks, fulls := stat(t, m, "total_forks"), stat(t, m, "sync_full")

	var rs []*redistest.Server
	for range 6 {
		rs = append(rs, redistest.Start(t))
	}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { r.ReplicaOf(t, p.Addr()) })
	}
	wg.Wait()
	redistest.WaitInSync(t, syncTimeout, m, rs...)

	redistest.WriteBytes(t, m, 40<<20)
	r7 := redistest.Start(t, p.replicaArgs()...)
	rs = append(rs, r7)
	redistest.WaitInSync(t, syncTimeout, m, rs...)

	if got := stat(t, m, "total_forks"); got != forks {
		t.Errorf("master total_forks went from %d to %d", forks, got)
	}
	if got := stat(t, m, "sync_full"); got != fulls {
		t.Errorf("master sync_full went from %d to %d", fulls, got)
	}
	if got := p.stat("sync_full"); got != 7 {
		t.Errorf("proxy sync_full = %d, want 7", got)
	}
	if got := p.info("snapshot")["full_syncs_served"]; got != "7" {
		t.Errorf("proxy full_syncs_served = %s, want 7", got)
	}
}

// TestSnapshotRefreshOnDemand: the proxy's backlog wraps past the byte after its snapshot under
// load; a new replica still gets a correct full sync, through exactly one refresh fetched on a
// second connection, while the main link and the replica already online are untouched.
func TestSnapshotRefreshOnDemand(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "64mb")
	p := startProxy(t, m, proxy.Config{BacklogSize: 2 << 20, SnapshotRefresh: proxy.RefreshOnDemand})
	r1 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitInSync(t, syncTimeout, m, r1)
	replid := p.info("replication")["master_replid"]
	oldOffset := p.info("snapshot")["snapshot_offset"]

	// Eight times the proxy's backlog, in steps the online replica keeps up with: were it to
	// fall behind the 2 MB backlog it would need a full sync itself, and ask for a refresh.
	for range 16 {
		redistest.WriteBytes(t, m, 1<<20)
		waitCaughtUp(t, m, r1)
	}
	redistest.WaitInSync(t, syncTimeout, m, r1)
	if st := p.info("snapshot")["snapshot_refreshes"]; st != "0" {
		t.Fatalf("on-demand policy refreshed without a replica asking: snapshot_refreshes=%s", st)
	}
	r2 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitInSync(t, syncTimeout, m, r1, r2)

	snap := p.info("snapshot")
	if snap["snapshot_refreshes"] != "1" || snap["snapshot_refresh_failures"] != "0" {
		t.Errorf("snapshot_refreshes=%s failures=%s, want 1 and 0", snap["snapshot_refreshes"], snap["snapshot_refresh_failures"])
	}
	if snap["snapshot_offset"] == oldOffset || snap["snapshot_state"] != "ready" {
		t.Errorf("snapshot offset %s (was %s), state %s", snap["snapshot_offset"], oldOffset, snap["snapshot_state"])
	}
	// One fork for the proxy's first sync, one for the refresh.
	if got := stat(t, m, "sync_full"); got != 2 {
		t.Errorf("master sync_full = %d, want 2", got)
	}
	if got := p.info("replication")["master_replid"]; got != replid {
		t.Errorf("the proxy's history changed (%s, was %s): the refresh touched the main link", got, replid)
	}
	if n := r1.CountLog(t, "MASTER <-> REPLICA sync: Finished with success"); n != 1 {
		t.Errorf("the replica online during the refresh synced %d times, want 1", n)
	}
}

// TestSnapshotRefreshAuto: with the auto policy the proxy refreshes before the backlog drops
// the byte after the snapshot, so a replica arriving later is served at once; the minimum
// interval keeps it to one refresh.
func TestSnapshotRefreshAuto(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "64mb")
	p := startProxy(t, m, proxy.Config{BacklogSize: 8 << 20, SnapshotRefreshMinInterval: time.Hour})
	r1 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitInSync(t, syncTimeout, m, r1)

	redistest.WriteBytes(t, m, 7<<20) // room left: 1 MiB, under the 2 MiB default margin
	redistest.Eventually(t, syncTimeout, func() error {
		if s := p.info("snapshot"); s["snapshot_refreshes"] != "1" || s["snapshot_state"] != "ready" {
			return errString("snapshot_refreshes=" + s["snapshot_refreshes"] + " state=" + s["snapshot_state"])
		}
		return nil
	})
	r2 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitInSync(t, syncTimeout, m, r1, r2)
	if got := p.info("snapshot")["snapshot_refreshes"]; got != "1" {
		t.Errorf("snapshot_refreshes = %s, want 1 (min interval one hour)", got)
	}
	if got := stat(t, m, "sync_full"); got != 2 {
		t.Errorf("master sync_full = %d, want 2", got)
	}
}

// flipByte changes one byte in the middle of a file in place.
func flipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	at := fi.Size() / 2
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptSnapshotNeverServed flips a byte of the snapshot file, once while the proxy runs
// and once while it is stopped: either way the proxy detects it, discards the snapshot, never
// sends it, and serves replicas from a fresh one.
func TestCorruptSnapshotNeverServed(t *testing.T) {
	m := redistest.Start(t)
	loadRandom(t, m, "c:", 2000, 1024)
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20})
	path := filepath.Join(p.cfg.Dir, "snapshot.rdb")

	flipByte(t, path)
	r1 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitInSync(t, syncTimeout, m, r1)
	if got := p.info("snapshot")["snapshot_discarded"]; got != "1" {
		t.Errorf("snapshot_discarded = %s after a byte flip, want 1", got)
	}
	for _, bad := range []string{"Wrong RDB checksum", "Short read", "Failed trying to load"} {
		if r1.CountLog(t, bad) > 0 {
			t.Errorf("the replica saw a corrupt RDB: its log has %q", bad)
		}
	}

	p.stop()
	flipByte(t, path)
	full := stat(t, m, "sync_full")
	p.start(p.port)
	p.waitLinkUp()
	// The corrupt file was ignored at start, so the proxy had to full-sync upstream.
	if got := stat(t, m, "sync_full"); got != full+1 {
		t.Errorf("master sync_full = %d after restarting on a corrupt snapshot, want %d", got, full+1)
	}
	r2 := redistest.Start(t, p.replicaArgs()...)
	m.MustDo(t, "SET", "after", "restart")
	redistest.WaitInSync(t, syncTimeout, m, r1, r2)
}

// TestFullSyncAdmission: with --max-concurrent-full-syncs 1 and a rate limit, three replicas
// asking at once are served one at a time, the others waiting (kept alive), all ending equal.
func TestFullSyncAdmission(t *testing.T) {
	m := redistest.Start(t)
	loadRandom(t, m, "a:", 3000, 1024) // about 3 MB of snapshot
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20, MaxConcurrentFullSyncs: 1, FullSyncRateLimit: 4 << 20})
	size, _ := strconv.ParseInt(p.info("snapshot")["snapshot_size"], 10, 64)
	var rs []*redistest.Server
	for range 3 {
		rs = append(rs, redistest.Start(t))
	}
	start := time.Now()
	for _, r := range rs {
		r.ReplicaOf(t, p.Addr())
	}
	maxActive, maxWaiting := 0, 0
	redistest.Eventually(t, syncTimeout, func() error {
		s := p.info("snapshot")
		a, _ := strconv.Atoi(s["full_syncs_in_progress"])
		w, _ := strconv.Atoi(s["full_syncs_waiting"])
		maxActive, maxWaiting = max(maxActive, a), max(maxWaiting, w)
		// Done once every replica has its snapshot: sync_full counts a sync when it is
		// granted, a moment before it shows in progress, so it cannot tell the end.
		for _, r := range rs {
			if r.Info(t, "replication")["master_link_status"] != "up" {
				return errString("full syncs still running")
			}
		}
		return nil
	})
	elapsed := time.Since(start)
	redistest.WaitInSync(t, syncTimeout, m, rs...)
	if maxActive > 1 {
		t.Errorf("%d full syncs at once, the limit is 1", maxActive)
	}
	if maxWaiting < 1 {
		t.Errorf("no full sync was seen waiting for its turn")
	}
	// Three snapshots one after the other at 4 MB/s each.
	if want := time.Duration(float64(3*size) / float64(4<<20) * float64(time.Second) * 0.8); elapsed < want {
		t.Errorf("3 full syncs of %d bytes took %v, less than the rate limit allows (%v)", size, elapsed, want)
	}
}

// TestMemoryBounded runs the proxy binary against a master whose dataset is several times
// larger than the proxy's backlog plus 64 MB, serves two full syncs, and checks the proxy's
// peak RSS stays below its backlog in use plus 64 MB: the snapshot goes disk to socket.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a 300 MB dataset")
	}
	const backlog = 16 << 20
	bin := buildProxyBinary(t, false)
	m := redistest.Start(t)
	loadRandom(t, m, "big:", 300_000, 1024)
	port := redistest.FreePort(t)
	cmd := exec.Command(bin, "--master", m.Addr(), "--listen", "127.0.0.1:"+strconv.Itoa(port),
		"--dir", t.TempDir(), "--backlog-size", strconv.Itoa(backlog), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var rs []*redistest.Server
	for range 2 {
		rs = append(rs, redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(port)))
	}
	redistest.WriteBytes(t, m, 12<<20) // fill most of the backlog while they sync
	// WaitInSync's DEBUG DIGEST on a dataset this large blocks the master for seconds at a
	// time, starving its diskless transfer: wait for the links first.
	for _, r := range rs {
		redistest.WaitOnline(t, r, 3*time.Minute)
	}
	redistest.WaitInSync(t, 3*time.Minute, m, rs...)

	c := redistest.Dial(t, addr)
	defer c.Close()
	v, err := c.Do("INFO", "replication")
	if err != nil {
		t.Fatal(err)
	}
	histlen, _ := strconv.ParseInt(redistest.ParseInfo(v.String())["repl_backlog_histlen"], 10, 64)
	used := stat(t, m, "used_memory_dataset")
	peak := vmHWM(t, cmd.Process.Pid)
	t.Logf("master dataset %d MB, proxy backlog in use %d MB, proxy peak RSS %d MB", used>>20, histlen>>20, peak>>20)
	if limit := histlen + 64<<20; peak > limit {
		t.Errorf("proxy peak RSS %d MB > backlog in use %d MB + 64 MB", peak>>20, histlen>>20)
	}
	if used < 4*(histlen+64<<20) {
		t.Errorf("the dataset (%d MB) is not several times the bound; the test proves nothing", used>>20)
	}
}

// vmHWM returns a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestPassThrough: replicas waiting for the proxy's first snapshot receive it while it still
// streams in from the master (here paced to 4 MB/s): a stock replica (capa eof) through the
// proxy's own EOF mark, a raw client without capa eof only once its length is known. Both end
// with the bytes of the final snapshot, and the master forks once.
func TestPassThrough(t *testing.T) {
	for _, diskless := range []string{"yes", "no"} {
		t.Run("diskless-"+diskless, func(t *testing.T) { testPassThrough(t, diskless) })
	}
}

// testPassThrough runs TestPassThrough against a master sending its RDB EOF-marked (diskless
// yes) or with its length (diskless no).
func testPassThrough(t *testing.T, diskless string) {
	m := redistest.Start(t, "--repl-diskless-sync", diskless)
	loadRandom(t, m, "p:", 8000, 1024) // about 8 MB: two seconds through the forwarder
	f := startThrottledForwarder(t, m.Addr(), 4<<20)
	p := startProxyAddr(t, proxy.Config{MasterAddr: f.ln.Addr().String(), BacklogSize: 64 << 20})

	noEOF := redistest.Dial(t, p.Addr())
	defer noEOF.Close()
	noEOF.SetTimeout(time.Minute)
	if _, err := noEOF.Do("REPLCONF", "capa", "psync2"); err != nil {
		t.Fatal(err)
	}
	noEOF.Send("PSYNC", "?", "-1")

	withEOF := redistest.Dial(t, p.Addr())
	defer withEOF.Close()
	withEOF.SetTimeout(time.Minute)
	if _, err := withEOF.Do("REPLCONF", "capa", "eof", "capa", "psync2"); err != nil {
		t.Fatal(err)
	}
	withEOF.Send("PSYNC", "?", "-1")

	r := redistest.Start(t, p.replicaArgs()...)
	// Writes during the transfer: the stream must not follow the EOF mark in the same read.
	stop := redistest.BenchmarkAsync(t, m, "-c", "1", "-n", "100000000", "-t", "set", "-r", "1000")
	seen := false
	redistest.Eventually(t, syncTimeout, func() error {
		state := p.info("snapshot")["snapshot_state"]
		ri := r.Info(t, "replication")
		if ri["master_sync_in_progress"] == "1" && ri["master_sync_read_bytes"] != "0" && state == "receiving" {
			seen = true
		}
		if state != "ready" {
			return errString("snapshot " + state)
		}
		return nil
	})
	if !seen {
		t.Error("the replica did not receive the snapshot while the proxy was still receiving it")
	}
	redistest.WaitOnline(t, r, syncTimeout)
	stop()
	redistest.WaitInSync(t, syncTimeout, m, r)
	// One sync, streamed at once: a replica that missed the EOF mark would have timed out and
	// synced again.
	if n := r.CountLog(t, "MASTER <-> REPLICA sync: Finished with success"); n != 1 {
		t.Errorf("the replica synced %d times, want 1", n)
	}
	if n := r.CountLog(t, "Timeout receiving bulk data"); n != 0 {
		t.Errorf("the replica timed out receiving the snapshot %d times", n)
	}

	// The client without capa eof got newlines, then a length-framed copy of the snapshot.
	line := noEOF.MustReadLineSkippingNewlines(t)
	if !strings.HasPrefix(line, "+FULLRESYNC ") {
		t.Fatalf("got %q, want +FULLRESYNC", line)
	}
	hdr := noEOF.MustReadLineSkippingNewlines(t)
	n, err := strconv.Atoi(strings.TrimPrefix(hdr, "$"))
	if err != nil {
		t.Fatalf("payload header %q: %v", hdr, err)
	}
	got, err := noEOF.ReadFull(n)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(p.cfg.Dir, "snapshot.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("the client without capa eof got %d bytes that are not the snapshot (%d bytes)", len(got), len(want))
	}
	if diskless == "yes" {
		checkEOFPassThrough(t, withEOF, want)
	}
	if got := stat(t, m, "sync_full"); got != 1 {
		t.Errorf("master sync_full = %d, want 1", got)
	}
}

// checkEOFPassThrough reads an EOF-marked full sync on c (a raw client with capa eof) and
// checks the payload is want, and that nothing follows the mark before the client's first
// REPLCONF ACK: a replica finds the mark only at the end of a read, so stream bytes in the
// same read would hide it.
func checkEOFPassThrough(t *testing.T, c *redistest.Client, want []byte) {
	t.Helper()
	if line := c.MustReadLineSkippingNewlines(t); !strings.HasPrefix(line, "+FULLRESYNC ") {
		t.Fatalf("got %q, want +FULLRESYNC", line)
	}
	hdr := c.MustReadLineSkippingNewlines(t)
	mark, ok := strings.CutPrefix(hdr, "$EOF:")
	if !ok || len(mark) != 40 {
		t.Fatalf("payload header %q, want $EOF:<40 bytes>", hdr)
	}
	got, err := c.ReadFull(len(want) + len(mark))
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:len(want)]) != string(want) || string(got[len(want):]) != mark {
		t.Fatalf("EOF-marked payload is not the snapshot followed by its mark")
	}
	c.SetTimeout(500 * time.Millisecond)
	if b, err := c.ReadFull(1); err == nil {
		t.Fatalf("byte %q followed the EOF mark before any REPLCONF ACK", b)
	}
	c.SetTimeout(time.Minute)
	if err := c.Send("REPLCONF", "ACK", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFull(1); err != nil {
		t.Fatalf("no stream after the first ACK: %v", err)
	}
}

// TestPassThroughCut cuts the master link in the middle of the first snapshot while a replica
// follows it: the replica never gets a whole (truncated) RDB to load, and both end equal once
// the proxy has fetched the snapshot again.
func TestPassThroughCut(t *testing.T) {
	m := redistest.Start(t)
	loadRandom(t, m, "cut:", 8000, 1024)
	f := startThrottledForwarder(t, m.Addr(), 4<<20)
	p := startProxyAddr(t, proxy.Config{MasterAddr: f.ln.Addr().String(), BacklogSize: 64 << 20})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.Eventually(t, syncTimeout, func() error {
		if n, _ := strconv.Atoi(r.Info(t, "replication")["master_sync_read_bytes"]); n < 1<<20 {
			return errString("the replica has not received 1 MB of the snapshot yet")
		}
		return nil
	})
	f.retarget(m.Addr()) // cuts the transfer; the proxy reconnects through the forwarder
	redistest.WaitInSync(t, syncTimeout, m, r)
	if got := stat(t, m, "sync_full"); got != 2 {
		t.Errorf("master sync_full = %d, want 2 (the cut transfer and its retry)", got)
	}
	for _, bad := range []string{"Wrong RDB checksum", "Failed trying to load", "Short read"} {
		if r.CountLog(t, bad) > 0 {
			t.Errorf("the replica loaded a cut snapshot: its log has %q", bad)
		}
	}
}

// waitCaughtUp waits until replica's offset reaches the master's (no digest: cheap to poll).
func waitCaughtUp(t *testing.T, m, replica *redistest.Server) {
	t.Helper()
	want, _ := strconv.ParseInt(m.Info(t, "replication")["master_repl_offset"], 10, 64)
	redistest.Eventually(t, syncTimeout, func() error {
		got, _ := strconv.ParseInt(replica.Info(t, "replication")["slave_repl_offset"], 10, 64)
		if got < want {
			return fmt.Errorf("replica at %d, master at %d", got, want)
		}
		return nil
	})
}

// A replica loading an EOF-marked snapshot sends only newlines until it is done, however long
// that takes. They count as traffic, as for Redis: the proxy waits for its first REPLCONF ACK
// past repl-timeout (here 2 s) as long as they come, and then streams.
func TestPassThroughSlowLoad(t *testing.T) {
	m := redistest.Start(t, "--repl-diskless-sync", "yes")
	loadRandom(t, m, "slow:", 2000, 1024)
	f := startThrottledForwarder(t, m.Addr(), 4<<20)
	p := startProxyAddr(t, proxy.Config{MasterAddr: f.ln.Addr().String(), ReplTimeout: 2 * time.Second})
	c := redistest.Dial(t, p.Addr())
	defer c.Close()
	c.SetTimeout(time.Minute)
	if _, err := c.Do("REPLCONF", "capa", "eof", "capa", "psync2"); err != nil {
		t.Fatal(err)
	}
	c.Send("PSYNC", "?", "-1")
	if line := c.MustReadLineSkippingNewlines(t); !strings.HasPrefix(line, "+FULLRESYNC ") {
		t.Fatalf("got %q, want +FULLRESYNC", line)
	}
	mark, ok := strings.CutPrefix(c.MustReadLineSkippingNewlines(t), "$EOF:")
	if !ok {
		t.Fatal("not an EOF-marked payload")
	}
	var got []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(got, []byte(mark)) {
		n, err := c.Reader().Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes of the payload: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	// "Loading" for three times repl-timeout, with a newline every half second.
	for range 12 {
		time.Sleep(500 * time.Millisecond)
		if err := c.SendRaw([]byte("\n")); err != nil {
			t.Fatalf("the proxy dropped the loading replica: %v", err)
		}
	}
	if err := c.Send("REPLCONF", "ACK", "0"); err != nil {
		t.Fatal(err)
	}
	m.MustDo(t, "SET", "after", "load")
	if _, err := c.ReadFull(1); err != nil {
		t.Fatalf("no stream after the first ACK that followed a long load: %v", err)
	}
}
