package proxy

import (
	"strconv"
	"strings"

	"github.com/tidwall/redcon"
)

// client is the per-connection state of a downstream connection before it becomes a replica.
type client struct {
	id   int64
	conn *trackedConn
	user *account // nil until AUTH when a password is required
	// denied is a TLS client refused by protected mode: it gets -DENIED on its first command,
	// because the accept callback must not wait for a TLS handshake.
	denied bool
	// What the peer said with REPLCONF, as Redis records it for a future replica.
	listeningPort int
	ipAddress     string
	capaEOF       bool
	capaPsync2    bool
	rdbOnly       bool
}

const protectedModeMsg = "DENIED psync-proxy is running in protected mode because protected mode is enabled and no password is set. " +
	"In this mode connections are only accepted from the loopback interface. " +
	"To accept others, set a password with --requirepass or add users with --user, or disable protected mode with --protected-mode no."

func (p *Proxy) accept(conn redcon.Conn) bool {
	p.stats.connections.Add(1)
	tc := conn.NetConn().(*trackedConn)
	if !p.admitClient(tc) {
		return false
	}
	c := &client{id: p.nextID.Add(1), conn: tc, user: p.auth.initial()}
	if p.cfg.ProtectedMode && !p.auth.required && !isLoopback(conn.RemoteAddr()) {
		p.stats.rejected.Add(1)
		if !tc.isTLS() {
			tc.Write([]byte("-" + protectedModeMsg + "\r\n"))
			return false
		}
		c.denied = true
	}
	p.clients.Add(1)
	conn.SetContext(c)
	return true
}

func (p *Proxy) closed(conn redcon.Conn, err error) {
	// A detached connection now belongs to a replica session, which counts itself out.
	if err != nil && err.Error() == "detached" {
		return
	}
	p.clients.Add(-1)
	tc := conn.NetConn().(*trackedConn)
	if err != nil && tc.handshakeFailed() {
		p.log.Warnf("Error accepting a client connection: %v (addr=%s)", err, conn.RemoteAddr())
		return
	}
	p.logClientTimeout(tc, err)
}

// handle runs one downstream command. Replies are queued and flushed by redcon per pipeline.
func (p *Proxy) handle(conn redcon.Conn, cmd redcon.Command) {
	c := conn.Context().(*client)
	defer func() { c.conn.commandDone(c.user != nil) }()
	name := strings.ToLower(string(cmd.Args[0]))
	args := cmd.Args[1:]
	if c.denied {
		conn.WriteError(protectedModeMsg)
		conn.Close()
		return
	}
	if c.user == nil && name != "auth" && name != "quit" && name != "hello" {
		conn.WriteError("NOAUTH Authentication required.")
		return
	}
	if c.user != nil && !permitted(conn, c, name, args) {
		return
	}
	switch name {
	case "ping":
		switch len(args) {
		case 0:
			conn.WriteString("PONG")
		case 1:
			conn.WriteBulk(args[0])
		default:
			wrongArity(conn, name)
		}
	case "echo":
		if len(args) != 1 {
			wrongArity(conn, name)
			return
		}
		conn.WriteBulk(args[0])
	case "auth":
		p.cmdAuth(conn, c, args)
	case "hello":
		p.cmdHello(conn, c, args)
	case "replconf":
		p.cmdReplconf(conn, c, args)
	case "psync", "sync":
		p.cmdSync(conn, c, name, args)
	case "info":
		p.cmdInfo(conn, args)
	case "role":
		p.cmdRole(conn)
	case "config":
		p.cmdConfig(conn, args)
	case "command":
		// Enough for redis-cli, which asks COMMAND DOCS for hints and copes with none.
		if len(args) > 0 && strings.EqualFold(string(args[0]), "count") {
			conn.WriteInt(0)
		} else {
			conn.WriteArray(0)
		}
	case "client":
		p.cmdClient(conn, c, args)
	case "select":
		if len(args) != 1 || string(args[0]) != "0" {
			conn.WriteError("ERR psync-proxy holds no databases; SELECT only accepts 0")
			return
		}
		conn.WriteString("OK")
	case "quit":
		conn.WriteString("OK")
		conn.Close()
	case "shutdown":
		p.log.Warn("User requested shutdown...")
		conn.Close()
		p.shutdown()
	default:
		conn.WriteError("ERR unknown command '" + truncate(string(cmd.Args[0]), 128) +
			"': psync-proxy is a replication proxy and only answers PING, AUTH, REPLCONF, PSYNC, SYNC, INFO, ROLE, CONFIG, COMMAND, CLIENT, QUIT and SHUTDOWN; send data commands to the master")
	}
}

