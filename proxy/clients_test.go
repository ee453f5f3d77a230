package proxy_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// clientLine is one line of CLIENT LIST as Redis 7.0 writes it.
var clientLine = regexp.MustCompile(`^id=\d+ addr=\S+:\d+ laddr=\S+:\d+ fd=-?\d+ name=\S* age=\d+ idle=\d+ flags=[A-Za-z]+ db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=\S+ user=\S+ redir=-1 resp=2$`)

// parseClientList returns CLIENT LIST's lines as maps of their fields.
func parseClientList(t *testing.T, text string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		if !clientLine.MatchString(line) {
			t.Fatalf("CLIENT LIST line not in Redis's format: %q", line)
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		out = append(out, f)
	}
	return out
}

// startWithReplica starts a master, a proxy with an 8 MB backlog in front of it and a replica
// of the proxy, and waits until the replica is online.
func startWithReplica(t *testing.T) (m *redistest.Server, p *testProxy, r *redistest.Server) {
	t.Helper()
	m = redistest.Start(t)
	p = startProxy(t, m, proxy.Config{BacklogSize: 8 << 20})
	r = redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r, syncTimeout)
	return m, p, r
}

// What an operator runs with redis-cli: INFO with Redis's sections and no Keyspace, CLIENT
// LIST with the replicas (flags S) and the clients, CONFIG GET * with every option, and the
// commands exporters poll.
func TestRedisCLIOperator(t *testing.T) {
	_, p, _ := startWithReplica(t)

	info := redisCLI(t, p.port, "INFO")
	for _, s := range []string{"# Server", "# Clients", "# Memory", "# Persistence", "# Replication", "# Backlog", "# Snapshot", "# Stats", "# CPU"} {
		if !regexp.MustCompile(`(?m)^` + s + `\r?$`).MatchString(info) {
			t.Errorf("INFO has no %s section", s)
		}
	}
	if strings.Contains(info, "# Keyspace") || regexp.MustCompile(`(?m)^db\d+:`).MatchString(info) {
		t.Errorf("INFO shows a keyspace:\n%s", info)
	}
	f := redistest.ParseInfo(info)
	if f["redis_version"] != "7.0.0" || f["psync_proxy_version"] != proxy.Version || f["used_memory"] == "" ||
		f["used_memory_rss"] == "" || f["rdb_last_bgsave_status"] != "ok" || f["used_cpu_user"] == "" {
		t.Errorf("INFO fields: %v", f)
	}
	if out := redisCLI(t, p.port, "CONFIG", "GET", "databases"); out != "" {
		t.Errorf("CONFIG GET databases = %q, want nothing", out)
	}
	list := parseClientList(t, redisCLI(t, p.port, "CLIENT", "LIST"))
	if len(list) != 2 || list[0]["flags"] != "S" || list[0]["cmd"] != "psync" || list[1]["flags"] != "N" ||
		list[1]["cmd"] != "client|list" || list[0]["laddr"] != p.Addr() {
		t.Errorf("CLIENT LIST: %v", list)
	}
	if reps := parseClientList(t, redisCLI(t, p.port, "CLIENT", "LIST", "TYPE", "replica")); len(reps) != 1 || reps[0]["flags"] != "S" {
		t.Errorf("CLIENT LIST TYPE replica: %v", reps)
	}
	cfg := strings.Split(redisCLI(t, p.port, "CONFIG", "GET", "*"), "\n")
	var names []string
	for i := 0; i+1 < len(cfg); i += 2 {
		names = append(names, cfg[i])
	}
	for _, want := range []string{"repl-backlog-size", "repl-backlog-ttl", "repl-timeout", "dir", "replicaof", "masteruser",
		"masterauth", "requirepass", "protected-mode", "maxclients", "timeout", "backlog-mode", "backlog-fsync",
		"backlog-ram-tail", "snapshot-refresh", "tls-auth-clients", "tls-replication", "tls-cert-file"} {
		if !slices.Contains(names, want) {
			t.Errorf("CONFIG GET * has no %s: %v", want, names)
		}
	}
	for cmd, want := range map[string]string{"LATENCY LATEST": "", "LATENCY HISTOGRAM": "", "LATENCY HISTORY command": "",
		"SLOWLOG GET": "", "SLOWLOG LEN": "0", "LATENCY RESET": "0"} {
		if out := redisCLI(t, p.port, strings.Fields(cmd)...); out != want {
			t.Errorf("%s = %q, want %q", cmd, out, want)
		}
	}
	if out := redisCLI(t, p.port, "LATENCY", "DOCTOR"); !strings.Contains(out, "no latency events") {
		t.Errorf("LATENCY DOCTOR = %q", out)
	}
}

