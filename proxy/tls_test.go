package proxy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// testCerts are PEM files in a temporary directory: a CA, a certificate for servers that
// also serves as their client certificate (Redis uses tls-cert-file both ways), and a
// client-only certificate for redis-cli. They are valid for an hour.
type testCerts struct {
	ca, cert, key, clientCert, clientKey string
}

func newTestCerts(t *testing.T) testCerts {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "psync-proxy test CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	c := testCerts{ca: filepath.Join(dir, "ca.crt")}
	writePEM(t, c.ca, "CERTIFICATE", caDER)
	leaf := func(serial int64, name string, eku ...x509.ExtKeyUsage) (string, string) {
		k := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Minute),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  eku,
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kDER, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writePEM(t, certPath, "CERTIFICATE", der)
		writePEM(t, keyPath, "EC PRIVATE KEY", kDER)
		return certPath, keyPath
	}
	c.cert, c.key = leaf(2, "server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	c.clientCert, c.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return c
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serverArgs are redis-server's TLS options with these certificates.
func (c testCerts) serverArgs() []string {
	return []string{"--tls-cert-file", c.cert, "--tls-key-file", c.key, "--tls-ca-cert-file", c.ca}
}

// proxyConfig sets cfg's TLS fields to these certificates, with tls-replication.
func (c testCerts) proxyConfig(cfg proxy.Config) proxy.Config {
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCACertFile = c.cert, c.key, c.ca
	cfg.TLSReplication = true
	return cfg
}

// listenTLSRaw opens the socket of the proxy's TLS listener on tp.tlsPort (a new port the
// first time).
func (tp *testProxy) listenTLSRaw() net.Listener {
	tp.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(tp.tlsPort))
	if err != nil {
		tp.t.Fatalf("listen TLS: %v", err)
	}
	tp.tlsPort = ln.Addr().(*net.TCPAddr).Port
	return ln
}

// tlsReplicaArgs make a redis-server a replica of the proxy's TLS port, over TLS.
func (tp *testProxy) tlsReplicaArgs(c testCerts, extra ...string) []string {
	args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(tp.tlsPort), "--tls-replication", "yes"}, c.serverArgs()...)
	return append(args, extra...)
}

