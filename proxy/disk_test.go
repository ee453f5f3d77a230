package proxy_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// checkResumed checks that neither the master nor the replica did a second full sync: the
// proxy resumed upstream with a partial resync and answered the replica with +CONTINUE.
func checkResumed(t *testing.T, m, r *redistest.Server, partialBefore int64) {
	t.Helper()
	if got := stat(t, m, "sync_full"); got != 1 {
		t.Errorf("master sync_full = %d after the proxy restart, want 1", got)
	}
	if got := stat(t, m, "sync_partial_ok"); got != partialBefore+1 {
		t.Errorf("master sync_partial_ok = %d, want %d", got, partialBefore+1)
	}
	if n := r.CountLog(t, "Full resync from master"); n != 1 {
		t.Errorf("the replica full-synced %d times, want 1", n)
	}
	if n := r.CountLog(t, "Master accepted a Partial Resynchronization"); n < 1 {
		t.Errorf("the replica never resumed with a partial resync")
	}
}

// TestDiskBacklogRestartResumes stops a disk-mode proxy under load and starts it again on the
// same --dir: it recovers its backlog and replication IDs, so the master sees a partial
// resync and the replica resumes with +CONTINUE from the recovered backlog.
func TestDiskBacklogRestartResumes(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "256mb")
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20, BacklogMode: proxy.BacklogDisk,
		BacklogFsync: backlog.FsyncEverySec, BacklogRAMTail: 1 << 20})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)

	stopLoad := redistest.BenchmarkAsync(t, m, "-l", "-c", "2", "-r", "10000", "-d", "64", "-t", "set,incr,lpush")
	time.Sleep(time.Second)
	p.stop()
	time.Sleep(500 * time.Millisecond) // the master's stream moves on meanwhile
	partial := stat(t, m, "sync_partial_ok")
	p.start(p.port)
	p.waitLinkUp()
	time.Sleep(time.Second)
	stopLoad()
	m.MustDo(t, "SET", "after", "restart")
	redistest.WaitInSync(t, syncTimeout, m, r)
	checkResumed(t, m, r, partial)

	info := p.info("backlog")
	if info["backlog_mode"] != "disk" || info["backlog_segments"] == "0" || info["backlog_last_fsync_error"] != "" ||
		info["backlog_oldest_age_seconds"] != "-1" { // the oldest segment was recovered: age unknown
		t.Errorf("INFO backlog = %v", info)
	}
}

// TestDiskBacklogKill9 is the crash variant: the proxy binary, with --backlog-fsync always,
// is killed with SIGKILL under load and restarted on the same --dir. Every byte it relayed
// was synced first, so the replica's offset is within the recovered backlog.
func TestDiskBacklogKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the proxy binary")
	}
	bin := buildProxyBinary(t, false)
	m := redistest.Start(t, "--repl-backlog-size", "256mb")
	dir, logPath := t.TempDir(), filepath.Join(t.TempDir(), "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	port := redistest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(bin, "--master", m.Addr(), "--listen", addr, "--dir", dir,
			"--backlog-mode", "disk", "--backlog-fsync", "always", "--backlog-size", "64mb", "--backlog-ram-tail", "1mb")
		cmd.Stderr = logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	start()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("proxy log:\n%s", b)
		}
	}()
	waitUp := func() {
		redistest.Eventually(t, syncTimeout, func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			c.Close()
			cl := redistest.Dial(t, addr)
			defer cl.Close()
			v, err := cl.Do("INFO", "replication")
			if err != nil {
				return err
			}
			if s := redistest.ParseInfo(v.String())["master_link_status"]; s != "up" {
				return errString("proxy master_link_status:" + s)
			}
			return nil
		})
	}
	waitUp()
	r := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(port))
	r2 := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(port))
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r, r2)

	stopLoad := redistest.BenchmarkAsync(t, m, "-l", "-c", "2", "-r", "10000", "-d", "64", "-t", "set,incr,lpush")
	time.Sleep(time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(500 * time.Millisecond)
	partial := stat(t, m, "sync_partial_ok")
	start()
	waitUp()
	time.Sleep(time.Second)
	stopLoad()
	m.MustDo(t, "SET", "after", "crash")
	redistest.WaitInSync(t, syncTimeout, m, r, r2)
	checkResumed(t, m, r, partial)
	checkResumed(t, m, r2, partial)
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "Recovered the disk backlog") {
		t.Errorf("the restarted proxy did not log its recovery")
	}
}

