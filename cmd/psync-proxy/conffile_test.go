package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/internal/redisconf"
)

func writeConf(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "psync-proxy.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfFile(t *testing.T) {
	t.Setenv("PSYNC_PROXY_USERS", "")
	path := writeConf(t, `# psync-proxy
REPLICAOF 10.0.0.5 6379
bind 0.0.0.0
port 7000
repl-backlog-size 1gb
backlog-mode DISK
backlog-fsync always
repl-backlog-ttl 3600
repl-timeout 120
protected-mode No
masterauth "a b\x21"
user "repl:s 1:replication"
user ops:o:admin
snapshot-refresh on-demand
full-sync-rate-limit 100mb
tls-port 7001
tls-cert-file 'c.crt'
tls-key-file k.key
tls-ca-cert-file ca.crt
tls-auth-clients OPTIONAL
tls-replication yes
loglevel warning
`)
	o, err := parse([]string{path, "--repl-timeout", "30", "--user", "cli:c:replication"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MasterAddr != "10.0.0.5:6379" || cfg.BacklogSize != 1<<30 || cfg.BacklogMode != "disk" || cfg.BacklogFsync != backlog.FsyncAlways ||
		cfg.BacklogTTL != time.Hour || cfg.ReplTimeout != 30*time.Second || cfg.ProtectedMode || cfg.MasterAuth != "a b!" ||
		cfg.SnapshotRefresh != "on-demand" || cfg.FullSyncRateLimit != 100<<20 || cfg.TLSCertFile != "c.crt" ||
		cfg.TLSAuthClients != "optional" || !cfg.TLSReplication {
		t.Fatalf("config %+v", cfg)
	}
	var users []string
	for _, u := range cfg.Users {
		users = append(users, u.Name)
	}
	if strings.Join(users, ",") != "cli,repl,ops" {
		t.Errorf("users %v: want the command line's and the file's", users)
	}
	if plain, secure, _ := o.listenAddrs(); plain != "0.0.0.0:7000" || secure != "0.0.0.0:7001" || o.logLevel != "warning" {
		t.Errorf("listen %s %s, log level %s", plain, secure, o.logLevel)
	}
	// Flags win, whatever their place among the file's lines.
	o, err = parse([]string{path, "--listen", "127.0.0.1:9", "--backlog-size", "1mb", "--log-level", "debug"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:9" || o.backlogSize != "1mb" || o.logLevel != "debug" || o.replTimeout != 120 {
		t.Errorf("overrides: listen %s backlog %s level %s timeout %d", o.listen, o.backlogSize, o.logLevel, o.replTimeout)
	}
}

func TestConfFileListen(t *testing.T) {
	for _, c := range []struct{ lines, listen, warn string }{
		{"port 7000", "127.0.0.1:7000", ""},
		{"bind 10.0.0.1", "10.0.0.1:6380", ""},
		{"bind 10.0.0.1 10.0.0.2\nport 1", "10.0.0.1:1", "listening on 10.0.0.1 only, not on 10.0.0.2"},
		{"bind 127.0.0.1 -::1", "127.0.0.1:6380", "not on ::1"},
		{"bind * -::*", "0.0.0.0:6380", ""},
		{"bind ::1\nport 0", "[::1]:0", ""},
		{"port 1\nbind -::*", "[::]:1", ""},
	} {
		o, err := parse([]string{writeConf(t, c.lines)}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		warnings := strings.Join(o.warnings, "\n")
		if o.listen != c.listen || (c.warn == "") != (warnings == "") || !strings.Contains(warnings, c.warn) {
			t.Errorf("%q: listen %s, warnings %q; want %s, %q", c.lines, o.listen, warnings, c.listen, c.warn)
		}
	}
}

func TestConfFileErrors(t *testing.T) {
	for _, c := range []struct {
		line, reason string
	}{
		{"sentinel monitor m 1 2 3", "wrong number of arguments"}, // a sentinel.conf line: sentinel here takes one list
		{"rename-command CONFIG x", "Bad directive or wrong number of arguments"},
		{"version yes", "Bad directive or wrong number of arguments"},
		{"listen 0.0.0.0:1", "Bad directive or wrong number of arguments: in a config file --listen is bind and port"},
		{"backlog-size 1gb", "Bad directive or wrong number of arguments: in a config file --backlog-size is repl-backlog-size"},
		{"repl-timeout", "wrong number of arguments"},
		{"repl-timeout 1 2", "wrong number of arguments"},
		{"repl-timeout soon", "argument couldn't be parsed into an integer"},
		{"repl-backlog-size 1tb", "argument must be a memory value"},
		{"protected-mode maybe", "argument must be 'yes' or 'no'"},
		{"backlog-mode tape", "argument(s) must be one of the following: memory, disk"},
		{"replicaof no one", "psync-proxy needs a master"},
		{"replicaof h 99999", "Invalid master port"},
		{"slaveof h", "wrong number of arguments"},
		{"port 65536", "argument must be between 0 and 65535 inclusive"},
		{"daemonize yes", "daemonize yes is not supported"},
		{"user alice on >pass ~* +@all", "wrong number of arguments: a psync-proxy user is one name:password:perms argument"},
		{"user alice:pw", "Error in user declaration"},
		{"loglevel loud", "argument(s) must be one of the following: debug, verbose"},
		{"logfile /nonexistent/dir/log", "Can't open the log file: no such file or directory"},
		{"requirepass \"x", "Unbalanced quotes in configuration line"},
		// Checks made once every option is known point at the line too.
		{"repl-timeout 0", "repl-timeout must be at least 1 second"},
		{"repl-backlog-size 0", "repl-backlog-size must be positive"},
		{"users-file /nonexistent", "users-file: open /nonexistent"},
		{"tls-port 7001", "tls-port needs tls-cert-file and tls-key-file"},
		{"port 0", "no listener: --listen has port 0"},
		{"maxclients 0", "maxclients must be at least 1"},
		{"log-format xml", "log-format must be console or json"},
	} {
		path := writeConf(t, "# line 1\nreplicaof m 1\n"+c.line+"\n")
		var out strings.Builder
		code := run([]string{path}, &out)
		want := "\n*** FATAL CONFIG FILE ERROR (psync-proxy "
		wantLine := "Reading the configuration file, at line 3\n>>> '" + c.line + "'\n" + c.reason
		if code != 1 || !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), wantLine) {
			t.Errorf("%s: exit %d\n%s\nwant exit 1 and\n%s", c.line, code, out.String(), wantLine)
		}
	}
	var out strings.Builder
	if code := run([]string{"/nonexistent/psync-proxy.conf"}, &out); code != 1 ||
		out.String() != "Fatal error, can't open config file '/nonexistent/psync-proxy.conf': no such file or directory\n" {
		t.Errorf("a missing file: exit %d, %q", code, out.String())
	}
	// A bad line is fatal even where a flag overrides it, as in Redis.
	_, err := parse([]string{writeConf(t, "repl-timeout soon"), "--repl-timeout", "5"}, io.Discard)
	var fe *redisconf.FileError
	if !errors.As(err, &fe) {
		t.Errorf("a bad line under a flag: %v", err)
	}
	// A flag's own error stays a command-line error.
	out.Reset()
	if code := run([]string{writeConf(t, "replicaof m 1"), "--repl-timeout", "0"}, &out); code != 2 || !strings.HasPrefix(out.String(), "psync-proxy: --repl-timeout") {
		t.Errorf("a bad flag after a file: exit %d, %q", code, out.String())
	}
}

func TestConfFileIgnored(t *testing.T) {
	o, err := parse([]string{writeConf(t, "replicaof m 1\nsave 3600 1 300 100\nappendonly no\nmaxmemory 2gb\ndaemonize no\nreplica-priority 100\n")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.warnings) != 4 || !strings.HasPrefix(o.warnings[0], "Ignoring 'save 3600 1 300 100' at line 2 of ") ||
		!strings.Contains(o.warnings[3], "replica priority 0") {
		t.Errorf("warnings %q", o.warnings)
	}
}

// TestConfFileNewFlag shows that a flag added later is a directive with no more code.
func TestConfFileNewFlag(t *testing.T) {
	o := &options{}
	fs := o.flagSet(io.Discard)
	var peer string
	var quorum int
	fs.StringVar(&peer, "example-peer", "", "`host:port` of a peer")
	fs.IntVar(&quorum, "example-quorum", 2, "`n`")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := o.loadConfFile(fs, writeConf(t, "example-peer 10.0.0.9:26379\nexample-quorum 3\n")); err != nil {
		t.Fatal(err)
	}
	if peer != "10.0.0.9:26379" || quorum != 3 {
		t.Errorf("peer %q quorum %d", peer, quorum)
	}
	if err := o.loadConfFile(fs, writeConf(t, "example-quorum many\n")); err == nil {
		t.Error("a bad integer was accepted")
	}
}

// TestRedisConfExcerpt starts from sections of a replica's redis.conf, pasted in.
func TestRedisConfExcerpt(t *testing.T) {
	t.Setenv("PSYNC_PROXY_USERS", "")
	o, err := parse([]string{"../../internal/redisconf/testdata/redis.conf", "--tls-cert-file", "proxy.crt"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MasterAddr != "10.0.0.5:6379" || cfg.MasterAuth != `s3cr3t "quoted" pass` || cfg.MasterUser != "replicator" ||
		cfg.RequirePass != "Pa55:with#hash" || cfg.BacklogSize != 512<<20 || cfg.ReplTimeout != 2*time.Minute ||
		cfg.MaxClients != 5000 || cfg.TLSCertFile != "proxy.crt" || cfg.TLSKeyFile != "/etc/redis/tls/redis.key" || !cfg.TLSReplication {
		t.Fatalf("config %+v", cfg)
	}
	var ignored []string
	for _, w := range o.warnings {
		ignored = append(ignored, strings.Fields(w)[1])
	}
	want := []string{"listening", "'tcp-backlog", "'tcp-keepalive", "'replica-serve-stale-data", "'replica-read-only", "'acllog-max-len"}
	if len(o.warnings) > 0 {
		ignored[0] = strings.Fields(o.warnings[0])[6] // "bind at line N of F: listening ..."
	}
	if !slices.Equal(ignored, want) {
		t.Errorf("warnings:\n%s", strings.Join(o.warnings, "\n"))
	}
}

// TestDocsConf checks the example file: it loads with no warning, sets the defaults (and a
// master), and names every directive there is.
func TestDocsConf(t *testing.T) {
	const path = "../../docs/psync-proxy.conf"
	o, err := parse([]string{path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.warnings) > 0 {
		t.Errorf("warnings: %q", o.warnings)
	}
	def, _ := parse([]string{"--master", "127.0.0.1:6379"}, io.Discard)
	for _, x := range []*options{o, def} {
		lvl, _ := parseLogLevel(x.logLevel)
		x.logLevel = lvl.String()
		x.confFile, x.origin, x.warnings = "", nil, nil
	}
	if !reflect.DeepEqual(o, def) {
		t.Errorf("the example sets other values than the defaults:\n%+v\n%+v", o, def)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := "\n" + string(b)
	for _, s := range confOptions() {
		if !strings.Contains(text, "\n"+s.Name+" ") && !strings.Contains(text, "\n# "+s.Name+" ") {
			t.Errorf("%s is not in %s", s.Name, path)
		}
	}
}

func TestLogLevels(t *testing.T) {
	for _, c := range []struct{ in, want string }{{"debug", "debug"}, {"verbose", "debug"}, {"NOTICE", "info"},
		{"info", "info"}, {"warning", "warn"}, {"warn", "warn"}, {"error", "error"}} {
		if l, err := parseLogLevel(c.in); err != nil || l.String() != c.want {
			t.Errorf("%s: %v %v", c.in, l, err)
		}
	}
	file := filepath.Join(t.TempDir(), "proxy.log")
	log, err := newLogger("notice", "json", file)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("to the file")
	log.Debug("not at notice")
	_ = log.Sync()
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "to the file") || strings.Contains(string(b), "not at notice") {
		t.Errorf("log file: %q", b)
	}
	log, err = newLogger("nothing", "console", file)
	if err != nil {
		t.Fatal(err)
	}
	log.Error("silenced")
	_ = log.Sync()
	if b, _ := os.ReadFile(file); strings.Contains(string(b), "silenced") {
		t.Errorf("loglevel nothing logged: %q", b)
	}
	if _, err := newLogger("info", "console", filepath.Join(file, "sub")); err == nil {
		t.Error("an unopenable log file was accepted")
	}
}
