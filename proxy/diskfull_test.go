//go:build linux

package proxy_test

import (
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// mountTmpfs mounts a tmpfs of size on a fresh directory, unmounted at cleanup (register
// what uses it after this call, so that it is stopped first); it skips the test where
// mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFullProxy is issue 13's full disk through the whole proxy: disk mode with a 1 GB
// backlog asked on a 96 MB tmpfs, which also holds the snapshot (10 MB of random values,
// which do not compress), and 400 MB written. The backlog shrinks to what the disk holds and
// replication never stops: the replicas equal the master after every 50 MB. Snapshot
// refreshes on the full disk make room by giving up backlog before their offset. A replica
// restarted afterwards resumes with a partial resync from what is left.
func TestDiskFullProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 400 MB")
	}
	dir := mountTmpfs(t, "96m")
	m := redistest.Start(t, "--repl-backlog-size", "1mb")
	fillRandom(t, m, 10000)
	log, logs := observedLogger(t)
	p := startProxy(t, m, proxy.Config{Dir: dir, BacklogMode: proxy.BacklogDisk, BacklogSize: 1 << 30, Logger: log,
		SnapshotRefreshMinInterval: 10 * time.Second})
	r1 := redistest.Start(t, p.replicaArgs()...)
	r2 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r1, syncTimeout)
	redistest.WaitOnline(t, r2, syncTimeout)

	started := time.Now()
	const round = 5000 // SETs of 10,000 bytes: about 50 MB of stream
	for i := range 8 {
		redistest.Benchmark(t, m, "-t", "set", "-r", "2000", "-d", "10000", "-n", strconv.Itoa(round), "-P", "16")
		redistest.WaitInSync(t, syncTimeout, m, r1, r2)
		b := p.info("backlog")
		t.Logf("after %d MB: master offset %s, backlog %s bytes in %s segments, disk full %s times, effective size %s",
			(i+1)*50, m.Info(t, "replication")["master_repl_offset"], b["backlog_disk_bytes"], b["backlog_segments"],
			b["backlog_disk_full_events"], b["backlog_effective_size"])
	}
	t.Logf("400 MB through the proxy in %v", time.Since(started).Round(time.Second))
	b := p.info("backlog")
	if atoi64(b["backlog_disk_full_events"]) == 0 || atoi64(b["backlog_effective_size"]) > 96<<20 {
		t.Errorf("INFO backlog after 400 MB on a 96 MB disk: %v", b)
	}
	if logs.FilterMessageSnippet("Disk full").Len() == 0 {
		t.Error("no disk-full warning logged")
	}

	partial := p.stat("sync_partial_ok")
	r1.ShutdownSave(t)
	redistest.Benchmark(t, m, "-t", "set", "-r", "2000", "-d", "10000", "-n", "500", "-P", "16") // 5 MB
	r1.Restart(t)
	redistest.WaitInSync(t, syncTimeout, m, r1, r2)
	if n := r1.CountLog(t, "Master accepted a Partial Resynchronization"); n != 1 {
		t.Errorf("the restarted replica resumed partially %d times, want 1", n)
	}
	if got := p.stat("sync_partial_ok"); got != partial+1 {
		t.Errorf("proxy sync_partial_ok %d, want %d", got, partial+1)
	}
	if n := r1.CountLog(t, "MASTER <-> REPLICA sync: Finished with success"); n != 1 {
		t.Errorf("the restarted replica full-synced %d times, want 1 (its first)", n)
	}

	// A new replica needs a snapshot of the last 50 MB or so: refreshes write it on the full
	// disk (auto, or for this replica), the backlog giving up what lies before its offset.
	r3 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r3, syncTimeout)
	redistest.WaitInSync(t, syncTimeout, m, r1, r2, r3)
	s := p.info("snapshot")
	t.Logf("snapshot: %s bytes, refreshes %s, failures %s; master forks %d; %d warnings of a full disk while writing a snapshot",
		s["snapshot_size"], s["snapshot_refreshes"], s["snapshot_refresh_failures"], stat(t, m, "total_forks"),
		logs.FilterMessageSnippet("Disk full while writing a snapshot").Len())
	if atoi64(s["snapshot_refreshes"]) < 1 || s["snapshot_last_refresh_status"] != "ok" ||
		logs.FilterMessageSnippet("Disk full while writing a snapshot").Len() == 0 {
		t.Errorf("INFO snapshot after the new replica's sync: %v", s)
	}
}