// TestDiskBacklogNewEpochSurvivesRestart: a master restarted empty starts a new history, which
// resets the disk backlog under the new ID; a proxy restart then resumes that history.
func TestDiskBacklogNewEpochSurvivesRestart(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "64mb")
	p := startProxy(t, m, proxy.Config{BacklogSize: 16 << 20, BacklogMode: proxy.BacklogDisk})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, r)

	m.Stop(t)
	m.Restart(t)
	redistest.Eventually(t, syncTimeout, func() error {
		if m.Info(t, "replication")["connected_slaves"] != "1" {
			return errString("the proxy is not attached to the restarted master yet")
		}
		return nil
	})
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, r)
	newID := m.Info(t, "replication")["master_replid"]

	p.stop()
	redistest.WriteBytes(t, m, 256<<10)
	full, partial := stat(t, m, "sync_full"), stat(t, m, "sync_partial_ok")
	p.start(p.port)
	p.waitLinkUp()
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)
	if got := stat(t, m, "sync_full"); got != full {
		t.Errorf("master sync_full = %d after the proxy restart, want %d", got, full)
	}
	if got := stat(t, m, "sync_partial_ok"); got != partial+1 {
		t.Errorf("master sync_partial_ok = %d, want %d", got, partial+1)
	}
	if got := p.info("replication")["master_replid"]; got != newID {
		t.Errorf("proxy replid %s after restart, master %s", got, newID)
	}
	if n := r.CountLog(t, "Full resync from master"); n != 2 {
		t.Errorf("the replica full-synced %d times, want 2 (first sync, new master history)", n)
	}
}

// TestDiskBacklogReplicaAhead: the proxy loses the newest bytes it had already sent (its
// newest segment is cut while it is stopped, as a power failure under --backlog-fsync
// everysec can do), so its replica is ahead of the recovered backlog. The proxy holds the
// replica's PSYNC until the master has re-delivered those bytes, then answers +CONTINUE: no
// full sync anywhere.
func TestDiskBacklogReplicaAhead(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "64mb")
	// The master is reached through a forwarder, so that the restarted proxy can be kept
	// from it until the replica has asked.
	f := startForwarder(t, m.Addr())
	p := startProxyVia(t, f.ln.Addr().String(), proxy.Config{BacklogSize: 64 << 20, BacklogMode: proxy.BacklogDisk,
		BacklogFsync: backlog.FsyncEverySec, BacklogRAMTail: 1 << 20})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)
	end, _ := strconv.ParseInt(p.info("replication")["master_repl_offset"], 10, 64)

	p.stop()
	segs, err := filepath.Glob(filepath.Join(p.cfg.Dir, "backlog", "*.data"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segment files: %v, %d found", err, len(segs))
	}
	if len(segs) == 0 {
		t.Fatal("no backlog segment on disk")
	}
	newest := segs[len(segs)-1] // names are zero-padded offsets: sorted
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newest, fi.Size()-1); err != nil { // cut the last record
		t.Fatal(err)
	}
	partial := stat(t, m, "sync_partial_ok")
	f.retarget("") // the master is unreachable for now
	p.start(p.port)
	if rec, _ := strconv.ParseInt(p.info("replication")["master_repl_offset"], 10, 64); rec >= end {
		t.Fatalf("recovered end %d, want below %d: the cut did not drop a record", rec, end)
	}
	// The replica asks for more than the proxy recovered: it is held, not answered.
	redistest.Eventually(t, syncTimeout, func() error {
		if s := p.info("replication")["slave0"]; !strings.Contains(s, "state=wait_bgsave") {
			return errString("replica not waiting yet: " + s)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // still held across keep-alive ticks
	if s := p.info("replication")["slave0"]; !strings.Contains(s, "state=wait_bgsave") {
		t.Fatalf("replica answered before the master re-delivered: %s", s)
	}
	f.retarget(m.Addr())
	p.waitLinkUp()
	m.MustDo(t, "SET", "after", "restart")
	redistest.WaitInSync(t, syncTimeout, m, r)
	checkResumed(t, m, r, partial)
}

// TestDiskBacklogLongOutage: a replica is down while 2 GB are written, behind a proxy with a
// 4 GB disk backlog and a 64 MB RAM tail. It comes back with a partial resync served from the
// segment files, and the proxy's peak RSS stays below the RAM tail plus 64 MB.
func TestDiskBacklogLongOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 GB")
	}
	const tail = 64 << 20
	bin := buildProxyBinary(t, false)
	m := redistest.Start(t)
	port := redistest.FreePort(t)
	cmd := exec.Command(bin, "--master", m.Addr(), "--listen", "127.0.0.1:"+strconv.Itoa(port), "--dir", t.TempDir(),
		"--backlog-mode", "disk", "--backlog-size", "4gb", "--backlog-ram-tail", strconv.Itoa(tail), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(port))
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)

	r.ShutdownSave(t)
	off0 := stat(t, m, "master_repl_offset")
	// About 2.1 GB of stream over a bounded keyspace (100k keys of 1 KiB).
	redistest.Benchmark(t, m, "-P", "16", "-d", "1024", "-r", "100000", "-n", "2100000", "-t", "set")
	written := stat(t, m, "master_repl_offset") - off0
	if written < 2<<30 {
		t.Fatalf("only %d MB written", written>>20)
	}
	r.Restart(t)
	redistest.WaitOnline(t, r, 3*time.Minute)
	redistest.WaitInSync(t, 3*time.Minute, m, r)
	if n := r.CountLog(t, "Full resync from master"); n != 1 {
		t.Errorf("the replica full-synced %d times, want 1 (the first)", n)
	}
	if n := r.CountLog(t, "Master accepted a Partial Resynchronization"); n != 1 {
		t.Errorf("the replica resumed with %d partial resyncs, want 1", n)
	}
	peak := vmHWM(t, cmd.Process.Pid)
	t.Logf("%d MB written during the outage; proxy peak RSS %d MB (RAM tail %d MB)", written>>20, peak>>20, tail>>20)
	if peak > tail+64<<20 {
		t.Errorf("proxy peak RSS %d MB > RAM tail %d MB + 64 MB", peak>>20, tail>>20)
	}
}

