// Package upstream is psync-proxy's side of the master link: it is a replica of the master.
// It dials, runs the replica handshake, PSYNCs with the history the proxy holds, receives
// the RDB of a full resync into a new snapshot, and appends the stream to the backlog,
// publishing it at command boundaries. The same dial, handshake and RDB receive serve the
// refresher, which fetches new snapshots on a second connection.
//
// The master to follow is a Master value that may be replaced while running (Link.Follow).
package upstream

import (
	"fmt"
	"net"
	"strconv"
)

// Master is the master to follow and how to authenticate to it (Redis's replicaof,
// masteruser and masterauth). TLS is the link's (tls-replication), set in Config.
type Master struct {
	Addr     string // host:port
	User     string // ACL user; "" for AUTH <password>
	Password string // "" for no AUTH
}

// HostPort splits Addr for INFO and ROLE.
func (m Master) HostPort() (string, int) {
	host, port, _ := net.SplitHostPort(m.Addr)
	n, _ := strconv.Atoi(port)
	return host, n
}

// Check reports whether Addr is a host:port.
func (m Master) Check() error {
	if m.Addr == "" {
		return fmt.Errorf("no master address")
	}
	if _, _, err := net.SplitHostPort(m.Addr); err != nil {
		return fmt.Errorf("master address %q: %w", m.Addr, err)
	}
	return nil
}
