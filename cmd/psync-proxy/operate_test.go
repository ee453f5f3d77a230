package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/resp"
)

// runProxy runs the command line in this process, as main does, and returns a function that
// sends SHUTDOWN and returns run's exit code.
func runProxy(t *testing.T, addr string, args ...string) (shutdown func() int) {
	t.Helper()
	code := make(chan int, 1)
	var out strings.Builder
	go func() { code <- run(args, &out) }()
	redistest.Eventually(t, 20*time.Second, func() error {
		select {
		case c := <-code:
			code <- c
			t.Fatalf("psync-proxy %v exited with %d:\n%s", args, c, out.String())
		default:
		}
		f, err := infoOf(addr)
		if err != nil {
			return err
		}
		if f["master_link_status"] != "up" {
			return errors.New("master link " + f["master_link_status"])
		}
		return nil
	})
	stopped, result := false, 0
	return func() int {
		if stopped {
			return result
		}
		stopped = true
		if c, err := dialProxy(addr); err == nil {
			c.do("SHUTDOWN")
			c.close()
		}
		select {
		case result = <-code:
			return result
		case <-time.After(20 * time.Second):
			t.Fatalf("psync-proxy did not stop after SHUTDOWN:\n%s", out.String())
			return -1
		}
	}
}

func dialProxy(addr string) (*infoConn, error) { return dialInfo(&adviseOptions{addr: addr}) }

func infoOf(addr string) (map[string]string, error) {
	c, err := dialProxy(addr)
	if err != nil {
		return nil, err
	}
	defer c.close()
	s, err := c.info()
	return s.fields, err
}

// do runs one command on a connection of its own: an array's elements, or the one reply.
func do(t *testing.T, addr string, args ...string) []string {
	t.Helper()
	c, err := dialProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(resp.AppendCommand(nil, args...)); err != nil {
		t.Fatal(err)
	}
	v, err := resp.ReadValue(c.br, resp.DefaultLimits())
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if e := v.Error(); e != nil {
		return []string{"-" + e.Error()}
	}
	if arr := v.Array(); arr != nil {
		out := make([]string, len(arr))
		for i, e := range arr {
			out[i] = e.String()
		}
		return out
	}
	return []string{v.String()}
}

