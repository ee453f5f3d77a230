package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// server is one release whose RDB files the tests check, and the header it
// writes.
type server struct {
	name   string // Debian's, or a redistest.CompatBinary name
	header string
	start  func(t *testing.T, args ...string) *redistest.Server
}

// servers: Debian's redis-server 7.0 and the reference servers built from
// ../shared/compat (skipped where build.sh is absent).
func servers() []server {
	compat := func(name string) func(*testing.T, ...string) *redistest.Server {
		return func(t *testing.T, args ...string) *redistest.Server { return redistest.StartCompat(t, name, args...) }
	}
	return []server{
		{"redis-7.0", "REDIS0010", func(t *testing.T, args ...string) *redistest.Server { return redistest.Start(t, args...) }},
		{redistest.Redis88, "REDIS0014", compat(redistest.Redis88)},
		{redistest.Valkey90, "VALKEY080", compat(redistest.Valkey90)},
	}
}

// hasFieldTTL reports whether s has hash field expiry (Redis 7.4+, Valkey 9+).
func hasFieldTTL(s *redistest.Server) bool { return !strings.HasPrefix(s.Version(), "7.") }

// fillRedis writes keys of every kind: small and large, compressible (the
// RDB holds them LZF-compressed) and random (stored raw), a stream, and on
// servers that have them hashes with field TTLs (a type Redis 8 and Valkey 9
// number differently). It ends with db 5 selected on s's connection.
func fillRedis(t *testing.T, s *redistest.Server) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	s.MustDo(t, "DEBUG", "POPULATE", "5000", "pop", "100")
	for i := range 3 {
		s.MustDo(t, "SET", fmt.Sprint("random:", i), string(random[i*1000:]))
	}
	s.MustDo(t, "SET", "repeated", strings.Repeat("psync-proxy ", 100000))
	s.MustDo(t, "SET", "int", "12345")
	s.MustDo(t, "SET", "big-int", "4000000000")
	s.MustDo(t, "RPUSH", "list", "a", "b", strings.Repeat("c", 5000))
	s.MustDo(t, "HSET", "hash", "f1", "v1", "f2", strings.Repeat("v", 300))
	s.MustDo(t, "SADD", "set", "1", "2", "3")
	s.MustDo(t, "ZADD", "zset", "1.5", "a", "2", "b")
	s.MustDo(t, "XADD", "stream", "*", "field", "value")
	s.MustDo(t, "XGROUP", "CREATE", "stream", "group", "0")
	if hasFieldTTL(s) {
		s.MustDo(t, "HSET", "hash-ttl", "f1", "v1", "f2", "v2", "f3", strings.Repeat("v", 300))
		s.MustDo(t, "HEXPIRE", "hash-ttl", "3600", "FIELDS", "2", "f1", "f3")
		s.MustDo(t, "HSETEX", "hash-setex", "EX", "3600", "FIELDS", "2", "a", "1", "b", "2")
	}
	s.MustDo(t, "SELECT", "5")
	s.MustDo(t, "SET", "in-db-5", "x")
}

// checkSaved runs SAVE on s and checks its dump.rdb, then returns the file.
func checkSaved(t *testing.T, s *redistest.Server, header string) (RDBInfo, []byte) {
	t.Helper()
	s.MustDo(t, "SAVE")
	path := filepath.Join(s.Dir, "dump.rdb")
	info, err := CheckRDBFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if info2, err := checkAllWays(t, data); err != nil || !reflect.DeepEqual(info, info2) {
		t.Fatalf("CheckRDBFile = %+v\nchecker     = %+v, %v", info, info2, err)
	}
	if info.Header() != header || string(data[:rdbHeaderLen]) != header || info.NewerVersion ||
		info.Valkey != (s.Flavor() == redistest.FlavorValkey) || info.ServerVersion != s.Version() || info.Size != int64(len(data)) {
		t.Fatalf("SAVE of %s %s %s: %+v", s.Flavor(), s.Version(), s.Addr(), info)
	}
	t.Logf("SAVE: %s, %d bytes, checksum %#016x, repl %v %q %d, stream db %d",
		info.Header(), info.Size, info.Checksum, info.HasRepl, info.ReplID, info.ReplOffset, info.ReplStreamDB)
	return info, data
}

