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
				x.conn.WriteError("ERR value is out of range, value must between 0 and 1")
				return
			}
		case "version":
			// Valkey 8 replicas announce their version; recorded by nobody, accepted.
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