// startTLSMaster starts a master that also listens with TLS, and returns it with its TLS
// address. Its plain port serves the test's own helpers (INFO, DEBUG DIGEST,
// redis-benchmark); the proxy is only given the TLS port, where a plain connection fails.
func startTLSMaster(t *testing.T, c testCerts, extra ...string) (*redistest.Server, string) {
	t.Helper()
	port := redistest.FreePort(t)
	m := redistest.Start(t, append(append([]string{"--tls-port", strconv.Itoa(port)}, c.serverArgs()...), extra...)...)
	return m, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// The whole path over TLS: master -> proxy (tls-replication) -> replica on the proxy's TLS
// port, which full-syncs from a 4 MB snapshot, under load with 1 MB values. Then a partial resync after the replica restarts, caught
// up from the disk backlog's files (the path that uses sendfile on plain TCP) and its RAM
// tail (writev), and a full sync from the snapshot for a second replica. Every byte a replica
// gets passes through its tls.Conn; one plaintext byte would break its TLS session, and one
// wrong byte its digest.
func TestTLSReplication(t *testing.T) {
	certs := newTestCerts(t)
	m, tlsAddr := startTLSMaster(t, certs, "--repl-backlog-size", "1mb")
	redistest.Benchmark(t, m, "-t", "set", "-n", "2000", "-d", "2000", "-r", "100000000") // a snapshot of some size
	p := startProxyVia(t, tlsAddr, certs.proxyConfig(proxy.Config{
		BacklogSize: 256 << 20, BacklogMode: proxy.BacklogDisk, BacklogRAMTail: 256 << 10,
	}))
	if p.tlsPort == 0 {
		t.Fatal("the proxy has no TLS listener")
	}
	r1 := redistest.Start(t, p.tlsReplicaArgs(certs)...)
	redistest.WaitOnline(t, r1, syncTimeout)
	stop := redistest.BenchmarkAsync(t, m, "-t", "set,lpush,incr", "-P", "16", "-r", "10000", "-n", "50000", "-d", "100")
	mixedLoad(t, m, 1)
	stop()
	redistest.WaitInSync(t, syncTimeout, m, r1)
	if got := stat(t, m, "sync_full"); got != 1 {
		t.Fatalf("master sync_full = %d, want 1 (the proxy only)", got)
	}

	// Partial resync over TLS, 8 MB behind: far more than the 256 KB RAM tail, so the
	// catch-up is read from the segment files.
	partialBefore := p.stat("sync_partial_ok")
	r1.ShutdownSave(t)
	redistest.WriteBytes(t, m, 8<<20)
	r1.Restart(t)
	redistest.WaitInSync(t, syncTimeout, m, r1)
	if n := r1.CountLog(t, "Master accepted a Partial Resynchronization"); n != 1 {
		t.Fatalf("replica: %d partial resyncs in its log, want 1", n)
	}
	if got := p.stat("sync_partial_ok"); got != partialBefore+1 {
		t.Fatalf("proxy sync_partial_ok %d, want %d", got, partialBefore+1)
	}

	// A full sync from the snapshot over TLS, then the stream from the backlog, while the
	// master keeps writing.
	fullBefore := p.stat("sync_full")
	r2 := redistest.Start(t, p.tlsReplicaArgs(certs)...)
	redistest.WriteBytes(t, m, 2<<20)
	redistest.WaitInSync(t, syncTimeout, m, r1, r2)
	if got := p.stat("sync_full"); got != fullBefore+1 {
		t.Fatalf("proxy sync_full %d, want %d", got, fullBefore+1)
	}
	if got := stat(t, m, "sync_full"); got != 1 {
		t.Fatalf("master sync_full = %d, want 1: the replica's full sync came from the proxy's snapshot", got)
	}
	if n := p.info("replication")["connected_slaves"]; n != "2" {
		t.Fatalf("proxy connected_slaves:%s, want 2", n)
	}
}

// redisCLITLS runs redis-cli over TLS against port with extra arguments (certificates).
func redisCLITLS(port int, args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port), "--tls", "--no-auth-warning"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Client certificates with tls-auth-clients yes (the default) and optional, redis-cli over
// TLS, and tls-client-cert-file on the master link.
func TestTLSClients(t *testing.T) {
	certs := newTestCerts(t)
	_, tlsAddr := startTLSMaster(t, certs)
	p := startProxyVia(t, tlsAddr, certs.proxyConfig(proxy.Config{}))
	withCert := []string{"--cacert", certs.ca, "--cert", certs.clientCert, "--key", certs.clientKey}
	out, err := redisCLITLS(p.tlsPort, append(withCert, "INFO", "replication")...)
	if err != nil || redistest.ParseInfo(out)["master_link_status"] != "up" {
		t.Fatalf("redis-cli --tls INFO: %v\n%s", err, out)
	}
	if out, err := redisCLITLS(p.tlsPort, "--cacert", certs.ca, "PING"); err == nil && out == "PONG" {
		t.Fatalf("a client without a certificate was served with tls-auth-clients yes: %s", out)
	}
	// The plain listener still speaks plain RESP.
	if got := p.do("PING"); got != "PONG" {
		t.Fatalf("plain PING: %s", got)
	}

	q := startProxyVia(t, tlsAddr, certs.proxyConfig(proxy.Config{TLSAuthClients: proxy.TLSAuthOptional}))
	if out, err := redisCLITLS(q.tlsPort, "--cacert", certs.ca, "PING"); err != nil || out != "PONG" {
		t.Fatalf("tls-auth-clients optional, no certificate: %v %s", err, out)
	}
	if out, err := redisCLITLS(q.tlsPort, append(withCert, "PING")...); err != nil || out != "PONG" {
		t.Fatalf("tls-auth-clients optional, with a certificate: %v %s", err, out)
	}

	// The master asks for a client certificate (its tls-auth-clients yes): a proxy with only
	// tls-client-cert-file, and no listener certificate, presents that one.
	startProxyVia(t, tlsAddr, proxy.Config{TLSReplication: true, TLSCACertFile: certs.ca,
		TLSClientCertFile: certs.clientCert, TLSClientKeyFile: certs.clientKey})
}

// A master whose certificate the proxy's CA does not sign is refused: the link never comes up.
func TestTLSMasterUntrusted(t *testing.T) {
	certs, other := newTestCerts(t), newTestCerts(t)
	_, tlsAddr := startTLSMaster(t, certs, "--tls-auth-clients", "no")
	core, logs := observer.New(zap.InfoLevel)
	p := startProxyAddr(t, proxy.Config{
		MasterAddr: tlsAddr, TLSReplication: true, TLSCACertFile: other.ca, Logger: zap.New(core),
	})
	redistest.Eventually(t, syncTimeout, func() error {
		if logs.FilterMessageSnippet("certificate signed by unknown authority").Len() == 0 {
			return errString("no certificate error logged yet")
		}
		return nil
	})
	if s := p.info("replication")["master_link_status"]; s != "down" {
		t.Fatalf("master_link_status %s with an untrusted master certificate, want down", s)
	}
}

// caPool returns the test CA as a pool, for Go TLS clients.
func (c testCerts) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	b, err := os.ReadFile(c.ca)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("CA %s: %v", c.ca, err)
	}
	return pool
}

