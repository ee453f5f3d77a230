package clientport

import (
	"slices"
	"strings"

	"github.com/tidwall/redcon"
)

// client is the per-connection state of a downstream connection before it becomes a replica.
type client struct {
	id   int64
	conn *clientConn
	info clientInfo // for CLIENT LIST and CLIENT KILL (clients.go)
	user *account   // nil until AUTH when a password is required
	// denied is a TLS client refused by protected mode: it gets -DENIED on its first command,
	// because the accept callback must not wait for a TLS handshake.
	denied bool
	// What the peer said with REPLCONF, as Redis records it for a future replica.
	listeningPort int
	ipAddress     string
	capaEOF       bool
	capaPsync2    bool
	rdbOnly       bool
	tx            *transaction // inside MULTI (multi.go); nil otherwise
}

// call is one command being run: the port, the client, its connection and arguments.
type call struct {
	p    *Port
	c    *client
	conn redcon.Conn
	name string   // lower case
	args [][]byte // after the name
	// closeAfterReply: the client killed itself (CLIENT KILL), closed once replied to.
	closeAfterReply bool
}

// command is one row of the command table: dispatch, the arity and permission checks and the
// "unknown command" text are all derived from the table, so a new command is one row.
type command struct {
	name string
	// arity is Redis's: n > 0 means exactly n words, the name included; n < 0 at least -n.
	arity int
	// perm is what the user needs beyond what everyone may run; subPerm, by lower-case first
	// argument, for subcommands that need more (CONFIG SET).
	perm    perm
	subPerm map[string]perm
	// noAuth commands run before AUTH when a password is required.
	noAuth bool
	// subcommands: the first argument names a subcommand, which CLIENT LIST's cmd= shows
	// ("client|list").
	subcommands bool
	// Inside MULTI (multi.go): txControl commands run at once, noMulti ones are refused,
	// the others are queued.
	txControl, noMulti bool
	run                func(x *call)
}

// commands is the table, in the order the "unknown command" text lists them.
var commands = []command{
	{name: "ping", arity: -1, run: cmdPing},
	{name: "echo", arity: 2, run: func(x *call) { x.conn.WriteBulk(x.args[0]) }},
	{name: "auth", arity: -2, noAuth: true, run: cmdAuth},
	{name: "hello", arity: -1, noAuth: true, run: cmdHello},
	{name: "replconf", arity: -1, perm: permReplication, run: cmdReplconf},
	{name: "psync", arity: -3, perm: permReplication, noMulti: true, run: cmdSync},
	{name: "sync", arity: 1, perm: permReplication, noMulti: true, run: cmdSync},
	{name: "info", arity: -1, run: cmdInfo},
	{name: "role", arity: 1, run: cmdRole},
	{name: "config", arity: -2, subcommands: true, subPerm: map[string]perm{"set": permAdmin, "resetstat": permAdmin, "rewrite": permAdmin},
		run: cmdConfig},
	{name: "command", arity: -1, subcommands: true, run: cmdCommand},
	{name: "client", arity: -2, subcommands: true, subPerm: map[string]perm{"kill": permAdmin}, run: cmdClient},
	{name: "latency", arity: -2, subcommands: true, subPerm: map[string]perm{"reset": permAdmin}, run: cmdLatency},
	{name: "slowlog", arity: -2, subcommands: true, subPerm: map[string]perm{"reset": permAdmin}, run: cmdSlowlog},
	{name: "select", arity: 2, run: cmdSelect},
	{name: "quit", arity: -1, noAuth: true, txControl: true, run: func(x *call) { x.conn.WriteString("OK"); x.conn.Close() }},
	{name: "shutdown", arity: -1, perm: permAdmin, run: cmdShutdown},
	// Following a new master, and what Sentinel sends around it (replicaof.go, multi.go, pubsub.go).
	{name: "replicaof", arity: 3, perm: permAdmin, run: cmdReplicaof},
	{name: "slaveof", arity: 3, perm: permAdmin, run: cmdReplicaof},
	{name: "failover", arity: -1, run: cmdFailover},
	{name: "multi", arity: 1, txControl: true, run: cmdMulti},
	{name: "exec", arity: 1, txControl: true, run: cmdExec},
	{name: "discard", arity: 1, txControl: true, run: cmdDiscard},
	{name: "subscribe", arity: -2, noMulti: true, run: cmdSubscribe},
	// PUBLISH reaches Sentinels subscribed to the proxy: a forged hello could move them, so
	// only what may move the proxy itself (REPLICAOF) may publish.
	{name: "publish", arity: 3, perm: permAdmin, run: cmdPublish},
}

