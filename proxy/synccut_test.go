//go:build linux

package proxy_test

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// fillRandom writes n keys of 1 KiB random values (an RDB that does not compress).
func fillRandom(t *testing.T, m *redistest.Server, n int) {
	t.Helper()
	c := redistest.Dial(t, m.Addr())
	defer c.Close()
	v := make([]byte, 1024)
	rng := rand.NewChaCha8([32]byte{13})
	for i := range n {
		rng.Read(v)
		c.Send("SET", "fill:"+strconv.Itoa(i), string(v))
	}
	for range n {
		if _, err := c.ReadValue(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncCutBackoff: every RDB transfer from the master is cut after 200 KB for 60 s
// (Toxiproxy's limit_data). The proxy backs off (1 s, 2 s, 4 s, ... up to the min-interval,
// 30 s here), so the master forks a handful of times, not the dozens the link's own 100 ms
// to 5 s reconnect backoff would cost; INFO says why. Once the link heals the proxy syncs and
// serves the replica that waited meanwhile.
func TestSyncCutBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts the master link for 60 s")
	}
	m := redistest.Start(t)
	fillRandom(t, m, 2000) // a 2 MB RDB
	forks0 := stat(t, m, "total_forks")
	lk := newFaultNet(t).link(t, "master", m.Addr())
	lk.addToxic("limit_data", map[string]any{"bytes": 200 << 10})
	log, logs := observedLogger(t)
	p := startProxyAddr(t, proxy.Config{MasterAddr: lk.addr, Logger: log, SnapshotRefreshMinInterval: 30 * time.Second})
	r := redistest.Start(t, p.replicaArgs()...)

	time.Sleep(60 * time.Second)
	info := p.info("replication")
	forks := stat(t, m, "total_forks") - forks0
	t.Logf("after 60 s of cut transfers: the master forked %d times; master_sync_failures:%s master_sync_next_attempt_in_seconds:%s master_sync_last_error:%s",
		forks, info["master_sync_failures"], info["master_sync_next_attempt_in_seconds"], info["master_sync_last_error"])
	if forks < 3 || forks > 8 {
		t.Errorf("the master forked %d times in 60 s of cut transfers, want a handful (3 to 8)", forks)
	}
	if n := atoi64(info["master_sync_failures"]); n < 3 || n > forks {
		t.Errorf("master_sync_failures:%d with %d forks", n, forks)
	}
	if info["master_sync_last_error"] == "" || info["master_link_status"] != "down" {
		t.Errorf("INFO replication during the cut: %v", info)
	}
	if n := logs.FilterMessageSnippet("MASTER <-> REPLICA sync failed, next attempt in 16s").Len(); n != 1 {
		t.Errorf("%d log lines announcing a 16 s wait, want 1", n)
	}

	lk.removeToxic("limit_data")
	healed := time.Now()
	p.waitLinkUp()
	redistest.WaitInSync(t, syncTimeout, m, r)
	t.Logf("synced %v after the link healed; the master forked %d times in all", time.Since(healed).Round(time.Second),
		stat(t, m, "total_forks")-forks0)
	info = p.info("replication")
	if info["master_sync_last_error"] != "" || info["master_sync_next_attempt_in_seconds"] != "0" {
		t.Errorf("INFO replication after the sync: %v", info)
	}
	if n := r.CountLog(t, "MASTER <-> REPLICA sync: Finished with success"); n != 1 {
		t.Errorf("the replica synced %d times, want 1", n)
	}
}
