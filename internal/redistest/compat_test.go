package redistest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// flavor is one server release the harness runs.
type flavor struct {
	name    string // Debian's, or a CompatBinary name
	start   func(t *testing.T, args ...string) *redistest.Server
	family  redistest.Flavor
	version string
}

func flavors() []flavor {
	compat := func(name string) func(*testing.T, ...string) *redistest.Server {
		return func(t *testing.T, args ...string) *redistest.Server { return redistest.StartCompat(t, name, args...) }
	}
	return []flavor{
		{"debian", func(t *testing.T, args ...string) *redistest.Server { return redistest.Start(t, args...) },
			redistest.FlavorRedis, "7.0."},
		{redistest.Redis88, compat(redistest.Redis88), redistest.FlavorRedis, "8.8.0"},
		{redistest.Valkey90, compat(redistest.Valkey90), redistest.FlavorValkey, "9.0.4"},
	}
}

// fillTypes writes a key of each common type, a hash with a field TTL on
// the servers that have one, and a stream.
func fillTypes(t *testing.T, s *redistest.Server) {
	t.Helper()
	s.MustDo(t, "SET", "str", "v")
	s.MustDo(t, "RPUSH", "list", "a", "b", "c")
	s.MustDo(t, "SADD", "set", "1", "2", "x")
	s.MustDo(t, "ZADD", "zset", "1.5", "a", "2", "b")
	s.MustDo(t, "HSET", "hash", "f1", "v1", "f2", "v2")
	s.MustDo(t, "XADD", "stream", "*", "field", "value")
	if !strings.HasPrefix(s.Version(), "7.") {
		s.MustDo(t, "HEXPIRE", "hash", "3600", "FIELDS", "1", "f1")
	}
	s.MustDo(t, "SELECT", "3") // the replication stream selects db 3 too
	s.MustDo(t, "SET", "in-db-3", "x")
	s.MustDo(t, "SELECT", "0")
}

// TestCompatReplication runs a master and a replica of each flavor, with
// diskless and disk-based full syncs, replicating directly, and compares
// their DEBUG DIGEST before and after more writes. It also checks that the
// Redis-worded log phrases match each flavor's log.
func TestCompatReplication(t *testing.T) {
	t.Parallel()
	for _, f := range flavors() {
		for _, diskless := range []string{"yes", "no"} {
			t.Run(f.name+"/diskless="+diskless, func(t *testing.T) {
				t.Parallel()
				master := f.start(t, "--repl-diskless-sync", diskless, "--repl-backlog-size", "16mb")
				if master.Flavor() != f.family || !strings.HasPrefix(master.Version(), f.version) {
					t.Fatalf("master is %s %s, want %s %s", master.Flavor(), master.Version(), f.family, f.version)
				}
				fillTypes(t, master)
				replica := f.start(t)
				replica.ReplicaOf(t, master.Addr())
				redistest.WaitOnline(t, replica, 20*time.Second)
				d1 := redistest.WaitInSync(t, 20*time.Second, master, replica)
				redistest.WriteBytes(t, master, 1<<20)
				if d2 := redistest.WaitInSync(t, 20*time.Second, master, replica); d2 == d1 || d1 == emptyDigest {
					t.Fatalf("digests %s then %s", d1, d2)
				}
				checkSyncLogs(t, master, replica, diskless == "yes")
			})
		}
	}
}

// checkSyncLogs checks the log lines of one full sync through CountLog,
// with phrases in Redis's words, and that Valkey's logs hold only the
// rewritten form. A Redis 8 replica of a diskless Redis 8 master syncs over
// an rdb channel: it never logs "Full resync from master" but "Starting to
// receive RDB and replication stream in parallel".
func checkSyncLogs(t *testing.T, master, replica *redistest.Server, diskless bool) {
	t.Helper()
	replica.WaitLog(t, "MASTER <-> REPLICA sync: Finished with success", 1, 10*time.Second)
	rdbChannel := 0
	if diskless && replica.Flavor() == redistest.FlavorRedis && !strings.HasPrefix(replica.Version(), "7.") {
		rdbChannel = 1
	}
	for _, c := range []struct {
		s      *redistest.Server
		phrase string
		want   int
	}{
		{replica, "MASTER <-> REPLICA sync started", 1},
		{replica, "Connecting to MASTER", 1},
		{replica, "Full resync from master", 1 - rdbChannel},
		{replica, "Starting to receive RDB and replication stream in parallel", rdbChannel},
		{master, "Synchronization with replica", 1},
	} {
		if n := c.s.CountLog(t, c.phrase); n != c.want {
			t.Errorf("%s %s: %d lines with %q (%q), want %d", c.s.Flavor(), c.s.Addr(), n, c.phrase, c.s.LogPhrase(c.phrase), c.want)
		}
	}
	if replica.Flavor() == redistest.FlavorValkey {
		log := replica.Log(t)
		if strings.Contains(log, "MASTER <-> REPLICA") || !strings.Contains(log, "PRIMARY <-> REPLICA sync: Finished with success") {
			t.Errorf("valkey replica log is not worded as expected:\n%s", log)
		}
	}
}