// lookup returns the table's row for name (lower case).
func lookup(name string) (*command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return nil, false
	}
	return &commands[i], true
}

// unknownText ends the "unknown command" reply: what the proxy answers.
var unknownText = func() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = strings.ToUpper(c.name)
	}
	last := len(names) - 1
	return "': psync-proxy is a replication proxy and only answers " + strings.Join(names[:last], ", ") +
		" and " + names[last] + "; send data commands to the master"
}()

// handle runs one downstream command. Replies are queued and flushed by redcon per pipeline.
func (p *Port) handle(conn redcon.Conn, cmd redcon.Command) {
	c := conn.Context().(*client)
	defer func() {
		c.conn.commandDone(c.user != nil)
		c.noteUser()
	}()
	x := &call{p: p, c: c, conn: conn, name: strings.ToLower(string(cmd.Args[0])), args: cmd.Args[1:]}
	row, known := lookup(x.name)
	c.touch(row, x.args)
	if c.denied {
		conn.WriteError(protectedModeMsg)
		conn.Close()
		return
	}
	// NOAUTH before anything else, so an unauthenticated client learns nothing of the table.
	if c.user == nil && !(known && row.noAuth) {
		conn.WriteError("NOAUTH Authentication required.")
		return
	}
	if !known {
		conn.WriteError("ERR unknown command '" + truncate(string(cmd.Args[0]), 128) + unknownText)
		c.refused()
		return
	}
	if c.user != nil && !x.permitted(row) {
		c.refused()
		return
	}
	if n := len(cmd.Args); row.arity > 0 && n != row.arity || row.arity < 0 && n < -row.arity {
		x.wrongArity()
		c.refused()
		return
	}
	if x.queue(row) {
		return
	}
	row.run(x)
}

// permitted reports whether the client's user may run the command, and if not replies
// -NOPERM in Redis's words (7.2+), naming a subcommand as Redis does ("config|set").
func (x *call) permitted(row *command) bool {
	need, what := row.perm, x.name
	if len(x.args) > 0 && row.subPerm != nil {
		sub := strings.ToLower(string(x.args[0]))
		if p, ok := row.subPerm[sub]; ok {
			need, what = p, x.name+"|"+sub
		}
	}
	if x.c.user.perms&need == need {
		return true
	}
	x.conn.WriteError("NOPERM User " + x.c.user.name + " has no permissions to run the '" + what + "' command")
	return false
}

func (x *call) wrongArity() { wrongArity(x.conn, x.name) }

func wrongArity(conn redcon.Conn, name string) {
	conn.WriteError("ERR wrong number of arguments for '" + name + "' command")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func cmdPing(x *call) {
	switch len(x.args) {
	case 0:
		x.conn.WriteString("PONG")
	case 1:
		x.conn.WriteBulk(x.args[0])
	default:
		x.wrongArity()
	}
}

// cmdCommand is enough for redis-cli, which asks COMMAND DOCS for hints and copes with none.
func cmdCommand(x *call) {
	if len(x.args) > 0 && strings.EqualFold(string(x.args[0]), "count") {
		x.conn.WriteInt(0)
	} else {
		x.conn.WriteArray(0)
	}
}

func cmdSelect(x *call) {
	if string(x.args[0]) != "0" {
		x.conn.WriteError("ERR psync-proxy holds no databases; SELECT only accepts 0")
		return
	}
	x.conn.WriteString("OK")
}

func cmdShutdown(x *call) {
	x.p.log.Warn("User requested shutdown...")
	x.conn.Close()
	x.p.cfg.Shutdown()
}