// configGet returns CONFIG GET's pairs as a map.
func configGet(t *testing.T, addr, pattern string) map[string]string {
	t.Helper()
	kv := do(t, addr, "CONFIG", "GET", pattern)
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// An operator's config file, Redis's directives as copied from a redis.conf with its
// comments: CONFIG SET, then CONFIG REWRITE, then a restart. The values hold, the comments and
// the order stay, replicaof is the link's master, and a password from the environment is never
// written. Every directive is known to CONFIG GET.
func TestConfigRewriteAndRestart(t *testing.T) {
	t.Setenv("PSYNC_PROXY_USERS", "")
	const pass = "from-env"
	m := redistest.Start(t, "--user", "repl", "on", ">"+pass, "~*", "&*", "+@all")
	t.Setenv("PSYNC_PROXY_MASTERAUTH", pass)
	port := redistest.FreePort(t)
	dir := t.TempDir()
	conf := "# psync-proxy, from our redis.conf\n" +
		"\n################################ REPLICATION ################################\n" +
		"# The master.\nreplicaof 127.0.0.1 " + strconv.Itoa(m.Port) + "\nmasteruser repl\n" +
		"repl-backlog-size 64mb   \n" +
		"# Keep it short.\nrepl-timeout 60\n" +
		"\n################################## NETWORK ##################################\n" +
		"bind 127.0.0.1\nport " + strconv.Itoa(port) + "\nprotected-mode yes\ntcp-keepalive 300\n" +
		"\n################################# GENERAL ###################################\n" +
		"dir " + dir + "\nloglevel warning\nsave \"\"\nappendonly no\n"
	path := filepath.Join(t.TempDir(), "psync-proxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	stop := runProxy(t, addr, path)

	all := configGet(t, addr, "*")
	for _, s := range confOptions() {
		if _, ok := all[s.Name]; !ok && s.Name != "user" {
			t.Errorf("CONFIG GET * does not know %s", s.Name)
		}
	}
	if all["masterauth"] != pass || all["repl-backlog-size"] != strconv.Itoa(64<<20) || all["loglevel"] != "warning" ||
		all["port"] != strconv.Itoa(port) {
		t.Errorf("CONFIG GET: %v", all)
	}
	if info, _ := infoOf(addr); info["config_file"] != path {
		t.Errorf("INFO config_file %q, want %q", info["config_file"], path)
	}
	for _, kv := range [][2]string{{"repl-backlog-size", "32mb"}, {"repl-timeout", "30"}} {
		if got := do(t, addr, "CONFIG", "SET", kv[0], kv[1]); got[0] != "OK" {
			t.Fatalf("CONFIG SET %v: %v", kv, got)
		}
	}
	if got := do(t, addr, "CONFIG", "REWRITE"); got[0] != "OK" {
		t.Fatalf("CONFIG REWRITE: %v", got)
	}
	b, _ := os.ReadFile(path)
	text := string(b)
	want := strings.NewReplacer("repl-backlog-size 64mb   ", "repl-backlog-size 32mb", "repl-timeout 60", "repl-timeout 30").Replace(conf)
	if !strings.HasPrefix(text, want) {
		t.Errorf("the rewrite changed more than the two values, or lost comments:\n%s\nwant it to start with\n%s", text, want)
	}
	t.Logf("rewritten:\n%s", text)
	if strings.Contains(text, pass) {
		t.Errorf("the password from $PSYNC_PROXY_MASTERAUTH was written:\n%s", text)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}

	stop = runProxy(t, addr, path)
	defer stop()
	got := configGet(t, addr, "*")
	if got["repl-backlog-size"] != strconv.Itoa(32<<20) || got["repl-timeout"] != "30" ||
		got["replicaof"] != "127.0.0.1 "+strconv.Itoa(m.Port) {
		t.Errorf("after the restart: %v", got)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b2, _ := os.ReadFile(path)
	if do := string(b2); do != text {
		t.Errorf("a second run changed the file:\n%s", do)
	}
}

// Without a config file CONFIG REWRITE says so, as Redis does.
func TestConfigRewriteWithoutFile(t *testing.T) {
	m := redistest.Start(t)
	port := redistest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	stop := runProxy(t, addr, "--master", m.Addr(), "--listen", addr, "--dir", t.TempDir())
	defer stop()
	if got := do(t, addr, "CONFIG", "REWRITE"); got[0] != "-ERR The server is running without a config file" {
		t.Errorf("CONFIG REWRITE: %v", got)
	}
}

// --advise samples a live master as the guide's script does.
func TestAdvise(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "1mb")
	r := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	redistest.WaitOnline(t, r, 30*time.Second)
	stop := redistest.BenchmarkAsync(t, m, "-t", "set", "-d", "1000", "-n", "100000000", "-c", "2")
	defer stop()
	var out, errOut strings.Builder
	if code := advise([]string{"--advise", "--seconds", "2", "--outage", "30m", m.Addr()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	text := out.String()
	t.Log(text)
	for _, want := range []string{"role master", "Write rate: ", "5 min:", "10 min:", "30 min:", "repl-backlog-size ",
		"the backlog is full", "replica 127.0.0.1:" + strconv.Itoa(r.Port) + " online"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	if code := advise([]string{"--advise", "--seconds", "0"}, &out, &errOut); code != 2 {
		t.Errorf("--seconds 0: exit %d", code)
	}
	if code := advise([]string{"--advise", "--seconds", "1", "127.0.0.1:1"}, &out, &errOut); code != 1 {
		t.Errorf("nothing listening: exit %d", code)
	}
	if !slices.ContainsFunc(strings.Split(errOut.String(), "\n"), func(s string) bool { return strings.Contains(s, "connection refused") }) {
		t.Errorf("stderr: %s", errOut.String())
	}
}
