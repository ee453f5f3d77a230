package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redisconf"
)

// TestRewriteConfFile rewrites the example file with changed values and reads it back.
func TestRewriteConfFile(t *testing.T) {
	t.Setenv("PSYNC_PROXY_USERS", "")
	orig, err := os.ReadFile("../../docs/psync-proxy.conf")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "psync-proxy.conf")
	if err := os.WriteFile(path, orig, 0o640); err != nil {
		t.Fatal(err)
	}
	live := map[string][]string{
		"replicaof":         {"10.0.0.5", "6379"},
		"bind":              {"0.0.0.0"},
		"port":              {"6380"},
		"repl-backlog-size": {"1073741824"},
		"repl-timeout":      {"60"},
		"masterauth":        {"p w"},
		"requirepass":       {""},
		"user":              {"repl:s:replication", "ops:o:admin"},
		"snapshot-refresh":  {"on-demand"},
		"maxclients":        {"10000"},
		"replica-priority":  {"0"},
	}
	unknown := maps.Clone(live)
	unknown["backlog-ttl"] = nil
	err = rewriteConfFile(path, unknown)
	if err == nil || !strings.Contains(err.Error(), `unknown option "backlog-ttl"`) {
		t.Fatalf("a flag name instead of the directive's: %v", err)
	}
	if err := rewriteConfFile(path, live); err != nil {
		t.Fatal(err)
	}
	o, err := parse([]string{path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MasterAddr != "10.0.0.5:6379" || o.listen != "0.0.0.0:6380" || cfg.BacklogSize != 1<<30 || cfg.ReplTimeout != time.Minute ||
		cfg.MasterAuth != "p w" || cfg.SnapshotRefresh != "on-demand" || len(cfg.Users) != 2 || len(o.warnings) != 0 {
		t.Fatalf("read back: %+v, listen %s, warnings %q", cfg, o.listen, o.warnings)
	}
	b, _ := os.ReadFile(path)
	text := string(b)
	for _, want := range []string{"\nreplicaof 10.0.0.5 6379\n", "\nbind 0.0.0.0\n", "\nrepl-backlog-size 1gb\n", "\nsnapshot-refresh on-demand\n",
		"\n" + redisconf.Signature + "\nuser repl:s:replication\nuser ops:o:admin\nmasterauth \"p w\"\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	if strings.Contains(text, "requirepass \"\"") || strings.Contains(text, "replica-priority") {
		t.Errorf("a default or an ignored option was written:\n%s", text)
	}
	// The comments, and the directives' order, are the original's.
	if got, want := commentsAndNames(text), commentsAndNames(string(orig)); !slices.Equal(got[:len(want)], want) {
		t.Errorf("comments or order changed")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	// An unset master removes its line, an alias is rewritten under Redis's name.
	slave := filepath.Join(t.TempDir(), "s.conf")
	if err := os.WriteFile(slave, []byte("slaveof a 1\nreplicaof b 2\nport 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewriteConfFile(slave, map[string][]string{"replicaof": {"c", "3"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(slave); string(b) != "replicaof c 3\nport 1\n" {
		t.Errorf("alias: %q", b)
	}
	if err := rewriteConfFile(slave, map[string][]string{"replicaof": nil}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(slave); string(b) != "port 1\n" {
		t.Errorf("unset: %q", b)
	}
	for _, bad := range []map[string][]string{
		{"replicaof": {"h"}},
		{"repl-backlog-size": {"lots"}},
		{"port": {"1", "2"}},
		{"save": {""}, "nosuch": {"1"}},
	} {
		if err := rewriteConfFile(slave, bad); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// commentsAndNames is a file's comment lines and directive names, in order.
func commentsAndNames(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
			out = append(out, l)
		case l != "":
			out = append(out, strings.Fields(l)[0])
		}
	}
	return out
}

func TestConfOptions(t *testing.T) {
	byName := map[string]confOption{}
	for _, s := range confOptions() {
		byName[s.Name] = s
	}
	for name, def := range map[string]string{"replicaof": "", "bind": "127.0.0.1", "port": "6380", "repl-backlog-size": "256mb",
		"repl-backlog-ttl": "0", "loglevel": "info", "logfile": "", "proto-max-bulk-len": "64kb", "backlog-mode": "memory", "user": ""} {
		s, ok := byName[name]
		got := ""
		if len(s.Default) > 0 {
			got = strings.Join(s.Default[0], " ")
		}
		if !ok || got != def {
			t.Errorf("%s: default %q (%v), want %q", name, got, ok, def)
		}
	}
	for _, name := range []string{"master", "listen", "backlog-size", "backlog-ttl", "log-level", "version", "slaveof"} {
		if _, ok := byName[name]; ok {
			t.Errorf("%s is listed", name)
		}
	}
	if s := byName["replicaof"]; !slices.Equal(s.Aliases, []string{"slaveof"}) || s.nargs != 2 {
		t.Errorf("replicaof: %+v", s)
	}
	if !byName["user"].list || !byName["repl-backlog-size"].size || !byName["client-query-buffer-limit"].size {
		t.Error("kinds")
	}
}
