package proxy_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// redisCLI runs the real redis-cli against addr and returns its output.
func redisCLI(t *testing.T, port int, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port), "--no-auth-warning"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// What an operator does: redis-cli INFO/ROLE/CONFIG against a password-protected proxy, a
// replica that authenticates with masterauth, and SHUTDOWN.
func TestOperatorSurface(t *testing.T) {
	const pass = "s3cret"
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{BacklogSize: 8 << 20, RequirePass: pass})

	// Nothing but AUTH before authenticating, PSYNC included.
	c := redistest.Dial(t, p.Addr())
	for _, cmd := range [][]string{{"PSYNC", "?", "-1"}, {"SYNC"}, {"INFO"}} {
		v, _ := c.Do(cmd...)
		if e := v.Error(); e == nil || !strings.HasPrefix(e.Error(), "NOAUTH") {
			t.Fatalf("%v before AUTH: %v, want -NOAUTH", cmd, v)
		}
	}
	if v, _ := c.Do("AUTH", "wrong"); v.Error() == nil || !strings.HasPrefix(v.Error().Error(), "WRONGPASS") {
		t.Fatalf("AUTH wrong: %v", v)
	}
	c.Close()

	r := redistest.Start(t, p.replicaArgs("--masterauth", pass)...)
	redistest.WriteBytes(t, m, 2<<20)
	redistest.WaitInSync(t, syncTimeout, m, r)

	info := redistest.ParseInfo(redisCLI(t, p.port, "-a", pass, "INFO", "replication"))
	for k, want := range map[string]string{
		"role": "slave", "master_host": "127.0.0.1", "master_port": strconv.Itoa(m.Port),
		"master_link_status": "up", "master_sync_in_progress": "0", "connected_slaves": "1",
		"slave_priority": "0", "repl_backlog_active": "1", "repl_backlog_size": strconv.Itoa(8 << 20),
		"master_replid": m.Info(t, "replication")["master_replid"],
	} {
		if info[k] != want {
			t.Errorf("INFO %s = %q, want %q", k, info[k], want)
		}
	}
	if !strings.HasPrefix(info["slave0"], "ip=127.0.0.1,port="+strconv.Itoa(r.Port)+",state=online,") {
		t.Errorf("INFO slave0 = %q", info["slave0"])
	}
	if role := redisCLI(t, p.port, "-a", pass, "ROLE"); !strings.HasPrefix(role, "slave\n127.0.0.1\n"+strconv.Itoa(m.Port)+"\nconnected\n") {
		t.Errorf("ROLE = %q", role)
	}

	// CONFIG SET repl-backlog-size applies live and keeps the newest bytes.
	if out := redisCLI(t, p.port, "-a", pass, "CONFIG", "SET", "repl-backlog-size", "1mb"); out != "OK" {
		t.Fatalf("CONFIG SET: %s", out)
	}
	info = p.info("replication")
	hist, _ := strconv.ParseInt(info["repl_backlog_histlen"], 10, 64)
	// The disk backlog trims whole segments (at most a quarter of the 8 MiB it started with)
	// and keeps the one being written, so its histlen may exceed the new size by a segment.
	slack := int64(0)
	if p.cfg.BacklogMode == proxy.BacklogDisk {
		slack = 2 << 20
	}
	if info["repl_backlog_size"] != strconv.Itoa(1<<20) || hist < 1<<20 || hist > 1<<20+slack {
		t.Fatalf("after CONFIG SET: repl_backlog_size %s histlen %d, want 1 MiB and 1 MiB to 1 MiB + %d", info["repl_backlog_size"], hist, slack)
	}
	if out := redisCLI(t, p.port, "-a", pass, "CONFIG", "GET", "repl-backlog-*"); out != "repl-backlog-size\n"+strconv.Itoa(1<<20)+"\nrepl-backlog-ttl\n0" {
		t.Fatalf("CONFIG GET: %q", out)
	}
	if out := redisCLI(t, p.port, "-a", pass, "GET", "k"); !strings.Contains(out, "psync-proxy is a replication proxy") {
		t.Fatalf("GET: %q", out)
	}

	// redis-cli --rdb (REPLCONF rdb-only 1, SYNC) gets exactly the snapshot.
	rdbPath := t.TempDir() + "/dump.rdb"
	redisCLI(t, p.port, "-a", pass, "--rdb", rdbPath)
	got, err := os.ReadFile(rdbPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(p.cfg.Dir + "/snapshot.rdb")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("redis-cli --rdb wrote %d bytes, snapshot has %d (%v)", len(got), len(want), err)
	}

	// SHUTDOWN stops the proxy: Serve returns, every goroutine ends.
	exec.Command("redis-cli", "-p", strconv.Itoa(p.port), "-a", pass, "--no-auth-warning", "SHUTDOWN").Run()
	select {
	case <-p.run.srv.Done():
		if err := <-p.run.done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Fatalf("Serve after SHUTDOWN: %v", err)
		}
		p.run = nil
	case <-time.After(10 * time.Second):
		t.Fatalf("the proxy did not stop after SHUTDOWN")
	}
}

// A restarted proxy reads its snapshot from --dir and resumes upstream with a partial resync:
// the master does not fork again.
func TestProxyRestartResumes(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)

	p.stop()
	redistest.WriteBytes(t, m, 256<<10) // the master's 1mb backlog still reaches the snapshot
	partial := stat(t, m, "sync_partial_ok")
	p.start(p.port)
	p.waitLinkUp()
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, r)
	if got := stat(t, m, "sync_full"); got != 1 {
		t.Fatalf("master sync_full = %d after the proxy restart, want 1", got)
	}
	if got := stat(t, m, "sync_partial_ok"); got != partial+1 {
		t.Fatalf("master sync_partial_ok = %d, want %d", got, partial+1)
	}
}
