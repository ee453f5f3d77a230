package clientport

import (
	"strconv"
	"strings"

	"github.com/psync-proxy/psync-proxy/proxy/downstream"
)

// cmdReplconf follows Redis's replconfCommand: options apply left to right, the first bad
// one replies an error and stops, ACK and GETACK get no reply at all.
func cmdReplconf(x *call) {
	if len(x.args)%2 != 0 {
		x.conn.WriteError("ERR syntax error")
		return
	}
	c := x.c
	for i := 0; i < len(x.args); i += 2 {
		opt, val := strings.ToLower(string(x.args[i])), string(x.args[i+1])
		switch opt {
		case "listening-port":
			port, err := strconv.Atoi(val)
			if err != nil {
				x.conn.WriteError("ERR value is not an integer or out of range")
				return
			}
			c.listeningPort = port
		case "ip-address":
			if len(val) >= 256 {
				x.conn.WriteError("ERR REPLCONF ip-address provided by replica instance is too long: " + strconv.Itoa(len(val)) + " bytes")
				return
			}
			c.ipAddress = val
		case "capa":
			// Unknown capabilities (Redis 8's rdb-channel-repl, Valkey's dual-channel and
			// skip-rdb-checksum, any other) are ignored, as a master that does not know them
			// does: such replicas get a single-channel sync, never +RDBCHANNELSYNC,
			// +DUALCHANNELSYNC or $ENDOFF.
			switch strings.ToLower(val) {
			case "eof":
				c.capaEOF = true
			case "psync2":
				c.capaPsync2 = true
			}
		case "ack", "getack":
			return // never a reply
		case "rdb-only", "rdb-no-compress", "rdb-no-checksum":
			// Redis 8 replicas that load diskless ask for an RDB without compression or
			// checksum: a wish (the cached snapshot is served as it is, and they load it
			// either way), so +OK, after Redis's own range check.
			if val != "0" && val != "1" {
				x.conn.WriteError("ERR value is out of range, value must between 0 and 1")
				return
			}
			if opt == "rdb-only" {
				c.rdbOnly = val == "1"
			}
		case "version":
			// Valkey 8+ replicas announce their version; recorded by nobody, accepted.
		case "compression":
			// Redis 8.10: +OK would switch the replica's link to compressed frames the proxy
			// never sends. Refused as by a master that does not know it, which the replica
			// logs as non critical and forgets.
			x.conn.WriteError("ERR Unrecognized REPLCONF option: compression")
			return
		default:
			// rdb-filter-only would need the RDB re-encoded, so it is refused like an unknown option.
			x.conn.WriteError("ERR Unrecognized REPLCONF option: " + truncate(string(x.args[i]), 64))
			return
		}
	}
	x.conn.WriteString("OK")
}

// cmdSync checks PSYNC's arguments as Redis's syncCommand does, then hands the connection to
// a replica session that answers it.
func cmdSync(x *call) {
	req := downstream.Request{PSync: x.name == "psync", Replid: "?", Offset: -1}
	if req.PSync {
		off, err := strconv.ParseInt(string(x.args[1]), 10, 64)
		if err != nil {
			x.p.log.Warnf("Replica %s asks for synchronization but with a wrong offset", x.conn.RemoteAddr())
			x.conn.WriteError("ERR value is not an integer or out of range")
			return
		}
		req.Replid, req.Offset = string(x.args[0]), off
		if len(x.args) > 2 && strings.EqualFold(string(x.args[2]), "failover") {
			if replid, _ := x.p.cfg.History.Current(); !strings.EqualFold(req.Replid, replid) {
				x.conn.WriteError("ERR PSYNC FAILOVER replid must match my replid.")
			} else {
				x.conn.WriteError("ERR PSYNC FAILOVER can't be sent to a psync-proxy: it cannot become a master.")
			}
			return
		}
	}
	c := x.c
	rep := downstream.Replica{ID: c.id, IP: c.ipAddress, Port: c.listeningPort,
		CapaEOF: c.capaEOF, CapaPsync2: c.capaPsync2, RDBOnly: c.rdbOnly}
	c.conn.becomeReplica()
	c.info.replica.Store(true)
	dc := x.conn.Detach()
	p := x.p
	p.cfg.Sessions.Start(dc, c.conn.Conn, rep, req, func() {
		p.clients.Add(-1)
		p.reg.remove(c)
	})
}
