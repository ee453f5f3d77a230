package clientport

import (
	"crypto/tls"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The port sees every connection first, so it keeps the registry of clients that CLIENT
// LIST and CLIENT KILL work on: from accept until the connection closes, or, for a client
// that became a replica, until its session ends. What only a replica session knows (its
// state, its last ACK) is asked of the sessions, and a replica is killed through them.

// registry is the port's clients by ID.
type registry struct {
	mu sync.Mutex
	m  map[int64]*client
}

func (r *registry) add(c *client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[int64]*client)
	}
	r.m[c.id] = c
}

func (r *registry) remove(c *client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, c.id)
}

// list returns the clients in order of ID.
func (r *registry) list() []*client {
	r.mu.Lock()
	out := make([]*client, 0, len(r.m))
	for _, c := range r.m {
		out = append(out, c)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *client) int { return int(a.id - b.id) })
	return out
}

// clientInfo is what CLIENT LIST shows of a client. The connection's goroutine writes the
// atomics, CLIENT LIST and CLIENT KILL read them from other connections' goroutines.
type clientInfo struct {
	created time.Time
	addr    string // peer
	laddr   string // local end
	fd      int    // -1 if unknown
	name    atomic.Pointer[string]
	user    atomic.Pointer[string] // the user it runs as; nil before AUTH
	lastCmd atomic.Pointer[string] // Redis's full name: "client|list"
	lastAt  atomic.Int64           // unix nanoseconds of the last command
	replica atomic.Bool            // handed to a replica session (PSYNC, SYNC)
	// pubsub is set while the client is subscribed to a channel (SUBSCRIBE), so that CLIENT
	// KILL TYPE pubsub finds it and TYPE normal leaves it alone.
	pubsub atomic.Bool
}

func (ci *clientInfo) init(nc net.Conn) {
	ci.created, ci.addr, ci.laddr, ci.fd = time.Now(), nc.RemoteAddr().String(), nc.LocalAddr().String(), socketFD(nc)
	ci.lastAt.Store(ci.created.UnixNano())
}

// socketFD is the connection's file descriptor, as CLIENT LIST shows it; -1 if unknown.
func socketFD(nc net.Conn) int {
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// touch records the client's activity and, for a command of the table (row nil otherwise), the
// command by Redis's full name. Only the table's names and a short word of a subcommand are
// kept: what a client typed could be a megabyte, or break CLIENT LIST's lines.
func (c *client) touch(row *command, args [][]byte) {
	c.info.lastAt.Store(time.Now().UnixNano())
	if row == nil {
		return
	}
	full := row.name
	if row.subcommands && len(args) > 0 && isWord(args[0]) {
		full += "|" + strings.ToLower(string(args[0]))
	}
	c.info.lastCmd.Store(&full)
}

// isWord reports whether b could be a subcommand's name: up to 32 letters, digits, '-' or '_'.
func isWord(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, ch := range b {
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

// noteUser records the user the client runs as, after a command that may have changed it.
func (c *client) noteUser() {
	if c.user == nil {
		return
	}
	if u := c.info.user.Load(); u == nil || *u != c.user.name {
		name := c.user.name
		c.info.user.Store(&name)
	}
}

func loadString(p *atomic.Pointer[string], def string) string {
	if s := p.Load(); s != nil {
		return *s
	}
	return def
}

// Client types, as CLIENT KILL TYPE and CLIENT LIST TYPE name them.
const (
	typeNormal  = "normal"
	typeReplica = "replica"
	typePubsub  = "pubsub"
)

// clientType is Redis's getClientType: a replica, else a subscriber, else normal. The master
// link is not a client of the port: no client is of type master.
func (c *client) clientType() string {
	switch {
	case c.info.replica.Load():
		return typeReplica
	case c.info.pubsub.Load():
		return typePubsub
	}
	return typeNormal
}

// parseClientType reads a TYPE argument as Redis's getClientTypeByName does.
func parseClientType(s string) (string, bool) {
	switch s = strings.ToLower(s); s {
	case "normal", "pubsub", "master":
		return s, true
	case "replica", "slave":
		return typeReplica, true
	}
	return "", false
}

// clientLine renders c as a line of CLIENT LIST, in Redis 7.0's format. A replica's state
// comes from its session: flags S, idle since its last ACK.
func (p *Port) clientLine(c *client, replicas map[int64]replicaSeen, now time.Time) string {
	ci := &c.info
	flags, idleSince := "N", time.Unix(0, ci.lastAt.Load())
	switch c.clientType() {
	case typeReplica:
		flags = "S"
		if r, ok := replicas[c.id]; ok && r.lastAck.After(idleSince) {
			idleSince = r.lastAck
		}
	case typePubsub:
		flags = "P"
	}
	var b strings.Builder
	b.Grow(300)
	kv := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	kv("id", strconv.FormatInt(c.id, 10))
	kv("addr", ci.addr)
	kv("laddr", ci.laddr)
	kv("fd", strconv.Itoa(ci.fd))
	kv("name", loadString(&ci.name, ""))
	kv("age", strconv.FormatInt(int64(now.Sub(ci.created).Seconds()), 10))
	kv("idle", strconv.FormatInt(int64(max(now.Sub(idleSince), 0).Seconds()), 10))
	kv("flags", flags)
	// Nothing of a dataset and no buffers of Redis's kind: replicas read the shared backlog.
	b.WriteString(" db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0" +
		" rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r")
	kv("cmd", loadString(&ci.lastCmd, "NULL"))
	kv("user", loadString(&ci.user, "default"))
	b.WriteString(" redir=-1 resp=2")
	return b.String()
}

// replicaSeen is what CLIENT LIST needs of a replica session.
type replicaSeen struct{ lastAck time.Time }

// replicasSeen asks the sessions for their replicas, by client ID.
func (p *Port) replicasSeen() map[int64]replicaSeen {
	out := map[int64]replicaSeen{}
	for _, r := range p.cfg.Sessions.List() {
		out[r.ID] = replicaSeen{lastAck: r.LastAck}
	}
	return out
}

// kill closes client c as CLIENT KILL does: a replica through its session (it comes back
// with PSYNC and resumes from the backlog), another client by closing its socket, which
// ends its connection's goroutine; the caller itself after its reply.
func (x *call) kill(c *client) {
	switch {
	case c == x.c:
		x.closeAfterReply = true
	case c.clientType() == typeReplica:
		if !x.p.cfg.Sessions.Kill(c.id) {
			c.conn.Close() // between PSYNC and its session's start
		}
	default:
		c.conn.Close()
	}
}