// TLS only, as an operator runs it: the psync-proxy binary with --listen on port 0 (no plain
// listener, as Redis's "port 0") and --tls-port, replicating a master over TLS. redis-cli and
// a stock replica reach it over TLS; nothing listens in plain text.
func TestTLSOnlyBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the proxy binary")
	}
	certs := newTestCerts(t)
	m, tlsAddr := startTLSMaster(t, certs)
	port := redistest.FreePort(t)
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(buildProxyBinary(t, false), "--master", tlsAddr, "--listen", "127.0.0.1:0",
		"--tls-port", strconv.Itoa(port), "--tls-cert-file", certs.cert, "--tls-key-file", certs.key,
		"--tls-ca-cert-file", certs.ca, "--tls-replication", "yes", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("proxy log:\n%s", b)
		}
	})
	withCert := []string{"--cacert", certs.ca, "--cert", certs.clientCert, "--key", certs.clientKey}
	redistest.Eventually(t, 30*time.Second, func() error {
		out, err := redisCLITLS(port, append(withCert, "INFO", "replication")...)
		if err != nil || redistest.ParseInfo(out)["master_link_status"] != "up" {
			return fmt.Errorf("redis-cli --tls INFO: %v %s", err, out)
		}
		return nil
	})
	r := redistest.Start(t, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(port), "--tls-replication", "yes"}, certs.serverArgs()...)...)
	redistest.WaitOnline(t, r, time.Minute)
	redistest.Benchmark(t, m, "-t", "set", "-n", "20000", "-d", "512", "-r", "100000")
	redistest.WaitInSync(t, time.Minute, m, r)

	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if ready := strings.Count(string(b), "Ready to accept replicas on"); ready != 1 || !strings.Contains(string(b), "(TLS)") {
		t.Fatalf("want one listener, TLS; the log says:\n%s", b)
	}
	// And that listener does not answer plain RESP.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("PING\r\n"))
		reply, _ := io.ReadAll(c)
		c.Close()
		if bytes.Contains(reply, []byte("PONG")) {
			t.Fatalf("the TLS port answered a plain PING: %q", reply)
		}
	}
}
