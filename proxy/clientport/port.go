// Package clientport is psync-proxy's client port: the listeners, the framing and limits of
// what clients send, authentication, and the commands a replica or an operator runs (one
// table: PING, AUTH, REPLCONF, PSYNC, INFO, ROLE, CONFIG, CLIENT, ...). A PSYNC or SYNC hands
// the connection to a replica session (package downstream). INFO, ROLE and CONFIG render
// what the other parts report of themselves.
package clientport

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy/downstream"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/streamrate"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// Config configures a Port: the parts it answers for, and its own limits.
type Config struct {
	History   *history.History
	Link      *upstream.Link
	Refresher *upstream.Refresher
	Sessions  *downstream.Sessions
	// ReplTimeout and SetReplTimeout read and change the live repl-timeout.
	ReplTimeout    func() time.Duration
	SetReplTimeout func(time.Duration)
	// Shutdown starts the proxy's shutdown (SHUTDOWN); it must not wait for it.
	Shutdown func()
	// Follow makes addr the master (REPLICAOF), saying who asked, and reports whether it
	// changed; false when addr is the master followed now.
	Follow func(addr, source, who string) bool

	RequirePass   string
	Users         []User
	ProtectedMode bool
	// Redis's client limits: maxclients, proto-max-bulk-len, client-query-buffer-limit,
	// timeout; HandshakeTimeout is the proxy's own (negative: none).
	MaxClients             int
	ProtoMaxBulkLen        int64
	ClientQueryBufferLimit int64
	Timeout                time.Duration
	HandshakeTimeout       time.Duration
	Version, RunID         string
	Started                time.Time
	Log                    *zap.SugaredLogger
	// Rate measures the master's stream rate for INFO backlog; the Server samples it.
	Rate *streamrate.Meter
	// ConfigFile is the config file the proxy was started with (INFO config_file), and
	// RewriteConfig writes live values into it, by directive name (CONFIG REWRITE); nil
	// without a file.
	ConfigFile    string
	RewriteConfig func(live map[string][]string) error
	// Settings are the values of options the port does not apply itself (bind, port,
	// loglevel, tls-cert-file, ...), by directive name: CONFIG GET shows them, read-only, and
	// CONFIG REWRITE writes them back.
	Settings map[string]string
	// RefreshMargin is snapshot-refresh-margin as configured (0: a quarter of the backlog).
	RefreshMargin int64
}

// Port serves the client port on any number of listeners.
type Port struct {
	cfg  Config
	log  *zap.SugaredLogger
	auth *authenticator
	lim  *inputLimits

	nextID  atomic.Int64
	clients atomic.Int64 // connected clients, replicas included
	reg     registry     // the clients, replicas included (clients.go)
	stats   portStats

	rewriteMu sync.Mutex // one CONFIG REWRITE at a time
	pubsub    hub        // SUBSCRIBE and PUBLISH (pubsub.go)

	mu      sync.Mutex
	servers []*redcon.Server
	lns     []net.Listener
	closed  bool
}

type portStats struct {
	connections, rejected atomic.Int64
	queryBufLimit         atomic.Int64 // clients closed by client-query-buffer-limit
}

// ErrClosed is returned by Serve once the port is closed.
var ErrClosed = errors.New("clientport: closed")

// New checks cfg and prepares a Port.
func New(cfg Config) (*Port, error) {
	if err := CheckUsers(cfg.Users); err != nil {
		return nil, err
	}
	p := &Port{cfg: cfg, log: cfg.Log, auth: newAuthenticator(cfg.RequirePass, cfg.Users)}
	p.lim = &inputLimits{maxBulk: cfg.ProtoMaxBulkLen, maxQuery: cfg.ClientQueryBufferLimit, log: cfg.Log,
		overflow: &p.stats.queryBufLimit}
	return p, nil
}

// Serve accepts clients on ln until Close; it returns ErrClosed then, or the listener's
// error if it fails first.
func (p *Port) Serve(ln net.Listener) error {
	srv := redcon.NewServer("", p.handle, p.accept, p.closedConn)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	p.servers = append(p.servers, srv)
	p.lns = append(p.lns, ln)
	p.mu.Unlock()
	err := srv.Serve(framedListener{ln, p.lim})
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err == nil {
		err = errors.New("the listener stopped")
	}
	return err
}

