package conn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// selfSigned returns a certificate for localhost and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// On a TLS connection none of the raw-socket paths is taken, and a snapshot copied to it
// arrives intact: through sendfile it would go out as plaintext and break the session.
func TestTLSConnFallsBack(t *testing.T) {
	plainClient, server := redistest.TCPPair(t)
	if _, ok := New(server).RawTCP(); !ok {
		t.Fatal("plain TCP: no raw socket; want the fast paths")
	}
	cert, pool := selfSigned(t)
	srv := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	cli := tls.Client(plainClient, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	defer srv.Close()
	defer cli.Close()
	c := New(srv)
	if _, ok := c.RawTCP(); ok || !c.IsTLS() {
		t.Fatal("TLS: a raw socket was offered; want none")
	}

	data := make([]byte, 3<<20)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "snapshot.rdb")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(c, f, int64(len(data))) // as a full sync sends the snapshot
		errc <- err
	}()
	cli.SetDeadline(time.Now().Add(time.Minute))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(cli, got); err != nil {
		t.Fatalf("reading through TLS: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("copy: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the file arrived altered through TLS")
	}
}
