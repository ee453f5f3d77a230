package clientport

import (
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// param is one CONFIG GET/SET parameter, with redis.conf's name, which is also its
// directive in a config file (CONFIG REWRITE).
type param struct {
	name string
	get  func(p *Port) string
	set  func(p *Port, v string) error // nil: read-only
	// secret values (passwords) are shown only to users with the admin permission.
	secret bool
	// args is the value as the directive's arguments, when it is not the one word of get
	// (replicaof's host and port).
	args func(p *Port) []string
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func seconds(d time.Duration) string { return itoa(int64(max(d, 0) / time.Second)) }

// params lists the parameters CONFIG knows, in CONFIG GET's order.
var params = []param{
	{name: "repl-backlog-size", get: func(p *Port) string { return itoa(p.cfg.History.BacklogSize()) }, set: setBacklogSize},
	{name: "repl-timeout", get: func(p *Port) string { return seconds(p.cfg.ReplTimeout()) }, set: setReplTimeout},
	{name: "dir", get: func(p *Port) string { return p.cfg.History.Dir() }},
	{name: "replicaof", get: func(p *Port) string { return strings.Join(masterArgs(p), " ") }, args: masterArgs},
	{name: "masteruser", get: func(p *Port) string { return p.cfg.Link.Master().User }},
	{name: "announce-replica-version", get: func(p *Port) string { return p.cfg.Link.AnnounceVersion() }},
	{name: "masterauth", get: func(p *Port) string { return p.cfg.Link.Master().Password }, secret: true},
	{name: "requirepass", get: func(p *Port) string { return p.cfg.RequirePass }, secret: true},
	{name: "protected-mode", get: func(p *Port) string { return yesNo(p.cfg.ProtectedMode) }},
	{name: "replica-priority", get: func(p *Port) string { return "0" }},
	{name: "snapshot-refresh", get: func(p *Port) string { return refreshPolicy(p.cfg.Refresher) }},
	// As configured: 0 is a quarter of repl-backlog-size.
	{name: "snapshot-refresh-margin", get: func(p *Port) string { return itoa(p.cfg.RefreshMargin) }},
	{name: "snapshot-refresh-min-interval", get: func(p *Port) string { return seconds(p.cfg.Refresher.MinInterval()) }},
	{name: "max-concurrent-full-syncs", get: func(p *Port) string {
		return strconv.Itoa(p.cfg.Sessions.Limits().MaxConcurrentFullSyncs)
	}},
	{name: "full-sync-rate-limit", get: func(p *Port) string { return itoa(p.cfg.Sessions.Limits().FullSyncRateLimit) }},
	// Client limits (input.go), read-only.
	{name: "maxclients", get: func(p *Port) string { return strconv.Itoa(p.cfg.MaxClients) }},
	{name: "proto-max-bulk-len", get: func(p *Port) string { return itoa(p.cfg.ProtoMaxBulkLen) }},
	{name: "client-query-buffer-limit", get: func(p *Port) string { return itoa(p.cfg.ClientQueryBufferLimit) }},
	{name: "timeout", get: func(p *Port) string { return seconds(p.cfg.Timeout) }},
	{name: "handshake-timeout", get: func(p *Port) string { return seconds(p.cfg.HandshakeTimeout) }},
	// The backlog's storage, read-only.
	{name: "repl-backlog-ttl", get: func(p *Port) string { return seconds(p.cfg.History.Options().BacklogTTL) }},
	{name: "backlog-mode", get: func(p *Port) string { return map[bool]string{true: "disk", false: "memory"}[p.cfg.History.Disk()] }},
	{name: "backlog-fsync", get: func(p *Port) string { return p.cfg.History.Options().Fsync.String() }},
	{name: "backlog-ram-tail", get: func(p *Port) string { return itoa(p.cfg.History.Options().RAMTail) }},
}

// masterArgs is the master followed now, as replicaof's arguments.
func masterArgs(p *Port) []string {
	host, port := p.cfg.Link.Master().HostPort()
	return []string{host, strconv.Itoa(port)}
}

// allParams is the table, then the options the port only reports (Config.Settings), by name.
func (p *Port) allParams() []param {
	out := slices.Clone(params)
	var extra []string
	for name := range p.cfg.Settings {
		if !slices.ContainsFunc(params, func(c param) bool { return c.name == name }) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		v := p.cfg.Settings[name]
		out = append(out, param{name: name, get: func(*Port) string { return v }, secret: strings.HasSuffix(name, "password")})
	}
	return out
}

func setBacklogSize(p *Port, v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	if n <= 0 {
		return errors.New("argument must be positive")
	}
	p.cfg.History.Resize(n)
	p.log.Infof("CONFIG SET repl-backlog-size %d: backlog resized", n)
	return nil
}

func setReplTimeout(p *Port, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return errors.New("argument must be a positive number of seconds")
	}
	p.cfg.SetReplTimeout(time.Duration(n) * time.Second)
	return nil
}

// configName maps psync-proxy's command-line names and Redis's old ones to redis.conf's.
func configName(name string) string {
	switch name = strings.ToLower(name); name {
	case "backlog-size":
		return "repl-backlog-size"
	case "slaveof", "master":
		return "replicaof"
	case "backlog-ttl":
		return "repl-backlog-ttl"
	case "log-level":
		return "loglevel"
	case "slave-priority":
		return "replica-priority"
	}
	return name
}

func cmdConfig(x *call) {
	switch strings.ToLower(string(x.args[0])) {
	case "get":
		configGet(x)
	case "set":
		configSet(x)
	case "resetstat":
		x.p.resetStats()
		x.conn.WriteString("OK")
	case "rewrite":
		configRewrite(x)
	default:
		x.conn.WriteError("ERR unknown subcommand '" + truncate(string(x.args[0]), 64) + "'. Try CONFIG GET, SET, RESETSTAT.")
	}
}

func configGet(x *call) {
	if len(x.args) < 2 {
		wrongArity(x.conn, "config|get")
		return
	}
	var out []string
	admin := x.c.user != nil && x.c.user.perms&permAdmin != 0
	for _, prm := range x.p.allParams() {
		for _, pat := range x.args[1:] {
			if ok, _ := path.Match(configName(string(pat)), prm.name); ok {
				v := prm.get(x.p)
				if prm.secret && !admin {
					v = ""
				}
				out = append(out, prm.name, v)
				break
			}
		}
	}
	x.conn.WriteArray(len(out))
	for _, s := range out {
		x.conn.WriteBulkString(s)
	}
}

func configSet(x *call) {
	args := x.args
	if len(args) < 3 || len(args)%2 == 0 {
		wrongArity(x.conn, "config|set")
		return
	}
	for i := 1; i < len(args); i += 2 {
		name := configName(string(args[i]))
		all := x.p.allParams()
		idx := slices.IndexFunc(all, func(c param) bool { return c.name == name })
		if idx < 0 {
			x.conn.WriteError("ERR Unknown option or number of arguments for CONFIG SET - '" + truncate(string(args[i]), 64) + "'")
			return
		}
		if all[idx].set == nil {
			x.conn.WriteError("ERR CONFIG SET failed (possibly related to argument '" + name + "') - can't set immutable config")
			return
		}
		if err := all[idx].set(x.p, string(args[i+1])); err != nil {
			x.conn.WriteError("ERR CONFIG SET failed (possibly related to argument '" + name + "') - " + err.Error())
			return
		}
	}
	x.conn.WriteString("OK")
}

// resetStats zeroes every part's counters, as CONFIG RESETSTAT does Redis's.
func (p *Port) resetStats() {
	p.stats.connections.Store(0)
	p.stats.rejected.Store(0)
	p.stats.queryBufLimit.Store(0)
	p.cfg.Sessions.ResetStats()
	p.cfg.Link.ResetStats()
}
