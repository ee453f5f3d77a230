package clientport

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// infoSection is one "# Section" of INFO: its name as INFO takes it, whether the default
// INFO shows it, and what renders it.
type infoSection struct {
	name      string
	byDefault func(p *Port) bool
	render    func(p *Port, b *strings.Builder)
}

// infoSections lists INFO's sections in their order.
var infoSections = []infoSection{
	{name: "server", render: (*Port).infoServer},
	{name: "clients", render: (*Port).infoClients},
	{name: "memory", render: (*Port).infoMemory},
	{name: "persistence", render: (*Port).infoPersistence},
	{name: "replication", render: (*Port).infoReplication},
	{name: "backlog", render: (*Port).infoBacklog},
	{name: "snapshot", render: (*Port).infoSnapshot},
	{name: "stats", render: (*Port).infoStats},
	{name: "cpu", render: (*Port).infoCPU},
	// No Keyspace: the proxy holds no database, and an empty section would not stop
	// exporters from inventing them (CONFIG GET databases is empty too).
}

// cmdInfo answers INFO [section ...] with Redis's field names and "# Section" headers.
func cmdInfo(x *call) {
	want := map[string]bool{}
	for _, a := range x.args {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b strings.Builder
	for _, s := range infoSections {
		if !want[s.name] && (!all || s.byDefault != nil && !s.byDefault(x.p)) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		s.render(x.p, &b)
	}
	x.conn.WriteBulkString(b.String())
}

func field(b *strings.Builder, name string, v any) {
	fmt.Fprintf(b, "%s:%v\r\n", name, v)
}

func yesNo(v bool) string { return map[bool]string{true: "yes", false: "no"}[v] }

func oneZero(v bool) int { return map[bool]int{true: 1, false: 0}[v] }

func (p *Port) infoServer(b *strings.Builder) {
	up := time.Since(p.cfg.Started)
	b.WriteString("# Server\r\n")
	field(b, "redis_version", RedisVersion)
	field(b, "psync_proxy_version", p.cfg.Version)
	field(b, "redis_mode", "standalone")
	field(b, "os", runtime.GOOS+" "+runtime.GOARCH)
	field(b, "arch_bits", strconv.IntSize)
	field(b, "go_version", runtime.Version())
	field(b, "process_id", os.Getpid())
	field(b, "run_id", p.cfg.RunID)
	field(b, "tcp_port", p.cfg.Link.AnnouncePort())
	field(b, "server_time_usec", time.Now().UnixMicro())
	field(b, "uptime_in_seconds", int64(up.Seconds()))
	field(b, "uptime_in_days", int64(up.Hours()/24))
	exe, _ := os.Executable()
	field(b, "executable", exe)
	field(b, "config_file", p.cfg.ConfigFile)
}

func (p *Port) infoClients(b *strings.Builder) {
	b.WriteString("# Clients\r\n")
	field(b, "connected_clients", p.clients.Load())
	field(b, "maxclients", p.cfg.MaxClients)
	field(b, "blocked_clients", 0)
}

func (p *Port) infoStats(b *strings.Builder) {
	ps, ss := p.Stats(), p.cfg.Sessions.Stats()
	b.WriteString("# Stats\r\n")
	field(b, "total_connections_received", ps.Connections)
	field(b, "rejected_connections", ps.Rejected)
	field(b, "client_query_buffer_limit_disconnections", ps.QueryBufLimit)
	field(b, "sync_full", ss.SyncFull)
	field(b, "sync_partial_ok", ss.PartialOK)
	field(b, "sync_partial_err", ss.PartialErr)
	field(b, "total_net_repl_input_bytes", p.cfg.Link.Status().NetIn)
	field(b, "total_net_repl_output_bytes", ss.NetOut)
}

// infoSnapshot describes the cached snapshot that serves full syncs, in the manner of
// Redis's rdb_* fields.
func (p *Port) infoSnapshot(b *strings.Builder) {
	hs, rs, ss := p.cfg.History.Status(), p.cfg.Refresher.Status(), p.cfg.Sessions.Stats()
	snap := hs.Snapshot
	b.WriteString("# Snapshot\r\n")
	field(b, "snapshot_state", p.SnapshotState())
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
	field(b, "snapshot_refresh_policy", refreshPolicy(p.cfg.Refresher))
	field(b, "snapshot_refreshes", rs.Count)
	field(b, "snapshot_refresh_failures", rs.Failures)
	field(b, "snapshot_last_refresh_status", map[bool]string{true: "ok", false: "err"}[rs.LastErr == ""])
	lastRefresh := int64(-1)
	if !rs.Last.IsZero() {
		lastRefresh = rs.Last.Unix()
	}
	field(b, "snapshot_last_refresh_time", lastRefresh)
	field(b, "snapshot_discarded", hs.Discarded)
	field(b, "full_syncs_served", ss.SyncFull)
	field(b, "full_syncs_in_progress", ss.FullSyncsActive)
	field(b, "full_syncs_waiting", ss.FullSyncsWait)
	lim := p.cfg.Sessions.Limits()
	field(b, "max_concurrent_full_syncs", lim.MaxConcurrentFullSyncs)
	field(b, "full_sync_rate_limit", lim.FullSyncRateLimit)
}

// Snapshot states, as INFO snapshot_state names them.
var SnapshotStates = []string{"none", "receiving", "refreshing", "ready"}

// SnapshotState is the cached snapshot's state: none, receiving (the master link is
// receiving one), refreshing (a second connection is fetching a new one) or ready.
func (p *Port) SnapshotState() string {
	switch {
	case p.cfg.Link.Status().State == upstream.StateSync:
		return "receiving"
	case p.cfg.Refresher.Status().Refreshing:
		return "refreshing"
	case p.cfg.History.Snapshot() != nil:
		return "ready"
	}
	return "none"
}

func refreshPolicy(r *upstream.Refresher) string {
	if r.Auto() {
		return "auto"
	}
	return "on-demand"
}

// infoReplication prints the fields of a Redis replica's INFO replication, in Redis's order.
func (p *Port) infoReplication(b *strings.Builder) {
	now := time.Now()
	ls, v, replicas := p.cfg.Link.Status(), p.cfg.History.View(), p.cfg.Sessions.List()
	var first, end int64
	if v.Backlog {
		first, end = v.First, v.End
	}
	host, port := ls.Master.HostPort()
	b.WriteString("# Replication\r\n")
	field(b, "role", "slave")
	field(b, "master_host", host)
	field(b, "master_port", port)
	linkUp := ls.Up() || ls.SyncServing // see masterSwitchInfo
	field(b, "master_link_status", map[bool]string{true: "up", false: "down"}[linkUp])
	lastIO := int64(-1)
	if !ls.LastIO.IsZero() {
		lastIO = int64(now.Sub(ls.LastIO).Seconds())
	}
	field(b, "master_last_io_seconds_ago", lastIO)
	syncing := ls.State == upstream.StateSync
	field(b, "master_sync_in_progress", oneZero(syncing))
	field(b, "slave_read_repl_offset", end)
	field(b, "slave_repl_offset", end)
	if syncing {
		total, read := ls.TransferSize, ls.TransferRead
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
	if !linkUp {
		field(b, "master_link_down_since_seconds", int64(now.Sub(ls.DownSince).Seconds()))
	}
	p.infoSyncGate(b)
	// Sentinel must never promote the proxy: it holds no dataset.
	field(b, "slave_priority", 0)
	field(b, "slave_read_only", 1)
	field(b, "replica_announced", 1)
	field(b, "connected_slaves", len(replicas))
	for i, r := range replicas {
		lag := int64(r.Lag(now).Seconds())
		fmt.Fprintf(b, "slave%d:ip=%s,port=%d,state=%s,offset=%d,lag=%d\r\n", i, r.IP, r.Port, r.State, r.Offset, lag)
	}
	masterSwitchInfo(b, ls)
	replid := v.Replid
	if replid == "" {
		replid = history.ZeroReplid
	}
	field(b, "master_replid", replid)
	field(b, "master_replid2", v.Replid2)
	field(b, "master_repl_offset", end)
	field(b, "second_repl_offset", v.SecondOff)
	field(b, "repl_backlog_active", oneZero(v.Backlog))
	field(b, "repl_backlog_size", p.cfg.History.BacklogSize())
	field(b, "repl_backlog_first_byte_offset", first)
	field(b, "repl_backlog_histlen", max(end-first+1, 0))
}

// cmdRole answers as a Redis replica does: slave, master host and port, link state, offset.
func cmdRole(x *call) {
	ls := x.p.cfg.Link.Status()
	host, port := ls.Master.HostPort()
	off := int64(-1)
	if _, bl := x.p.cfg.History.Current(); bl != nil && ls.Up() {
		off = bl.End()
	}
	x.conn.WriteArray(5)
	x.conn.WriteBulkString("slave")
	x.conn.WriteBulkString(host)
	x.conn.WriteInt(port)
	x.conn.WriteBulkString(ls.State)
	x.conn.WriteInt64(off)
}

// infoBacklog describes the backlog: its mode, the stream rate and what the backlog covers
// at it (infoBacklogRate), and in disk mode the files, the oldest offset kept and the last
// storage (write or fsync) error, "" when none.
func (p *Port) infoBacklog(b *strings.Builder) {
	h := p.cfg.History
	b.WriteString("# Backlog\r\n")
	if !h.Disk() {
		field(b, "backlog_mode", "memory")
		p.infoBacklogRate(b)
		return
	}
	field(b, "backlog_mode", "disk")
	p.infoBacklogRate(b)
	opt := h.Options()
	st := h.Status().Storage
	field(b, "backlog_fsync", opt.Fsync.String())
	age := int64(-1)
	if st.OldestAgeOK {
		age = int64(st.OldestAge.Seconds())
	}
	lastErr := ""
	if st.LastErr != nil {
		lastErr = strings.ReplaceAll(st.LastErr.Error(), "\r\n", " ")
	}
	field(b, "backlog_disk_bytes", st.Bytes)
	field(b, "backlog_segments", st.Segments)
	field(b, "backlog_oldest_offset", st.First)
	// To a segment's precision; -1 while the oldest segment was recovered from disk.
	field(b, "backlog_oldest_age_seconds", age)
	field(b, "backlog_synced_offset", st.Synced)
	field(b, "backlog_ram_tail", opt.RAMTail)
	field(b, "backlog_last_fsync_error", lastErr)
	field(b, "backlog_disk_full_events", st.DiskFullEvents)
	field(b, "backlog_effective_size", st.EffectiveSize)
}