// sampleFlipsAndCuts flips bytes and cuts the file at chosen and random
// places: header, aux fields, data, EOF opcode, trailer.
func sampleFlipsAndCuts(t *testing.T, data []byte) {
	t.Helper()
	n := len(data)
	rng := rand.New(rand.NewPCG(uint64(n), 9))
	at := []int{0, 4, 5, 8, 9, 10, 20, 100, n / 3, n / 2, n - 10, n - 9, n - 8, n - 5, n - 1}
	for range 20 {
		at = append(at, rng.IntN(n))
	}
	for _, i := range at {
		flipAt(t, data, i, byte(1+rng.IntN(255)))
	}
	for _, cut := range append(at, 1, n-9, n-8) {
		if _, err := checkChunks(t, data[:cut], uint64(cut), 1<<16); !errors.Is(err, ErrBadRDB) {
			t.Fatalf("first %d of %d bytes: error %v, want ErrBadRDB", cut, n, err)
		}
	}
}

// TestRDBCheckerServers checks RDB files written by real servers of each
// release: SAVE on a master, on its replica, with rdbchecksum no, and the
// file redis-cli --rdb receives.
func TestRDBCheckerServers(t *testing.T) {
	t.Parallel()
	for _, srv := range servers() {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			checkServerRDBs(t, srv)
		})
	}
}

func checkServerRDBs(t *testing.T, srv server) {
	master := srv.start(t)
	fillRedis(t, master)

	// A master that never had a replica has no backlog: no repl fields.
	info, data := checkSaved(t, master, srv.header)
	if !info.ChecksumOK || info.HasRepl || info.ReplID != "" || info.ReplStreamDB != -1 || len(data) < 3<<20 {
		t.Fatalf("master SAVE before any replica: %+v, %d bytes", info, len(data))
	}
	sampleFlipsAndCuts(t, data)

	checkCLIRDB(t, master, srv.header)

	// A replica's SAVE after a full sync carries the master's id and the
	// replica's offset. So does the master's, now that it has a backlog.
	replica := srv.start(t)
	replica.ReplicaOf(t, master.Addr())
	redistest.WaitOnline(t, replica, 20*time.Second)
	master.MustDo(t, "SET", "after-sync", "1") // in db 5: the stream selects it
	redistest.WaitInSync(t, 20*time.Second, master, replica)
	rinfo := replica.Info(t, "replication")
	info, data = checkSaved(t, replica, srv.header)
	after := replica.Info(t, "replication")
	if !info.ChecksumOK || !info.HasRepl || info.ReplID != rinfo["master_replid"] || info.ReplStreamDB != 5 ||
		info.ReplOffset < mustAtoi(t, rinfo["master_repl_offset"]) || info.ReplOffset > mustAtoi(t, after["master_repl_offset"]) {
		t.Fatalf("replica SAVE: %+v; INFO before %v, after %v", info, rinfo, after)
	}
	sampleFlipsAndCuts(t, data)

	before := master.Info(t, "replication")
	info, _ = checkSaved(t, master, srv.header)
	after = master.Info(t, "replication")
	if !info.ChecksumOK || !info.HasRepl || info.ReplID != before["master_replid"] || info.ReplStreamDB != 5 ||
		info.ReplOffset < mustAtoi(t, before["master_repl_offset"]) || info.ReplOffset > mustAtoi(t, after["master_repl_offset"]) {
		t.Fatalf("master SAVE with a replica: %+v; INFO before %v, after %v", info, before, after)
	}

	plain := srv.start(t, "--rdbchecksum", "no")
	plain.MustDo(t, "DEBUG", "POPULATE", "1000")
	info, _ = checkSaved(t, plain, srv.header)
	if info.Checksum != 0 || info.ChecksumOK {
		t.Fatalf("rdbchecksum no: %+v", info)
	}
}

// checkCLIRDB checks the RDB that redis-cli --rdb receives: it syncs as a
// replica (REPLCONF rdb-only), so the file has repl fields.
func checkCLIRDB(t *testing.T, master *redistest.Server, header string) {
	t.Helper()
	cliFile := filepath.Join(t.TempDir(), "cli.rdb")
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(master.Port), "--rdb", cliFile).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
	}
	minfo := master.Info(t, "replication")
	info, err := CheckRDBFile(cliFile)
	if err != nil {
		t.Fatal(err)
	}
	if info.Header() != header || !info.ChecksumOK || !info.HasRepl || info.ReplID != minfo["master_replid"] || info.ReplStreamDB != 0 ||
		info.ReplOffset < 0 || info.ReplOffset > mustAtoi(t, minfo["master_repl_offset"]) {
		t.Fatalf("redis-cli --rdb file: %+v; master %v", info, minfo)
	}
	t.Logf("redis-cli --rdb: %s, %d bytes, repl %q %d, stream db %d", info.Header(), info.Size, info.ReplID, info.ReplOffset, info.ReplStreamDB)
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestRDBCheckerPSYNC receives full syncs from each release as the proxy
// does (PSYNC, the payload header, CopyPayload into the checker beside a
// file) in both framings, and checks that the RDB's repl-id and repl-offset
// are those of +FULLRESYNC. The second sync comes after writes, so its
// offset is not 0.
func TestRDBCheckerPSYNC(t *testing.T) {
	t.Parallel()
	for _, srv := range servers() {
		for _, diskless := range []string{"no", "yes"} {
			t.Run(srv.name+"/diskless="+diskless, func(t *testing.T) {
				t.Parallel()
				master := srv.start(t, "--repl-diskless-sync", diskless)
				fillRedis(t, master)
				fullSync(t, master, srv.header, diskless == "yes")
				for i := range 100 {
					master.MustDo(t, "SET", fmt.Sprint("after:", i), "x")
				}
				if info := fullSync(t, master, srv.header, diskless == "yes"); info.ReplOffset == 0 || info.ReplStreamDB != 5 {
					t.Fatalf("second sync: %+v", info)
				}
			})
		}
	}
}