// Close stops every listener and closes the clients still connected (not the replicas: their
// sessions are downstream's).
func (p *Port) Close() {
	p.mu.Lock()
	p.closed = true
	servers, lns := p.servers, p.lns
	p.mu.Unlock()
	for i, srv := range servers {
		srv.Close()
		lns[i].Close() // in case srv.Serve had not started: its Accept then fails at once
	}
	p.pubsub.close()
}

const protectedModeMsg = "DENIED psync-proxy is running in protected mode because protected mode is enabled and no password is set. " +
	"In this mode connections are only accepted from the loopback interface. " +
	"To accept others, set a password with --requirepass or add users with --user, or disable protected mode with --protected-mode no."

func (p *Port) accept(rc redcon.Conn) bool {
	p.stats.connections.Add(1)
	cc := rc.NetConn().(*clientConn)
	if !p.admit(cc) {
		return false
	}
	c := &client{id: p.nextID.Add(1), conn: cc, user: p.auth.initial()}
	c.info.init(cc.Conn.Conn)
	if p.cfg.ProtectedMode && !p.auth.required && !isLoopback(rc.RemoteAddr()) {
		p.stats.rejected.Add(1)
		if !cc.IsTLS() {
			cc.Write([]byte("-" + protectedModeMsg + "\r\n"))
			return false
		}
		// The accept callback must not wait for a TLS handshake: refused at the first command.
		c.denied = true
	}
	p.clients.Add(1)
	c.noteUser()
	p.reg.add(c)
	rc.SetContext(c)
	return true
}

// admit applies maxclients first, as Redis's acceptCommonHandler does, then arms the new
// connection's handshake deadline and client timeout.
func (p *Port) admit(cc *clientConn) bool {
	if p.clients.Load() >= int64(p.cfg.MaxClients) {
		p.stats.rejected.Add(1)
		cc.Conn.Conn.SetWriteDeadline(time.Now().Add(refusalDeadline))
		cc.Conn.Conn.Write([]byte("-ERR max number of clients reached\r\n"))
		return false
	}
	cc.in.authed.Store(!p.auth.required)
	if p.cfg.HandshakeTimeout > 0 {
		cc.in.handshakeBy.Store(time.Now().Add(p.cfg.HandshakeTimeout).UnixNano())
	}
	cc.StoreIdleTimeout(p.cfg.Timeout)
	return true
}

func (p *Port) closedConn(rc redcon.Conn, err error) {
	// A detached connection now belongs to a replica session, which counts itself out.
	if err != nil && err.Error() == "detached" {
		return
	}
	p.clients.Add(-1)
	if c, ok := rc.Context().(*client); ok {
		p.reg.remove(c)
	}
	cc := rc.NetConn().(*clientConn)
	if err != nil && cc.HandshakeFailed() {
		p.log.Warnf("Error accepting a client connection: %v (addr=%s)", err, rc.RemoteAddr())
		return
	}
	p.logTimeout(cc, err)
}

// logTimeout logs a client closed by its handshake deadline or by --timeout, at debug level
// as Redis logs idle clients at verbose: a flood of them must not flood the log.
func (p *Port) logTimeout(cc *clientConn, err error) {
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		return
	}
	if cc.in.handshakeBy.Load() != 0 {
		p.log.Debugf("Closing client %s: no authenticated command within handshake-timeout (%v)",
			cc.RemoteAddr(), p.cfg.HandshakeTimeout)
		return
	}
	p.log.Debugf("Closing idle client %s", cc.RemoteAddr())
}

// Stats are the port's counters, with Redis's INFO names in the comments.
type Stats struct {
	Clients       int64 // connected_clients
	Connections   int64 // total_connections_received
	Rejected      int64 // rejected_connections
	QueryBufLimit int64 // client_query_buffer_limit_disconnections
}

// Stats returns the counters now.
func (p *Port) Stats() Stats {
	return Stats{Clients: p.clients.Load(), Connections: p.stats.connections.Load(),
		Rejected: p.stats.rejected.Load(), QueryBufLimit: p.stats.queryBufLimit.Load()}
}
