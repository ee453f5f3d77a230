package proxy

import (
	"fmt"
	"net"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// Version is psync-proxy's version, reported by INFO and HELLO.
const Version = "0.1.0"

// cmdInfo answers INFO [section ...] with Redis's field names and "# Section" headers.
func (p *Proxy) cmdInfo(conn redcon.Conn, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b strings.Builder
	for _, s := range [...]string{"server", "clients", "replication", "backlog", "snapshot", "stats"} {
		if !all && !want[s] {
			continue
		}
		// Memory mode's default INFO stays as it was; INFO backlog shows the section anyway.
		if s == "backlog" && !want[s] && p.cfg.BacklogMode != BacklogDisk {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		switch s {
		case "server":
			p.infoServer(&b)
		case "clients":
			p.infoClients(&b)
		case "replication":
			p.infoReplication(&b)
		case "backlog":
			p.infoBacklog(&b)
		case "snapshot":
			p.infoSnapshot(&b)
		case "stats":
			p.infoStats(&b)
		}
	}
	conn.WriteBulkString(b.String())
}

func field(b *strings.Builder, name string, v any) {
	fmt.Fprintf(b, "%s:%v\r\n", name, v)
}

func (p *Proxy) infoServer(b *strings.Builder) {
	up := time.Since(p.started)
	b.WriteString("# Server\r\n")
	field(b, "psync_proxy_version", Version)
	field(b, "redis_mode", "standalone")
	field(b, "os", runtime.GOOS+" "+runtime.GOARCH)
	field(b, "arch_bits", strconv.IntSize)
	field(b, "go_version", runtime.Version())
	field(b, "process_id", os.Getpid())
	field(b, "run_id", p.runID)
	field(b, "tcp_port", p.cfg.AnnouncePort)
	field(b, "uptime_in_seconds", int64(up.Seconds()))
	field(b, "uptime_in_days", int64(up.Hours()/24))
}

func (p *Proxy) infoClients(b *strings.Builder) {
	b.WriteString("# Clients\r\n")
	field(b, "connected_clients", p.clients.Load())
	field(b, "maxclients", p.cfg.MaxClients)
	field(b, "blocked_clients", 0)
}

func (p *Proxy) infoStats(b *strings.Builder) {
	s := &p.stats
	b.WriteString("# Stats\r\n")
	field(b, "total_connections_received", s.connections.Load())
	field(b, "rejected_connections", s.rejected.Load())
	field(b, "client_query_buffer_limit_disconnections", s.queryBufLimit.Load())
	field(b, "sync_full", s.syncFull.Load())
	field(b, "sync_partial_ok", s.syncPartialOK.Load())
	field(b, "sync_partial_err", s.syncPartialErr.Load())
	field(b, "total_net_repl_input_bytes", s.netReplIn.Load())
	field(b, "total_net_repl_output_bytes", s.netReplOut.Load())
}

// infoSnapshot describes the cached snapshot that serves full syncs, in the manner of
// Redis's rdb_* fields.
func (p *Proxy) infoSnapshot(b *strings.Builder) {
	s := &p.stats
	p.mu.Lock()
	snap, refreshing, receiving := p.snap, p.refreshing, p.receiving
	lastRefresh, lastErr := p.lastRefresh, p.lastRefreshErr
	p.mu.Unlock()
	state := "none"
	switch {
	case receiving:
		state = "receiving"
	case refreshing:
		state = "refreshing"
	case snap != nil:
		state = "ready"
	}
	b.WriteString("# Snapshot\r\n")
	field(b, "snapshot_state", state)
	if snap != nil {
		field(b, "snapshot_replid", snap.Replid)
		field(b, "snapshot_offset", snap.Offset)
		field(b, "snapshot_size", snap.Size)
		field(b, "snapshot_created", snap.Created.Unix())
		field(b, "snapshot_age_seconds", int64(time.Since(snap.Created).Seconds()))
	} else {
		field(b, "snapshot_offset", -1)
		field(b, "snapshot_size", 0)
	}
	field(b, "snapshot_refresh_policy", p.cfg.SnapshotRefresh)
	field(b, "snapshot_refreshes", s.refreshes.Load())
	field(b, "snapshot_refresh_failures", s.refreshFailed.Load())
	status := "ok"
	if lastErr != "" {
		status = "err"
	}
	field(b, "snapshot_last_refresh_status", status)
	if !lastRefresh.IsZero() {
		field(b, "snapshot_last_refresh_time", lastRefresh.Unix())
	} else {
		field(b, "snapshot_last_refresh_time", -1)
	}
	field(b, "snapshot_discarded", s.snapDiscarded.Load())
	field(b, "full_syncs_served", s.syncFull.Load())
	field(b, "full_syncs_in_progress", s.fullSyncsActive.Load())
	waiting := 0
	if p.admit != nil {
		waiting = p.admit.waiting()
	}
	field(b, "full_syncs_waiting", waiting)
	field(b, "max_concurrent_full_syncs", p.cfg.MaxConcurrentFullSyncs)
	field(b, "full_sync_rate_limit", p.cfg.FullSyncRateLimit)
}

// infoReplication prints the fields of a Redis replica's INFO replication, in Redis's order.
func (p *Proxy) infoReplication(b *strings.Builder) {
	now := time.Now()
	host, port, _ := net.SplitHostPort(p.cfg.MasterAddr)
	p.mu.Lock()
	defer p.mu.Unlock()
	var first, end int64
	if p.ring != nil {
		first, end = p.ring.Bounds()
	}
	b.WriteString("# Replication\r\n")
	field(b, "role", "slave")
	field(b, "master_host", host)
	field(b, "master_port", port)
	up := p.link.state == "connected"
	field(b, "master_link_status", map[bool]string{true: "up", false: "down"}[up])
	lastIO := int64(-1)
	if t := p.link.lastIO.Load(); t != 0 {
		lastIO = int64(now.Sub(time.Unix(0, t)).Seconds())
	}
	field(b, "master_last_io_seconds_ago", lastIO)
	syncing := p.link.state == "sync"
	field(b, "master_sync_in_progress", map[bool]int{true: 1, false: 0}[syncing])
	field(b, "slave_read_repl_offset", end)
	field(b, "slave_repl_offset", end)
	if syncing {
		total, read := p.link.transfer.size, p.link.transfer.read.Load()
		perc := 0.0
		if total > 0 {
			perc = float64(read) * 100 / float64(total)
		}
		field(b, "master_sync_total_bytes", total)
		field(b, "master_sync_read_bytes", read)
		field(b, "master_sync_left_bytes", total-read)
		field(b, "master_sync_perc", strconv.FormatFloat(perc, 'f', 2, 64))
		field(b, "master_sync_last_io_seconds_ago", max(lastIO, 0))
	}
	if !up {
		field(b, "master_link_down_since_seconds", int64(now.Sub(p.link.downSince).Seconds()))
	}
	// Sentinel must never promote the proxy: it holds no dataset.
	field(b, "slave_priority", 0)
	field(b, "slave_read_only", 1)
	field(b, "replica_announced", 1)
	field(b, "connected_slaves", len(p.replicas))
	rs := make([]*replica, 0, len(p.replicas))
	for r := range p.replicas {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *replica) int { return int(a.id - b.id) })
	for i, r := range rs {
		st := r.state.Load()
		lag := int64(0)
		if st == stateOnline {
			lag = int64(now.Sub(time.Unix(0, r.ackTime.Load())).Seconds())
		}
		fmt.Fprintf(b, "slave%d:ip=%s,port=%d,state=%s,offset=%d,lag=%d\r\n",
			i, r.ip, r.port, stateName(st), r.ackOff.Load(), lag)
	}
	field(b, "master_failover_state", "no-failover")
	replid := p.replid
	if replid == "" {
		replid = zeroReplid
	}
	field(b, "master_replid", replid)
	field(b, "master_replid2", p.replid2)
	field(b, "master_repl_offset", end)
	field(b, "second_repl_offset", p.secondOff)
	field(b, "repl_backlog_active", map[bool]int{true: 1, false: 0}[p.ring != nil])
	field(b, "repl_backlog_size", p.backlogSize.Load())
	field(b, "repl_backlog_first_byte_offset", first)
	field(b, "repl_backlog_histlen", max(end-first+1, 0))
}

// cmdRole answers as a Redis replica does: slave, master host and port, link state, offset.
func (p *Proxy) cmdRole(conn redcon.Conn) {
	host, port, _ := net.SplitHostPort(p.cfg.MasterAddr)
	portN, _ := strconv.Atoi(port)
	p.mu.Lock()
	state, off := p.link.state, int64(-1)
	if p.ring != nil && state == "connected" {
		off = p.ring.End()
	}
	p.mu.Unlock()
	conn.WriteArray(5)
	conn.WriteBulkString("slave")
	conn.WriteBulkString(host)
	conn.WriteInt(portN)
	conn.WriteBulkString(state)
	conn.WriteInt64(off)
}

// configParam is one CONFIG GET/SET parameter, with redis.conf's name.
type configParam struct {
	name string
	get  func(p *Proxy) string
	set  func(p *Proxy, v string) error // nil: read-only
}

// configParams lists the parameters CONFIG knows, in CONFIG GET's order.
func configParams() []configParam {
	return []configParam{
		{name: "repl-backlog-size",
			get: func(p *Proxy) string { return itoa(p.backlogSize.Load()) },
			set: func(p *Proxy, v string) error {
				n, err := ParseSize(v)
				if err != nil {
					return err
				}
				if n <= 0 {
					return fmt.Errorf("argument must be positive")
				}
				p.setResizedBacklog(n)
				p.log.Infof("CONFIG SET repl-backlog-size %d: backlog resized", n)
				return nil
			}},
		{name: "repl-timeout",
			get: func(p *Proxy) string { return itoa(int64(p.timeout() / time.Second)) },
			set: func(p *Proxy, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 {
					return fmt.Errorf("argument must be a positive number of seconds")
				}
				p.replTimeout.Store(int64(time.Duration(n) * time.Second))
				return nil
			}},
		{name: "dir", get: func(p *Proxy) string { return p.cfg.Dir }},
		{name: "replicaof", get: func(p *Proxy) string {
			h, port, _ := net.SplitHostPort(p.cfg.MasterAddr)
			return h + " " + port
		}},
		{name: "masteruser", get: func(p *Proxy) string { return p.cfg.MasterUser }},
		{name: "protected-mode", get: func(p *Proxy) string { return map[bool]string{true: "yes", false: "no"}[p.cfg.ProtectedMode] }},
		{name: "replica-priority", get: func(p *Proxy) string { return "0" }},
		{name: "snapshot-refresh", get: func(p *Proxy) string { return p.cfg.SnapshotRefresh }},
		{name: "snapshot-refresh-margin", get: func(p *Proxy) string { return itoa(p.refreshMargin()) }},
		{name: "snapshot-refresh-min-interval", get: func(p *Proxy) string {
			return itoa(int64(p.cfg.SnapshotRefreshMinInterval / time.Second))
		}},
		{name: "max-concurrent-full-syncs", get: func(p *Proxy) string { return strconv.Itoa(p.cfg.MaxConcurrentFullSyncs) }},
		{name: "full-sync-rate-limit", get: func(p *Proxy) string { return itoa(p.cfg.FullSyncRateLimit) }},
		// Client limits (limits.go), read-only.
		{name: "maxclients", get: func(p *Proxy) string { return strconv.Itoa(p.cfg.MaxClients) }},
		{name: "proto-max-bulk-len", get: func(p *Proxy) string { return itoa(p.cfg.ProtoMaxBulkLen) }},
		{name: "client-query-buffer-limit", get: func(p *Proxy) string { return itoa(p.cfg.ClientQueryBufferLimit) }},
		{name: "timeout", get: func(p *Proxy) string { return itoa(int64(p.cfg.Timeout / time.Second)) }},
		{name: "handshake-timeout", get: func(p *Proxy) string { return itoa(int64(max(p.cfg.HandshakeTimeout, 0) / time.Second)) }},
	}
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

func (p *Proxy) cmdConfig(conn redcon.Conn, args [][]byte) {
	if len(args) == 0 {
		wrongArity(conn, "config")
		return
	}
	switch strings.ToLower(string(args[0])) {
	case "get":
		if len(args) < 2 {
			wrongArity(conn, "config|get")
			return
		}
		var out []string
		for _, param := range configParams() {
			for _, pat := range args[1:] {
				if ok, _ := path.Match(configName(string(pat)), param.name); ok {
					out = append(out, param.name, param.get(p))
					break
				}
			}
		}
		conn.WriteArray(len(out))
		for _, s := range out {
			conn.WriteBulkString(s)
		}
	case "set":
		if len(args) < 3 || len(args)%2 == 0 {
			wrongArity(conn, "config|set")
			return
		}
		params := configParams()
		for i := 1; i < len(args); i += 2 {
			name := configName(string(args[i]))
			idx := slices.IndexFunc(params, func(c configParam) bool { return c.name == name })
			if idx < 0 || params[idx].set == nil {
				conn.WriteError("ERR Unknown option or number of arguments for CONFIG SET - '" + truncate(string(args[i]), 64) + "'")
				return
			}
			if err := params[idx].set(p, string(args[i+1])); err != nil {
				conn.WriteError("ERR CONFIG SET failed (possibly related to argument '" + name + "') - " + err.Error())
				return
			}
		}
		conn.WriteString("OK")
	case "resetstat":
		p.stats.syncFull.Store(0)
		p.stats.syncPartialOK.Store(0)
		p.stats.syncPartialErr.Store(0)
		p.stats.connections.Store(0)
		p.stats.rejected.Store(0)
		p.stats.queryBufLimit.Store(0)
		p.stats.netReplIn.Store(0)
		p.stats.netReplOut.Store(0)
		conn.WriteString("OK")
	case "rewrite":
		conn.WriteError("ERR The server is running without a config file")
	default:
		conn.WriteError("ERR unknown subcommand '" + truncate(string(args[0]), 64) + "'. Try CONFIG GET, SET, RESETSTAT.")
	}
}

// infoBacklog describes the backlog's storage: its mode and, in disk mode, the files, the
// oldest offset kept and the last storage (write or fsync) error, "" when none.
func (p *Proxy) infoBacklog(b *strings.Builder) {
	p.mu.Lock()
	d, active := p.disk, p.ring != nil
	p.mu.Unlock()
	b.WriteString("# Backlog\r\n")
	field(b, "backlog_mode", p.cfg.BacklogMode)
	if p.cfg.BacklogMode != BacklogDisk {
		return
	}
	field(b, "backlog_fsync", p.cfg.BacklogFsync.String())
	var bytes, oldest, synced, age int64 = 0, -1, -1, -1
	segs := 0
	lastErr := ""
	if d != nil && active {
		first, end := d.Bounds()
		bytes, oldest, synced, segs = max(end-first+1, 0), first, d.Synced(), d.Segments()
		if a, ok := d.OldestAge(); ok {
			age = int64(a.Seconds())
		}
	}
	if d != nil {
		if err := d.Err(); err != nil {
			lastErr = strings.ReplaceAll(err.Error(), "\r\n", " ")
		}
	}
	field(b, "backlog_disk_bytes", bytes)
	field(b, "backlog_segments", segs)
	field(b, "backlog_oldest_offset", oldest)
	// To a segment's precision; -1 while the oldest segment was recovered from disk.
	field(b, "backlog_oldest_age_seconds", age)
	field(b, "backlog_synced_offset", synced)
	field(b, "backlog_ram_tail", p.cfg.BacklogRAMTail)
	field(b, "backlog_last_fsync_error", lastErr)
}
