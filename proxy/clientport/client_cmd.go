package clientport

import (
	"strconv"
	"strings"
	"time"
)

// cmdClient is Redis's CLIENT, for what a proxy's clients are: ID, SETNAME, GETNAME,
// SETINFO, INFO, LIST, KILL.
func cmdClient(x *call) {
	switch sub := strings.ToLower(string(x.args[0])); sub {
	case "setname":
		if len(x.args) != 2 {
			wrongArity(x.conn, "client|setname")
			return
		}
		if !x.c.setName(string(x.args[1])) {
			x.conn.WriteError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		x.conn.WriteString("OK")
	case "setinfo", "no-evict", "no-touch":
		x.conn.WriteString("OK")
	case "getname":
		if n := loadString(&x.c.info.name, ""); n != "" {
			x.conn.WriteBulkString(n)
		} else {
			x.conn.WriteNull()
		}
	case "id":
		x.conn.WriteInt64(x.c.id)
	case "info":
		x.conn.WriteBulkString(x.p.clientLine(x.c, x.p.replicasSeen(), time.Now()) + "\n")
	case "list":
		clientList(x)
	case "kill":
		clientKill(x)
	case "help":
		writeLines(x, "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
			"GETNAME", "ID", "INFO", "KILL <ip:port>", "KILL <option> <value> [<option> <value> [...]]",
			"    Options: ID <client-id>, TYPE <normal|replica|slave|master|pubsub>, USER <username>,",
			"    ADDR <ip:port>, LADDR <ip:port>, SKIPME <yes|no>. A replica killed resumes with PSYNC.",
			"LIST [TYPE <normal|replica|slave|master|pubsub>] [ID <client-id> [...]]", "SETNAME <name>", "SETINFO", "HELP")
	default:
		x.conn.WriteError("ERR unknown subcommand '" + truncate(string(x.args[0]), 64) + "'. Try CLIENT HELP.")
	}
}

func writeLines(x *call, lines ...string) {
	x.conn.WriteArray(len(lines))
	for _, l := range lines {
		x.conn.WriteString(l)
	}
}

// setName sets the client's name, as CLIENT SETNAME does: no spaces or special characters;
// an empty name clears it.
func (c *client) setName(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] < '!' || name[i] > '~' {
			return false
		}
	}
	c.info.name.Store(&name)
	return true
}

// clientList is CLIENT LIST [TYPE type] [ID id ...].
func clientList(x *call) {
	args := x.args[1:]
	typ, ids := "", map[int64]bool(nil)
	switch {
	case len(args) == 0:
	case len(args) == 2 && strings.EqualFold(string(args[0]), "type"):
		t, ok := parseClientType(string(args[1]))
		if !ok {
			x.conn.WriteError("ERR Unknown client type '" + truncate(string(args[1]), 64) + "'")
			return
		}
		typ = t
	case len(args) >= 2 && strings.EqualFold(string(args[0]), "id"):
		ids = map[int64]bool{}
		for _, a := range args[1:] {
			id, err := strconv.ParseInt(string(a), 10, 64)
			if err != nil || id < 1 {
				x.conn.WriteError("ERR Invalid client ID")
				return
			}
			ids[id] = true
		}
	default:
		x.conn.WriteError("ERR syntax error")
		return
	}
	now, replicas := time.Now(), x.p.replicasSeen()
	var b strings.Builder
	for _, c := range x.p.reg.list() {
		if typ != "" && c.clientType() != typ || ids != nil && !ids[c.id] {
			continue
		}
		b.WriteString(x.p.clientLine(c, replicas, now))
		b.WriteByte('\n')
	}
	x.conn.WriteBulkString(b.String())
}

// killFilter is CLIENT KILL's new form: every filter given must match.
type killFilter struct {
	id          int64 // 0: any
	typ, user   string
	addr, laddr string
	skipMe      bool
}

// clientKill is CLIENT KILL <ip:port> (replies +OK or "No such client") or CLIENT KILL
// <filter> <value> ... (replies the number killed), with Redis's errors.
func clientKill(x *call) {
	args := x.args[1:]
	if len(args) == 0 {
		wrongArity(x.conn, "client|kill")
		return
	}
	if len(args) == 1 {
		f := killFilter{addr: string(args[0])}
		if x.killMatching(f) == 0 {
			x.conn.WriteError("ERR No such client")
			return
		}
		x.conn.WriteString("OK")
		x.closeIfKilled()
		return
	}
	f, ok := x.parseKillFilter(args)
	if !ok {
		return
	}
	x.conn.WriteInt(x.killMatching(f))
	x.closeIfKilled()
}

// parseKillFilter reads filter/value pairs as Redis's clientKillCommand does, replying the
// error when one is bad.
func (x *call) parseKillFilter(args [][]byte) (killFilter, bool) {
	f := killFilter{skipMe: true}
	if len(args)%2 != 0 {
		x.conn.WriteError("ERR syntax error")
		return f, false
	}
	for i := 0; i < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToLower(string(args[i])) {
		case "id":
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil || id < 1 {
				x.conn.WriteError("ERR client-id should be greater than 0")
				return f, false
			}
			f.id = id
		case "type":
			t, ok := parseClientType(v)
			if !ok {
				x.conn.WriteError("ERR Unknown client type '" + truncate(v, 64) + "'")
				return f, false
			}
			f.typ = t
		case "user":
			if _, ok := x.p.auth.accounts[v]; !ok {
				x.conn.WriteError("ERR No such user '" + truncate(v, 64) + "'")
				return f, false
			}
			f.user = v
		case "addr":
			f.addr = v
		case "laddr":
			f.laddr = v
		case "skipme":
			switch strings.ToLower(v) {
			case "yes":
				f.skipMe = true
			case "no":
				f.skipMe = false
			default:
				x.conn.WriteError("ERR syntax error")
				return f, false
			}
		default:
			x.conn.WriteError("ERR syntax error")
			return f, false
		}
	}
	return f, true
}

// killMatching kills every client f matches and returns how many.
func (x *call) killMatching(f killFilter) int {
	n := 0
	for _, c := range x.p.reg.list() {
		if f.skipMe && c == x.c || !f.matches(c) {
			continue
		}
		x.kill(c)
		n++
	}
	return n
}

func (f killFilter) matches(c *client) bool {
	switch {
	case f.id != 0 && c.id != f.id,
		f.typ != "" && c.clientType() != f.typ,
		f.user != "" && loadString(&c.info.user, "") != f.user,
		f.addr != "" && c.info.addr != f.addr,
		f.laddr != "" && c.info.laddr != f.laddr:
		return false
	}
	return true
}

// closeIfKilled closes the caller's connection, after its reply, when it killed itself.
func (x *call) closeIfKilled() {
	if x.closeAfterReply {
		x.conn.Close()
	}
}
