package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLS follows Redis's options: tls-cert-file and tls-key-file are the proxy's certificate,
// tls-ca-cert-file the CAs that verify both replicas' client certificates and the master's
// certificate, tls-auth-clients whether replicas must present one, tls-replication whether
// the master link uses TLS. As in Redis, the master's certificate is checked against the CAs
// but not against its host name, and the proxy's own certificate is its client certificate
// unless tls-client-cert-file is set.

// TLS client-certificate policies (tls-auth-clients).
const (
	TLSAuthYes      = "yes"
	TLSAuthNo       = "no"
	TLSAuthOptional = "optional"
)

// tlsConfigs builds the server and client TLS configurations cfg asks for; either is nil when
// unused. The files are read once, at start.
func (c *Config) tlsConfigs() (server, client *tls.Config, err error) {
	switch c.TLSAuthClients {
	case "":
		c.TLSAuthClients = TLSAuthYes
	case TLSAuthYes, TLSAuthNo, TLSAuthOptional:
	default:
		return nil, nil, fmt.Errorf("proxy: tls-auth-clients must be yes, no or optional, not %q", c.TLSAuthClients)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, nil, errors.New("proxy: tls-cert-file and tls-key-file go together")
	}
	if (c.TLSClientCertFile == "") != (c.TLSClientKeyFile == "") {
		return nil, nil, errors.New("proxy: tls-client-cert-file and tls-client-key-file go together")
	}
	serving := c.TLSCertFile != ""
	if !serving && !c.TLSReplication {
		return nil, nil, nil
	}
	var pool *x509.CertPool
	if c.TLSCACertFile != "" {
		pem, err := os.ReadFile(c.TLSCACertFile)
		if err != nil {
			return nil, nil, fmt.Errorf("proxy: tls-ca-cert-file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("proxy: tls-ca-cert-file %s: no PEM certificate in it", c.TLSCACertFile)
		}
	} else if c.TLSReplication || (serving && c.TLSAuthClients != TLSAuthNo) {
		return nil, nil, errors.New("proxy: tls-ca-cert-file must be specified when tls-replication or tls-auth-clients are enabled")
	}
	var own tls.Certificate
	if serving {
		if own, err = tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return nil, nil, fmt.Errorf("proxy: tls-cert-file/tls-key-file: %w", err)
		}
		server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{own}, ClientCAs: pool}
		switch c.TLSAuthClients {
		case TLSAuthYes:
			server.ClientAuth = tls.RequireAndVerifyClientCert
		case TLSAuthOptional:
			server.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	if c.TLSReplication {
		client = &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The chain is verified in VerifyConnection, without the host name (see above).
			InsecureSkipVerify: true,
			VerifyConnection:   verifyChain(pool),
		}
		switch {
		case c.TLSClientCertFile != "":
			cc, err := tls.LoadX509KeyPair(c.TLSClientCertFile, c.TLSClientKeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("proxy: tls-client-cert-file/tls-client-key-file: %w", err)
			}
			client.Certificates = []tls.Certificate{cc}
		case serving:
			client.Certificates = []tls.Certificate{own}
		}
	}
	return server, client, nil
}

// verifyChain checks the master's certificate chain against roots, as OpenSSL's
// SSL_VERIFY_PEER does for Redis: a trusted chain, valid now, fit for a server.
func verifyChain(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the master presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("tls: the master's certificate: %w", err)
		}
		return nil
	}
}

// settings are Config.Settings with the TLS options, which CONFIG GET reports.
func (c *Config) settings() map[string]string {
	out := map[string]string{
		"tls-cert-file": c.TLSCertFile, "tls-key-file": c.TLSKeyFile, "tls-ca-cert-file": c.TLSCACertFile,
		"tls-client-cert-file": c.TLSClientCertFile, "tls-client-key-file": c.TLSClientKeyFile,
		"tls-auth-clients": c.TLSAuthClients, "tls-replication": map[bool]string{true: "yes", false: "no"}[c.TLSReplication],
	}
	// Sentinel mode's options (follow.go).
	out["sentinel"], out["sentinel-master"] = strings.Join(c.SentinelAddrs, ","), c.SentinelMaster
	out["sentinel-user"], out["sentinel-password"] = c.SentinelUser, c.SentinelPassword
	if out["tls-auth-clients"] == "" {
		out["tls-auth-clients"] = TLSAuthYes
	}
	for k, v := range c.Settings {
		out[k] = v
	}
	return out
}