// An exporter's scrape: INFO ALL parses as redis_exporter parses it, every value it would
// turn into a number is one, redis_version is set and there is no Keyspace.
func TestExporterStyleScrape(t *testing.T) {
	_, p, _ := startWithReplica(t)
	c := redistest.Dial(t, p.Addr())
	defer c.Close()
	c.Do("CLIENT", "SETNAME", "redis_exporter")
	v, err := c.Do("INFO", "ALL")
	if err != nil || v.Error() != nil {
		t.Fatalf("INFO ALL: %v %v", v, err)
	}
	// Fields whose values are words by design, as in Redis.
	words := map[string]bool{"redis_version": true, "psync_proxy_version": true, "redis_mode": true, "os": true,
		"go_version": true, "run_id": true, "executable": true, "config_file": true, "role": true, "master_host": true,
		"master_link_status": true, "master_failover_state": true, "master_replid": true, "master_replid2": true,
		"maxmemory_policy": true, "mem_allocator": true, "rdb_last_bgsave_status": true, "aof_last_bgrewrite_status": true,
		"aof_last_write_status": true, "backlog_mode": true, "snapshot_state": true, "snapshot_replid": true,
		"snapshot_refresh_policy": true, "snapshot_last_refresh_status": true, "master_sync_last_error": true,
		"backlog_last_fsync_error": true, "master_last_change_source": true, "master_last_change_resync": true}
	section, sections := "", map[string]int{}
	for _, line := range strings.Split(v.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "# ") {
			section = line[2:]
			continue
		}
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		sections[section]++
		switch {
		case strings.HasPrefix(k, "slave") && strings.Contains(val, "ip="):
			if !regexp.MustCompile(`^ip=[^,]+,port=\d+,state=\w+,offset=\d+,lag=\d+$`).MatchString(val) {
				t.Errorf("%s:%s is not redis_exporter's slave line", k, val)
			}
		case words[k] || strings.HasSuffix(k, "_human"):
		default:
			if _, err := strconv.ParseFloat(val, 64); err != nil {
				t.Errorf("%s (# %s) = %q is not a number", k, section, val)
			}
		}
	}
	if sections["Keyspace"] != 0 || sections["Server"] == 0 || sections["Replication"] == 0 {
		t.Errorf("sections: %v", sections)
	}
	if f := redistest.ParseInfo(v.String()); f["redis_version"] == "" || f["role"] != "slave" || f["connected_slaves"] != "1" {
		t.Errorf("INFO ALL: %v", f)
	}
}