// TestCompatPartialResyncAfterRestart: a replica saves its RDB on shutdown,
// misses writes, restarts from it and continues with a partial resync,
// directly from its master, on each compat flavor (the reference for the
// same scenario through the proxy).
func TestCompatPartialResyncAfterRestart(t *testing.T) {
	t.Parallel()
	for _, f := range flavors()[1:] { // Debian's: TestReplicaRestartAndBenchmark
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			master := f.start(t, "--repl-backlog-size", "16mb")
			fillTypes(t, master)
			replica := f.start(t)
			replica.ReplicaOf(t, master.Addr())
			redistest.WaitOnline(t, replica, 20*time.Second)
			redistest.WriteBytes(t, master, 1<<20)
			d1 := redistest.WaitInSync(t, 20*time.Second, master, replica)

			replica.ShutdownSave(t)
			redistest.WriteBytes(t, master, 256<<10)
			replica.Restart(t)
			redistest.WaitOnline(t, replica, 20*time.Second)
			if d2 := redistest.WaitInSync(t, 20*time.Second, master, replica); d2 == d1 {
				t.Fatal("digest unchanged by the writes made while the replica was down")
			}
			for _, c := range []struct {
				s      *redistest.Server
				phrase string
				want   int
			}{
				{replica, "MASTER <-> REPLICA sync: Finished with success", 1}, // full syncs only
				{replica, "Master accepted a Partial Resynchronization", 1},
				{master, "Partial resynchronization request", 1},
				{master, "Synchronization with replica", 1},
			} {
				if n := c.s.CountLog(t, c.phrase); n != c.want {
					t.Errorf("%s: %d lines with %q (%q), want %d", c.s.Addr(), n, c.phrase, c.s.LogPhrase(c.phrase), c.want)
				}
			}
			if t.Failed() {
				t.Logf("replica log:\n%s\nmaster log:\n%s", replica.Log(t), master.Log(t))
			}
		})
	}
}

func TestLogPhrase(t *testing.T) {
	t.Parallel()
	valkey := redistest.StartCompat(t, redistest.Valkey90)
	redis := redistest.Start(t)
	for in, want := range map[string]string{
		"MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization": "PRIMARY <-> REPLICA sync: Primary accepted a Partial Resynchronization",
		"Connection with master lost":                                          "Connection with primary lost",
		"Unable to AUTH to MASTER":                                             "Unable to AUTH to PRIMARY",
		"mastership, remastered":                                               "mastership, remastered",
		"Ready to accept connections":                                          "Ready to accept connections",
		"Discarding previously cached":                                         "Discarding previously cached",
	} {
		if got := valkey.LogPhrase(in); got != want {
			t.Errorf("valkey LogPhrase(%q) = %q, want %q", in, got, want)
		}
		if got := redis.LogPhrase(in); got != in {
			t.Errorf("redis LogPhrase(%q) = %q", in, got)
		}
	}
	if n := valkey.CountLogAny(t, "no such line", "Ready to accept connections"); n != 1 {
		t.Errorf("CountLogAny = %d, want 1", n)
	}
}

// TestCompatBuildFails: a build.sh that fails (here: no such archive) fails
// the test with its message.
func TestCompatBuildFails(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.CompatBinary(ft, "redis-0.0.0")
	}()
	<-done
	if !strings.Contains(ft.fatal, "failed") || !strings.Contains(ft.fatal, "no redis-0.0.0.tar.gz") {
		t.Fatalf("fatal %q", ft.fatal)
	}
}