// fullSync plays a replica's full sync and checks the RDB received.
func fullSync(t *testing.T, master *redistest.Server, header string, marked bool) RDBInfo {
	t.Helper()
	c := redistest.Dial(t, master.Addr())
	for _, cmd := range [][]string{{"REPLCONF", "listening-port", "6380"}, {"REPLCONF", "capa", "eof", "capa", "psync2"}} {
		if _, err := c.Do(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send("PSYNC", "?", "-1"); err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(30 * time.Second)
	var line string
	for line == "" {
		var err error
		if line, err = c.ReadLine(); err != nil {
			t.Fatal(err)
		}
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "+FULLRESYNC" {
		t.Fatalf("PSYNC reply %q", line)
	}
	h, err := ReadPayloadHeader(c.Reader(), DefaultLimits(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Marked() != marked {
		t.Fatalf("payload header %+v, want marked %v", h, marked)
	}
	var file bytes.Buffer
	var chk RDBChecker
	if _, err := CopyPayload(io.MultiWriter(&file, &chk), c.Reader(), h); err != nil {
		t.Fatal(err)
	}
	info, err := chk.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if info.Header() != header || !info.ChecksumOK || !info.HasRepl || info.ReplID != f[1] ||
		strconv.FormatInt(info.ReplOffset, 10) != f[2] || info.Size != int64(file.Len()) {
		t.Fatalf("%s: %+v", line, info)
	}
	t.Logf("%s: %s, %d bytes (%+v), checksum %#016x, stream db %d", line, info.Header(), info.Size, h, info.Checksum, info.ReplStreamDB)
	return info
}

// TestWriteRDBFixtures rewrites testdata/rdb/<release>-replica.rdb for the
// compat releases when PSYNC_PROXY_WRITE_RDB_FIXTURES=1: a replica's SAVE
// after a full sync, with a few small keys of each kind (one LZF-compressed,
// hashes with field TTLs, a stream), and one in db 3 written after the sync. TestRDBFixtures then
// needs its expected values updated.
func TestWriteRDBFixtures(t *testing.T) {
	if os.Getenv("PSYNC_PROXY_WRITE_RDB_FIXTURES") != "1" {
		t.Skip("set PSYNC_PROXY_WRITE_RDB_FIXTURES=1 to rewrite the fixtures")
	}
	for _, srv := range servers()[1:] {
		master := srv.start(t)
		master.MustDo(t, "SET", "k", "v")
		master.MustDo(t, "SET", "int", "12345")
		master.MustDo(t, "SET", "lzf", strings.Repeat("abc", 40))
		master.MustDo(t, "HSET", "hash-ttl", "f1", "v1", "f2", "v2")
		master.MustDo(t, "HEXPIRE", "hash-ttl", "100000000", "FIELDS", "1", "f1")
		master.MustDo(t, "HSETEX", "hash-setex", "EX", "100000000", "FIELDS", "1", "a", "1")
		master.MustDo(t, "XADD", "stream", "1-1", "field", "value")
		replica := srv.start(t)
		replica.ReplicaOf(t, master.Addr())
		redistest.WaitOnline(t, replica, 20*time.Second)
		master.MustDo(t, "SELECT", "3") // after the sync: repl-offset and repl-stream-db are not 0
		master.MustDo(t, "SET", "in-db-3", "x")
		redistest.WaitInSync(t, 20*time.Second, master, replica)
		_, data := checkSaved(t, replica, srv.header)
		path := filepath.Join("testdata", "rdb", srv.name+"-replica.rdb")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d bytes", path, len(data))
	}
}
