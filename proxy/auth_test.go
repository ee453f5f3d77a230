package proxy_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	tresp "github.com/tidwall/resp"
	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// reply sends one command on c and returns the reply as a string, errors with their "-".
func reply(t *testing.T, c *redistest.Client, args ...string) string {
	t.Helper()
	if err := c.Send(args...); err != nil {
		t.Fatalf("%s: %v", args[0], err)
	}
	v, err := c.ReadValue()
	if err != nil {
		t.Fatalf("%s: %v", args[0], err)
	}
	if v.Type() == tresp.Error {
		return "-" + v.String()
	}
	return v.String()
}

func wantPrefix(t *testing.T, what, got, prefix string) {
	t.Helper()
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("%s: %q, want %q...", what, got, prefix)
	}
}

// ACL-style users against real replicas: a replication user's replica syncs; a
// noreplication user's replica is refused with -NOPERM and never attaches.
func TestUsersReplicas(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{Users: []proxy.User{
		{Name: "repl", Password: "s3cret", Replication: true},
		{Name: "ops", Password: "pw:with:colons"},
	}})
	r := redistest.Start(t, p.replicaArgs("--masteruser", "repl", "--masterauth", "s3cret")...)
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, r)

	denied := redistest.Start(t, p.replicaArgs("--masteruser", "ops", "--masterauth", "pw:with:colons")...)
	denied.WaitLog(t, "NOPERM User ops has no permissions to run the 'psync' command", 1, syncTimeout)
	if n := p.info("replication")["connected_slaves"]; n != "1" {
		t.Fatalf("proxy connected_slaves:%s, want 1 (the noreplication user's replica refused)", n)
	}
	wrong := redistest.Start(t, p.replicaArgs("--masteruser", "repl", "--masterauth", "nope")...)
	wrong.WaitLog(t, "Unable to AUTH to MASTER", 1, syncTimeout)
}

// The command-level rules, on a proxy whose master is unreachable (none is needed).
func TestUsersCommands(t *testing.T) {
	p := startProxyAddr(t, proxy.Config{MasterAddr: "127.0.0.1:1", Users: []proxy.User{
		{Name: "repl", Password: "s3cret", Replication: true},
		{Name: "ops", Password: "pw:with:colons"},
		{Name: "admin", Password: "a", Admin: true},
	}})
	c := redistest.Dial(t, p.Addr())
	defer c.Close()
	wantPrefix(t, "PING before AUTH", reply(t, c, "PING"), "-NOAUTH")
	// With users and no requirepass the default user is off.
	wantPrefix(t, "AUTH <pass>", reply(t, c, "AUTH", "s3cret"), "-WRONGPASS invalid username-password pair or user is disabled.")
	wantPrefix(t, "AUTH default", reply(t, c, "AUTH", "default", ""), "-WRONGPASS")
	wantPrefix(t, "AUTH wrong password", reply(t, c, "AUTH", "ops", "pw"), "-WRONGPASS")
	wantPrefix(t, "AUTH unknown user", reply(t, c, "AUTH", "nobody", "pw:with:colons"), "-WRONGPASS")
	wantPrefix(t, "PING after failed AUTHs", reply(t, c, "PING"), "-NOAUTH")
	wantPrefix(t, "AUTH ops", reply(t, c, "AUTH", "ops", "pw:with:colons"), "OK")
	wantPrefix(t, "PING", reply(t, c, "PING"), "PONG")
	wantPrefix(t, "INFO", reply(t, c, "INFO", "replication"), "# Replication")
	for _, cmd := range [][]string{{"ROLE"}, {"CONFIG", "GET", "repl-timeout"}, {"CLIENT", "ID"}} {
		if got := reply(t, c, cmd...); strings.HasPrefix(got, "-") {
			t.Fatalf("%v as a noreplication user: %s", cmd, got)
		}
	}
	for _, cmd := range [][]string{
		{"PSYNC", "?", "-1"}, {"SYNC"}, {"REPLCONF", "listening-port", "6379"},
		{"CONFIG", "SET", "repl-timeout", "10"}, {"SHUTDOWN"},
	} {
		name := strings.ToLower(cmd[0])
		if name == "config" {
			name = "config|set"
		}
		wantPrefix(t, strings.Join(cmd, " "), reply(t, c, cmd...),
			"-NOPERM User ops has no permissions to run the '"+name+"' command")
	}
	// A wrong HELLO AUTH changes nothing; a right one switches user.
	wantPrefix(t, "HELLO wrong", reply(t, c, "HELLO", "2", "AUTH", "repl", "x"), "-WRONGPASS")
	wantPrefix(t, "still ops", reply(t, c, "REPLCONF", "listening-port", "6379"), "-NOPERM User ops")
	if err := c.Send("HELLO", "2", "AUTH", "repl", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.ReadValue(); err != nil || v.Type() != tresp.Array {
		t.Fatalf("HELLO 2 AUTH repl: %v %v", v, err)
	}
	wantPrefix(t, "REPLCONF as repl", reply(t, c, "REPLCONF", "listening-port", "6379"), "OK")
	wantPrefix(t, "CONFIG SET as repl", reply(t, c, "CONFIG", "SET", "repl-timeout", "10"), "-NOPERM User repl has no permissions to run the 'config|set' command")
	wantPrefix(t, "AUTH admin", reply(t, c, "AUTH", "admin", "a"), "OK")
	wantPrefix(t, "CONFIG SET as admin", reply(t, c, "CONFIG", "SET", "repl-timeout", "10"), "OK")
	wantPrefix(t, "PSYNC as admin", reply(t, c, "PSYNC", "?", "-1"), "-NOPERM User admin has no permissions to run the 'psync' command")

	// requirepass is the default user's, with every permission, beside the users.
	q := startProxyAddr(t, proxy.Config{MasterAddr: "127.0.0.1:1", RequirePass: "rp",
		Users: []proxy.User{{Name: "ops", Password: "o"}}})
	d := redistest.Dial(t, q.Addr())
	defer d.Close()
	wantPrefix(t, "AUTH rp", reply(t, d, "AUTH", "rp"), "OK")
	wantPrefix(t, "AUTH default rp", reply(t, d, "AUTH", "default", "rp"), "OK")
	wantPrefix(t, "REPLCONF as default", reply(t, d, "REPLCONF", "listening-port", "6379"), "OK")
}

// nonLoopbackIP returns an address of this host that is not loopback, or skips the test.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP
		}
	}
	t.Skip("this host has no non-loopback IPv4 address to connect from")
	return nil
}