// TestDiskBacklogRetention: segments past --backlog-size are deleted, the first byte offset
// moves, and a replica behind it gets a full sync (with the right data), never wrong bytes.
func TestDiskBacklogRetention(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{BacklogSize: 8 << 20, BacklogMode: proxy.BacklogDisk,
		BacklogFsync: backlog.FsyncNo, BacklogRAMTail: 1 << 20})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)
	r.ShutdownSave(t)
	redistest.WriteBytes(t, m, 32<<20)
	want := stat(t, m, "master_repl_offset")
	redistest.Eventually(t, syncTimeout, func() error {
		if got, _ := strconv.ParseInt(p.info("replication")["master_repl_offset"], 10, 64); got < want {
			return errString("the proxy has not received all the writes yet")
		}
		return nil
	})

	info := p.info("replication")
	first, _ := strconv.ParseInt(info["repl_backlog_first_byte_offset"], 10, 64)
	histlen, _ := strconv.ParseInt(info["repl_backlog_histlen"], 10, 64)
	if first < 16<<20 || histlen > 8<<20 {
		t.Errorf("after 32 MB into an 8 MB disk backlog: first byte %d, histlen %d", first, histlen)
	}
	segs, err := filepath.Glob(filepath.Join(p.cfg.Dir, "backlog", "*.data"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segment files: %v, %d found", err, len(segs))
	}
	// 32 MB went through segments of 1 MB (an eighth of the size, backlog.segLimit): about 32
	// were written, and 8 full ones plus the active one at most are kept.
	if age, _ := strconv.Atoi(p.info("backlog")["backlog_oldest_age_seconds"]); age < 0 || age > 60 {
		t.Errorf("backlog_oldest_age_seconds = %d for segments written during the test", age)
	}
	if n, err := strconv.Atoi(p.info("backlog")["backlog_segments"]); err != nil || n == 0 || n > 9 || len(segs) > 9 {
		t.Errorf("%d segments in INFO, %d files: old segments were not deleted", n, len(segs))
	}
	full := p.stat("sync_full")
	r.Restart(t)
	m.MustDo(t, "SET", "after", "retention")
	redistest.WaitInSync(t, syncTimeout, m, r)
	if got := p.stat("sync_full"); got != full+1 {
		t.Errorf("proxy sync_full = %d, want %d: the replica behind the backlog must full-sync", got, full+1)
	}
}
