// Package redistest runs real redis-server processes for tests, the way
// net/http/httptest runs HTTP servers.
//
// Start launches a redis-server on a free loopback port with a private
// directory under t.TempDir(), persistence off and DEBUG enabled, and waits
// until it answers PING. t.Cleanup ends every process and goroutine the
// package starts. There is no mock: the binaries are Debian's redis-server,
// redis-cli and redis-benchmark (`make test` installs them).
//
//	master := redistest.Start(t, "--repl-backlog-size", "16mb")
//	replica := redistest.Start(t)
//	replica.ReplicaOf(t, master.Addr())
//	redistest.WaitOnline(t, replica, 10*time.Second)
//	redistest.WriteBytes(t, master, 2<<20)
//	redistest.WaitInSync(t, 10*time.Second, master, replica)
//
// StartCompat runs the reference servers built from ../shared/compat instead
// (CompatBinary: Redis 8.8.0, Valkey 9.0.4), with the same options. A Server
// knows its Flavor and Version; CountLog and WaitLog take phrases in Redis's
// words and also match Valkey's ("primary" for "master", see LogPhrase).
//
//	master := redistest.StartCompat(t, redistest.Valkey90)
//	replica := redistest.StartCompat(t, redistest.Valkey90)
//	...
//	replica.WaitLog(t, "MASTER <-> REPLICA sync: Finished with success", 1, 10*time.Second)
//
// Every helper takes a TB, so the benchmark harness can pass its own.
// Helpers that Fatal must be called from the goroutine running the test.
package redistest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TB is the subset of testing.TB the helpers use (so the bench harness can
// pass its own). If the value also has a Failed() bool method, cleanups use
// it to log server logs only for failed tests.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Name() string
}

// failed reports whether t can tell it failed and did.
func failed(t TB) bool {
	f, ok := t.(interface{ Failed() bool })
	return ok && f.Failed()
}

// FreePort returns a free loopback TCP port (listen on 127.0.0.1:0, note the
// port, close). Another process may take the port before it is used; Start
// retries with a new port when that happens.
func FreePort(t TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: listen on 127.0.0.1:0: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("redistest: close listener: %v", err)
	}
	return port
}

// findBinary returns the path of a Redis tool: /usr/bin/<name> (where
// Debian installs it) or else <name> on $PATH.
func findBinary(t TB, name string) string {
	t.Helper()
	p := filepath.Join("/usr/bin", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("redistest: %s not found in /usr/bin or $PATH; run `make test`, which installs it (apt-get install -y redis-server)", name)
	return ""
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// countLines counts the lines of text that contain one of the phrases.
func countLines(text string, phrases []string) int {
	n := 0
	for line := range strings.Lines(text) {
		if logMatch(line, phrases) {
			n++
		}
	}
	return n
}

// TCPPair returns the two ends of a loopback TCP connection, closed by t.Cleanup.
func TCPPair(t TB) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: listen: %v", err)
	}
	defer ln.Close()
	if a, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatalf("redistest: dial: %v", err)
	}
	if b, err = ln.Accept(); err != nil {
		t.Fatalf("redistest: accept: %v", err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
