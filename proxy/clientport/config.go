package clientport

import (
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// param is one CONFIG GET/SET parameter, with redis.conf's name.
type param struct {
	name string
	get  func(p *Port) string
	set  func(p *Port, v string) error // nil: read-only
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func seconds(d time.Duration) string { return itoa(int64(max(d, 0) / time.Second)) }

// params lists the parameters CONFIG knows, in CONFIG GET's order.
var params = []param{
	{name: "repl-backlog-size", get: func(p *Port) string { return itoa(p.cfg.History.BacklogSize()) }, set: setBacklogSize},
	{name: "repl-timeout", get: func(p *Port) string { return seconds(p.cfg.ReplTimeout()) }, set: setReplTimeout},
	{name: "dir", get: func(p *Port) string { return p.cfg.History.Dir() }},
	{name: "replicaof", get: func(p *Port) string {
		host, port := p.cfg.Link.Master().HostPort()
		return host + " " + strconv.Itoa(port)
	}},
	{name: "masteruser", get: func(p *Port) string { return p.cfg.Link.Master().User }},
	{name: "protected-mode", get: func(p *Port) string { return yesNo(p.cfg.ProtectedMode) }},
	{name: "replica-priority", get: func(p *Port) string { return "0" }},
	{name: "snapshot-refresh", get: func(p *Port) string { return refreshPolicy(p.cfg.Refresher) }},
	{name: "snapshot-refresh-margin", get: func(p *Port) string { return itoa(p.cfg.Refresher.Margin()) }},
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
	case "slaveof":
		return "replicaof"
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
		x.conn.WriteError("ERR The server is running without a config file")
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
	for _, prm := range params {
		for _, pat := range x.args[1:] {
			if ok, _ := path.Match(configName(string(pat)), prm.name); ok {
				out = append(out, prm.name, prm.get(x.p))
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
		idx := slices.IndexFunc(params, func(c param) bool { return c.name == name })
		if idx < 0 || params[idx].set == nil {
			x.conn.WriteError("ERR Unknown option or number of arguments for CONFIG SET - '" + truncate(string(args[i]), 64) + "'")
			return
		}
		if err := params[idx].set(x.p, string(args[i+1])); err != nil {
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
