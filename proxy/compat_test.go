package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// compatFlavor is one server release run as master and replicas around the proxy.
type compatFlavor struct {
	name  string
	start func(t *testing.T, args ...string) *redistest.Server
	args  []string // for master and replicas alike
	// replica2 lists extra arguments of the second replica: Redis 8 replicas that load
	// diskless announce rdb-no-compress and rdb-no-checksum.
	replica2 []string
	// announce is the proxy's --announce-replica-version: a Valkey master takes it, a Redis
	// master refuses it, which the proxy ignores.
	announce string
}

func compatFlavors() []compatFlavor {
	compat := func(name string) func(*testing.T, ...string) *redistest.Server {
		return func(t *testing.T, args ...string) *redistest.Server { return redistest.StartCompat(t, name, args...) }
	}
	debian := func(t *testing.T, args ...string) *redistest.Server { return redistest.Start(t, args...) }
	return []compatFlavor{
		{name: "redis-7.0", start: debian},
		{name: "redis-8.8", start: compat(redistest.Redis88), replica2: []string{"--repl-diskless-load", "swapdb"},
			announce: "8.8.0"},
		{name: "valkey-9.0/dual-channel=yes", start: compat(redistest.Valkey90),
			args: []string{"--dual-channel-replication-enabled", "yes"}, replica2: []string{"--repl-diskless-load", "swapdb"}},
		{name: "valkey-9.0/dual-channel=no", start: compat(redistest.Valkey90),
			args: []string{"--dual-channel-replication-enabled", "no"}, announce: "9.0.4"},
	}
}

// compatData writes a key of each type, and on servers that have them a hash with a field
// TTL (whose RDB encoding Redis 8 and Valkey 9 number differently) and a second DB.
func compatData(t *testing.T, m *redistest.Server) {
	t.Helper()
	for _, cmd := range [][]string{{"SET", "str", "v"}, {"RPUSH", "list", "a", "b"}, {"SADD", "set", "x"},
		{"ZADD", "zset", "1", "a"}, {"HSET", "hash", "f1", "v1", "f2", "v2"}, {"XADD", "stream", "*", "f", "v"},
		{"SELECT", "3"}, {"SET", "in-db-3", "x"}, {"SELECT", "0"}} {
		m.MustDo(t, cmd...)
	}
	if !strings.HasPrefix(m.Version(), "7.") {
		m.MustDo(t, "HEXPIRE", "hash", "3600", "FIELDS", "1", "f1")
	}
}

// TestCompatThroughProxy runs the core scenarios with master and replicas of Debian's Redis
// 7.0, Redis 8.8.0 and Valkey 9.0.4 (replicas with dual-channel replication on and off):
// full syncs through the proxy, single-channel whatever the replicas offer; a replica
// restarted while the master writes 20 times its 1mb backlog resumes with a partial resync
// from the proxy; digests equal; the master forks for the proxy alone.
func TestCompatThroughProxy(t *testing.T) {
	for _, f := range compatFlavors() {
		t.Run(f.name, func(t *testing.T) {
			started := time.Now()
			m := f.start(t, append([]string{"--repl-backlog-size", "1mb"}, f.args...)...)
			// Big enough that no auto refresh comes within the test's 25 MB or so.
			p := startProxy(t, m, proxy.Config{BacklogSize: 256 << 20, AnnounceReplicaVersion: f.announce})
			compatData(t, m)
			redistest.WriteBytes(t, m, 1<<20)
			r1 := f.start(t, append(append([]string{"--repl-backlog-size", "1mb"}, f.args...), p.replicaArgs()...)...)
			r2 := f.start(t, append(append(append([]string{"--repl-backlog-size", "1mb"}, f.args...), f.replica2...), p.replicaArgs()...)...)
			redistest.WaitOnline(t, r1, syncTimeout)
			redistest.WaitOnline(t, r2, syncTimeout)
			redistest.WriteBytes(t, m, 1<<20)
			d1 := redistest.WaitInSync(t, syncTimeout, m, r1, r2)
			for _, r := range []*redistest.Server{r1, r2} {
				checkLogCount(t, r, "MASTER <-> REPLICA sync: Finished with success", 1)
				checkLogCount(t, r, "Full resync from master", 1) // single-channel: no rdb channel
			}

			partial := p.stat("sync_partial_ok")
			r1.ShutdownSave(t)
			redistest.WriteBytes(t, m, 20<<20)
			// At most 20,000 SETs (about 11 MB), so the test's size is bounded.
			stop := redistest.BenchmarkAsync(t, m, "-t", "set", "-r", "10000", "-d", "512", "-n", "20000")
			r1.Restart(t)
			redistest.WaitOnline(t, r1, syncTimeout)
			time.Sleep(200 * time.Millisecond) // the replica streams while the master writes
			stop()
			if d2 := redistest.WaitInSync(t, syncTimeout, m, r1, r2); d2 == d1 {
				t.Error("digest unchanged by the writes")
			}
			checkLogCount(t, r1, "MASTER <-> REPLICA sync: Finished with success", 1) // no second full sync
			checkLogCount(t, r1, "Master accepted a Partial Resynchronization", 1)
			if got := p.stat("sync_partial_ok"); got != partial+1 {
				t.Errorf("proxy sync_partial_ok %d, want %d", got, partial+1)
			}
			if got := stat(t, m, "sync_full"); got != 1 {
				t.Errorf("master sync_full %d, want 1 (the proxy's own)", got)
			}
			t.Logf("%s %s: done in %v", m.Flavor(), m.Version(), time.Since(started).Round(time.Millisecond))
		})
	}
}

// checkLogCount checks how many lines of s's log hold phrase, in Redis's words (Valkey's
// "primary" wording matches too).
func checkLogCount(t *testing.T, s *redistest.Server, phrase string, want int) {
	t.Helper()
	if n := s.CountLog(t, phrase); n != want {
		t.Errorf("%s %s %s: %d log lines with %q, want %d", s.Flavor(), s.Version(), s.Addr(), n, s.LogPhrase(phrase), want)
	}
}