// CLIENT KILL as Redis has it, and as Sentinel sends it: TYPE normal and pubsub never drop a
// replica; a replica killed by ID or ADDR comes back and resumes with a partial resync.
func TestClientKill(t *testing.T) {
	m, p, r := startWithReplica(t)
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)

	other := redistest.Dial(t, p.Addr())
	defer other.Close()
	other.Do("CLIENT", "SETNAME", "victim")
	admin := redistest.Dial(t, p.Addr())
	defer admin.Do("QUIT")
	do := func(args ...string) string {
		t.Helper()
		v, err := admin.Do(args...)
		var re redistest.ReplyError
		if errors.As(err, &re) {
			return "-" + string(re)
		}
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return v.String()
	}
	for _, c := range []struct{ args, want string }{
		{"CLIENT KILL TYPE pubsub", "0"},
		{"CLIENT KILL TYPE master", "0"},
		{"CLIENT KILL TYPE normal", "1"}, // the other client, not the caller, not the replica
		{"CLIENT KILL 1.2.3.4:5", "-ERR No such client"},
		{"CLIENT KILL ID 0", "-ERR client-id should be greater than 0"},
		{"CLIENT KILL TYPE foo", "-ERR Unknown client type 'foo'"},
		{"CLIENT KILL ADDR 1.2.3.4:5 SKIPME maybe", "-ERR syntax error"},
		{"CLIENT KILL ADDR 1.2.3.4:5 ID", "-ERR syntax error"},
		{"CLIENT KILL USER nobody", "-ERR No such user 'nobody'"},
		{"CLIENT KILL MAXAGE 5", "-ERR syntax error"},
		{"CLIENT LIST TYPE x", "-ERR Unknown client type 'x'"},
	} {
		if got := do(strings.Fields(c.args)...); got != c.want {
			t.Errorf("%s = %q, want %q", c.args, got, c.want)
		}
	}
	if _, err := other.Do("PING"); err == nil {
		t.Error("the client killed by TYPE normal still answers")
	}
	if n := p.info("replication")["connected_slaves"]; n != "1" {
		t.Fatalf("connected_slaves %s after TYPE normal and pubsub: the replica was dropped", n)
	}

	// By ADDR, then by ID: each time the replica comes back with +CONTINUE.
	partial := p.stat("sync_partial_ok")
	for round, by := range []string{"ADDR", "ID"} {
		reps := parseClientList(t, do("CLIENT", "LIST", "TYPE", "replica"))
		if len(reps) != 1 {
			t.Fatalf("replicas: %v", reps)
		}
		arg := reps[0]["addr"]
		if by == "ID" {
			arg = reps[0]["id"]
		}
		if got := do("CLIENT", "KILL", by, arg); got != "1" {
			t.Fatalf("CLIENT KILL %s %s = %q", by, arg, got)
		}
		redistest.WriteBytes(t, m, 64<<10)
		redistest.WaitInSync(t, syncTimeout, m, r)
		redistest.Eventually(t, 10*time.Second, func() error {
			if got := p.stat("sync_partial_ok"); got != partial+int64(round)+1 {
				return errString("sync_partial_ok " + strconv.FormatInt(got, 10))
			}
			return nil
		})
	}
	if got := stat(t, m, "sync_full"); got != 1 {
		t.Errorf("master sync_full %d: a killed replica cost the master a sync", got)
	}
	if got := p.stat("sync_full"); got != 1 {
		t.Errorf("proxy sync_full %d: a killed replica needed a full sync", got)
	}

	// SKIPME no: the caller is killed too, after its reply (with the connections of
	// p.stat that the proxy may not have seen close yet).
	if got := do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"); got == "0" || strings.HasPrefix(got, "-") {
		t.Fatalf("CLIENT KILL TYPE normal SKIPME no = %q", got)
	}
	if _, err := admin.Do("PING"); err == nil {
		t.Error("the caller survived CLIENT KILL SKIPME no")
	}
}

// CLIENT KILL needs the admin permission; CLIENT LIST and INFO do not.
func TestClientKillPermission(t *testing.T) {
	m := redistest.Start(t)
	u := proxy.User{Name: "mon", Password: "m"}
	p := startProxy(t, m, proxy.Config{Users: []proxy.User{u, {Name: "ops", Password: "o", Admin: true}}})
	c := redistest.Dial(t, p.Addr())
	defer c.Close()
	c.Do("AUTH", "mon", "m")
	if v, _ := c.Do("CLIENT", "KILL", "TYPE", "normal"); v.Error() == nil || !strings.Contains(v.Error().Error(), "NOPERM") {
		t.Fatalf("CLIENT KILL by a user without admin: %v", v)
	}
	// The test's own INFO connections of startProxy leave the list once the proxy has seen
	// them close: only this one stays.
	redistest.Eventually(t, 5*time.Second, func() error {
		v, _ := c.Do("CLIENT", "LIST")
		if l := parseClientList(t, v.String()); len(l) != 1 || l[0]["user"] != "mon" {
			return fmt.Errorf("CLIENT LIST: %v", l)
		}
		return nil
	})
	if v, _ := c.Do("CONFIG", "GET", "requirepass"); v.Array()[1].String() != "" {
		t.Fatalf("a user without admin read requirepass: %v", v)
	}
}