// serveOn runs a proxy (with an unreachable master) on a listener at ip, plain and, when
// certs are given, TLS too, and returns both addresses.
func serveOn(t *testing.T, ip net.IP, cfg proxy.Config, certs *testCerts) (plain, secure string) {
	t.Helper()
	cfg.MasterAddr, cfg.Dir = "127.0.0.1:1", t.TempDir()
	cfg.Logger = zaptest.NewLogger(t)
	if certs != nil {
		cfg = certs.proxyConfig(cfg)
		cfg.TLSReplication, cfg.TLSAuthClients = false, proxy.TLSAuthNo
	}
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	lns := []net.Listener{ln}
	plain = ln.Addr().String()
	if certs != nil {
		raw, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		secure = raw.Addr().String()
		tln, err := p.TLSListener(raw)
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, tln)
	}
	t.Cleanup(serveAll(t, p, lns...).stop)
	return plain, secure
}

// Protected mode as Redis does it: without a password or a user, a client that is not on
// loopback gets -DENIED (on the TLS port too, after the handshake); a user counts as a
// password.
func TestProtectedMode(t *testing.T) {
	ip := nonLoopbackIP(t)
	certs := newTestCerts(t)
	plain, secure := serveOn(t, ip, proxy.Config{ProtectedMode: true}, &certs)
	c := redistest.Dial(t, plain)
	defer c.Close()
	wantPrefix(t, "non-loopback client, no password", reply(t, c, "PING"), "-DENIED psync-proxy is running in protected mode")

	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", secure,
		&tls.Config{RootCAs: certs.caPool(t), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := tc.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	v, _, err := tresp.NewReader(tc).ReadValue()
	if err != nil {
		t.Fatalf("TLS PING: %v", err)
	}
	wantPrefix(t, "non-loopback TLS client, no password", "-"+v.String(), "-DENIED psync-proxy is running in protected mode")

	plain, _ = serveOn(t, ip, proxy.Config{ProtectedMode: true, Users: []proxy.User{{Name: "u", Password: "p"}}}, nil)
	d := redistest.Dial(t, plain)
	defer d.Close()
	wantPrefix(t, "non-loopback client, a user set", reply(t, d, "PING"), "-NOAUTH")
	wantPrefix(t, "AUTH", reply(t, d, "AUTH", "u", "p"), "OK")
	wantPrefix(t, "PING", reply(t, d, "PING"), "PONG")
}
