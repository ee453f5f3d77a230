package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
)

func TestOptions(t *testing.T) {
	o, err := parse([]string{"--master", "10.0.0.1:6379", "--backlog-size", "4gb", "--repl-timeout", "30",
		"--requirepass", "p", "--protected-mode", "no"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MasterAddr != "10.0.0.1:6379" || cfg.BacklogSize != 4<<30 || cfg.ReplTimeout != 30*time.Second ||
		cfg.RequirePass != "p" || cfg.ProtectedMode {
		t.Fatalf("config %+v", cfg)
	}
	o, err = parse([]string{"--master", "m:1", "--backlog-mode", "disk", "--backlog-fsync", "Always",
		"--backlog-ttl", "3600", "--backlog-ram-tail", "8mb"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = o.config(); err != nil {
		t.Fatal(err)
	}
	if cfg.BacklogMode != "disk" || cfg.BacklogFsync != backlog.FsyncAlways || cfg.BacklogTTL != time.Hour || cfg.BacklogRAMTail != 8<<20 {
		t.Fatalf("disk options: %+v", cfg)
	}
	if o, _ := parse([]string{"--master", "m:1"}, io.Discard); o.backlogMode != "memory" || o.backlogFsync != "everysec" || o.backlogTTL != 0 {
		t.Fatalf("backlog defaults: mode %s fsync %s ttl %d", o.backlogMode, o.backlogFsync, o.backlogTTL)
	}
	if o, _ := parse(nil, io.Discard); o.listen != "127.0.0.1:6380" || o.protectedMode != "yes" {
		t.Fatalf("defaults: listen %s protected-mode %s; want loopback and yes", o.listen, o.protectedMode)
	}
	for _, bad := range [][]string{
		{}, // no master
		{"--master", "m:1", "--backlog-size", "1tb"},
		{"--master", "m:1", "--backlog-size", "0"},
		{"--master", "m:1", "--repl-timeout", "0"},
		{"--master", "m:1", "--protected-mode", "maybe"},
		{"--master", "m:1", "--backlog-mode", "tape"},
		{"--master", "m:1", "--backlog-fsync", "sometimes"},
		{"--master", "m:1", "--backlog-ttl", "-1"},
		{"--master", "m:1", "--backlog-ram-tail", "0"},
	} {
		o, err := parse(bad, io.Discard)
		if err == nil {
			_, err = o.config()
		}
		if err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	if _, err := parse([]string{"--master", "m:1", "extra"}, io.Discard); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Errorf("a stray argument was accepted: %v", err)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"--log-level", "loud", "--master", "127.0.0.1:1"}, &out); code != 2 {
		t.Fatalf("exit %d, want 2; %s", code, out.String())
	}
	if code := run([]string{"--version"}, &out); code != 0 || !strings.Contains(out.String(), "psync-proxy") {
		t.Fatalf("--version: exit %d, %q", code, out.String())
	}
}

func TestClientLimitOptions(t *testing.T) {
	o, err := parse([]string{"--master", "m:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxClients != 10000 || cfg.ProtoMaxBulkLen != 64<<10 || cfg.ClientQueryBufferLimit != 1<<20 ||
		cfg.Timeout != 0 || cfg.HandshakeTimeout != 10*time.Second {
		t.Fatalf("client limit defaults: %+v", cfg)
	}
	o, err = parse([]string{"--master", "m:1", "--maxclients", "50", "--proto-max-bulk-len", "1mb",
		"--client-query-buffer-limit", "2mb", "--timeout", "300", "--handshake-timeout", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = o.config(); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxClients != 50 || cfg.ProtoMaxBulkLen != 1<<20 || cfg.ClientQueryBufferLimit != 2<<20 ||
		cfg.Timeout != 300*time.Second || cfg.HandshakeTimeout >= 0 {
		t.Fatalf("client limits: %+v", cfg)
	}
	for _, bad := range [][]string{
		{"--maxclients", "0"},
		{"--proto-max-bulk-len", "100"},
		{"--client-query-buffer-limit", "lots"},
		{"--timeout", "-1"},
		{"--handshake-timeout", "-1"},
	} {
		o, err := parse(append([]string{"--master", "m:1"}, bad...), io.Discard)
		if err == nil {
			_, err = o.config()
		}
		if err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

func TestAuthAndTLSOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(file, []byte("# replicas\nfile:f:replication\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PSYNC_PROXY_USERS", "env:e:noreplication")
	o, err := parse([]string{"--master", "m:1", "--user", "repl:s:replication", "--user", "ops:o:noreplication,admin",
		"--users-file", file, "--listen", "0.0.0.0:0", "--tls-port", "6390", "--tls-cert-file", "c", "--tls-key-file", "k",
		"--tls-ca-cert-file", "ca", "--tls-auth-clients", "optional", "--tls-replication", "yes"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range cfg.Users {
		names = append(names, u.Name)
	}
	if strings.Join(names, ",") != "repl,ops,file,env" || !cfg.Users[0].Replication || cfg.Users[1].Replication || !cfg.Users[1].Admin {
		t.Fatalf("users %+v", cfg.Users)
	}
	if cfg.TLSCertFile != "c" || cfg.TLSKeyFile != "k" || cfg.TLSCACertFile != "ca" || cfg.TLSAuthClients != "optional" || !cfg.TLSReplication {
		t.Fatalf("TLS config %+v", cfg)
	}
	if plain, secure, err := o.listenAddrs(); err != nil || plain != "" || secure != "0.0.0.0:6390" {
		t.Fatalf("listeners %q %q %v; want no plain one (port 0) and TLS on 0.0.0.0:6390", plain, secure, err)
	}
	t.Setenv("PSYNC_PROXY_USERS", "")
	for _, bad := range [][]string{
		{"--master", "m:1", "--user", "nopermissions:pw"},
		{"--master", "m:1", "--tls-replication", "maybe"},
		{"--master", "m:1", "--tls-port", "6390"},                      // no certificate
		{"--master", "m:1", "--listen", "127.0.0.1:0"},                 // no listener at all
		{"--master", "m:1", "--users-file", filepath.Join(file, "no")}, // missing file
	} {
		o, err := parse(bad, io.Discard)
		if err == nil {
			_, err = o.config()
		}
		if err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

func TestFitMaxClients(t *testing.T) {
	for _, c := range []struct {
		maxclients int
		limit      uint64
		want       int
	}{
		{10000, 1024, 992},
		{10000, 20000, 10000},
		{10, 20, 1},
	} {
		got, msg := fitMaxClients(c.maxclients, c.limit)
		if got != c.want || !strings.Contains(msg, "maxclients has been reduced to") {
			t.Errorf("fitMaxClients(%d, %d) = %d, %q; want %d", c.maxclients, c.limit, got, msg, c.want)
		}
	}
}

func TestSentinelOptions(t *testing.T) {
	t.Setenv("PSYNC_PROXY_SENTINEL_PASSWORD", "from-env")
	o, err := parse([]string{"--sentinel", "10.0.0.1:26379, 10.0.0.2:26379", "--sentinel-master", "mymaster",
		"--sentinel-user", "watcher"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.SentinelAddrs, " ") != "10.0.0.1:26379 10.0.0.2:26379" || cfg.SentinelMaster != "mymaster" ||
		cfg.SentinelUser != "watcher" || cfg.SentinelPassword != "from-env" || cfg.MasterAddr != "" {
		t.Fatalf("config %+v", cfg)
	}
	for _, bad := range [][]string{
		{"--sentinel", "10.0.0.1:26379"},                     // no --sentinel-master
		{"--master", "m:1", "--sentinel-master", "mymaster"}, // no --sentinel
		{"--sentinel", " , ", "--sentinel-master", "mymaster"},
	} {
		o, err := parse(bad, io.Discard)
		if err == nil {
			_, err = o.config()
		}
		if err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