func wrongArity(conn redcon.Conn, name string) {
	conn.WriteError("ERR wrong number of arguments for '" + name + "' command")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (p *Proxy) cmdClient(conn redcon.Conn, c *client, args [][]byte) {
	if len(args) == 0 {
		wrongArity(conn, "client")
		return
	}
	switch strings.ToLower(string(args[0])) {
	case "setname", "setinfo":
		conn.WriteString("OK")
	case "getname":
		conn.WriteNull()
	case "id":
		conn.WriteInt64(c.id)
	default:
		conn.WriteError("ERR psync-proxy supports only CLIENT SETNAME, SETINFO, GETNAME and ID")
	}
}

// cmdReplconf follows Redis's replconfCommand: options apply left to right, the first bad
// one replies an error and stops, ACK and GETACK get no reply at all.
func (p *Proxy) cmdReplconf(conn redcon.Conn, c *client, args [][]byte) {
	if len(args)%2 != 0 {
		conn.WriteError("ERR syntax error")
		return
	}
	for i := 0; i < len(args); i += 2 {
		opt, val := strings.ToLower(string(args[i])), string(args[i+1])
		switch opt {
		case "listening-port":
			port, err := strconv.Atoi(val)
			if err != nil {
				conn.WriteError("ERR value is not an integer or out of range")
				return
			}
			c.listeningPort = port
		case "ip-address":
			if len(val) >= 256 {
				conn.WriteError("ERR REPLCONF ip-address provided by replica instance is too long: " + strconv.Itoa(len(val)) + " bytes")
				return
			}
			c.ipAddress = val
		case "capa":
			// Unknown capabilities (dual-channel, rdb-channel-repl, ...) are ignored, so such
			// replicas get a plain full sync.
			switch strings.ToLower(val) {
			case "eof":
				c.capaEOF = true
			case "psync2":
				c.capaPsync2 = true
			}
		case "ack", "getack":
			return // never a reply
		case "rdb-only":
			switch val {
			case "0", "1":
				c.rdbOnly = val == "1"
			default:
				conn.WriteError("ERR value is out of range, value must between 0 and 1")
				return
			}
		case "version":
			// Valkey 8 replicas announce their version; recorded by nobody, accepted.
		default:
			// rdb-filter-only would need the RDB re-encoded, so it is refused like an unknown option.
			conn.WriteError("ERR Unrecognized REPLCONF option: " + truncate(string(args[i]), 64))
			return
		}
	}
	conn.WriteString("OK")
}

// syncRequest is a parsed PSYNC or SYNC.
type syncRequest struct {
	psync  bool   // false for SYNC: no +FULLRESYNC line, no ACKs expected
	replid string // as asked; "?" for a fresh replica
	offset int64  // first byte wanted
}

// cmdSync checks PSYNC's arguments as Redis's syncCommand does, then hands the connection to
// a replica session that answers it.
func (p *Proxy) cmdSync(conn redcon.Conn, c *client, name string, args [][]byte) {
	req := syncRequest{psync: name == "psync", replid: "?", offset: -1}
	if req.psync {
		if len(args) < 2 {
			wrongArity(conn, name)
			return
		}
		off, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			p.log.Warnf("Replica %s asks for synchronization but with a wrong offset", conn.RemoteAddr())
			conn.WriteError("ERR value is not an integer or out of range")
			return
		}
		req.replid, req.offset = string(args[0]), off
		if len(args) > 2 && strings.EqualFold(string(args[2]), "failover") {
			p.mu.Lock()
			mine := strings.EqualFold(req.replid, p.replid)
			p.mu.Unlock()
			if !mine {
				conn.WriteError("ERR PSYNC FAILOVER replid must match my replid.")
			} else {
				conn.WriteError("ERR PSYNC FAILOVER can't be sent to a psync-proxy: it cannot become a master.")
			}
			return
		}
	} else if len(args) != 0 {
		wrongArity(conn, name)
		return
	}
	p.startReplica(conn, c, req)
}
