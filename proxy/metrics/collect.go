package metrics

import (
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/psync-proxy/psync-proxy/proxy/clientport"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// Collect reads the parts now and sends their figures.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := &scrape{c: c, ch: ch, now: time.Now()}
	hs, ls := c.src.History.Status(), c.src.Link.Status()
	s.server(hs, ls)
	s.replication(hs, ls)
	s.replicas()
	s.backlog(hs)
	s.snapshot(hs)
}

func (s *scrape) server(hs history.Status, ls upstream.Status) {
	src := s.c.src
	s.emit("redis_up", 1)
	replid := hs.Replid
	if replid == "" {
		replid = history.ZeroReplid
	}
	s.emit("redis_instance_info", 1, "slave", clientport.RedisVersion, "", "standalone", runtime.GOOS+" "+runtime.GOARCH,
		"noeviction", strconv.Itoa(src.Link.AnnouncePort()), src.RunID, strconv.Itoa(os.Getpid()), replid)
	s.emit("redis_uptime_in_seconds", float64(int64(s.now.Sub(src.Started).Seconds())))
	ps := src.Port.Stats()
	s.emit("redis_connected_clients", float64(ps.Clients))
	s.emit("redis_connections_received_total", float64(ps.Connections))
	s.emit("redis_rejected_connections_total", float64(ps.Rejected))
	s.emit("psync_proxy_client_query_buffer_limit_disconnections_total", float64(ps.QueryBufLimit))
	mem := src.Port.MemoryStats()
	s.emit("redis_memory_used_bytes", float64(mem.Used))
	s.emit("redis_memory_used_rss_bytes", float64(mem.RSS))
	s.emit("psync_proxy_backlog_memory_bytes", float64(mem.Backlog))
	mode := "memory"
	if src.History.Disk() {
		mode = "disk"
	}
	s.emit("psync_proxy_info", 1, src.Version, mode)
	s.emit("psync_proxy_master_changes_total", float64(ls.Switch.Changes))
	s.emit("psync_proxy_history_changes_total", float64(src.History.Generation()))
}

func (s *scrape) replication(hs history.Status, ls upstream.Status) {
	var first, end int64
	if hs.Backlog {
		first, end = hs.First, hs.End
	}
	s.emit("redis_master_repl_offset", float64(end))
	s.emit("redis_repl_backlog_is_active", b2f(hs.Backlog))
	s.emit("redis_replication_backlog_bytes", float64(s.c.src.History.BacklogSize()))
	s.emit("redis_repl_backlog_history_bytes", float64(max(end-first+1, 0)))
	s.emit("redis_repl_backlog_first_byte_offset", float64(first))
	host, port := ls.Master.HostPort()
	mh := []string{host, strconv.Itoa(port)}
	s.emit("redis_master_link_up", b2f(ls.Up()), mh...)
	lastIO := -1.0
	if !ls.LastIO.IsZero() {
		lastIO = float64(int64(s.now.Sub(ls.LastIO).Seconds()))
	}
	s.emit("redis_master_last_io_seconds_ago", lastIO, mh...)
	s.emit("redis_master_sync_in_progress", b2f(ls.State == upstream.StateSync), mh...)
	s.emit("redis_slave_repl_offset", float64(end), mh...)
	s.emit("redis_net_repl_input_bytes_total", float64(ls.NetIn))
}

func (s *scrape) replicas() {
	ss := s.c.src.Sessions.Stats()
	s.emit("redis_replica_resyncs_full", float64(ss.SyncFull))
	s.emit("redis_replica_partial_resync_accepted", float64(ss.PartialOK))
	s.emit("redis_replica_partial_resync_denied", float64(ss.PartialErr))
	s.emit("redis_net_repl_output_bytes_total", float64(ss.NetOut))
	s.emit("psync_proxy_full_syncs_served_total", float64(ss.SyncFull))
	s.emit("psync_proxy_full_syncs_in_progress", float64(ss.FullSyncsActive))
	s.emit("psync_proxy_full_syncs_waiting", float64(ss.FullSyncsWait))
	list := s.c.src.Sessions.List()
	s.emit("redis_connected_slaves", float64(len(list)))
	seen := map[[3]string]bool{} // two sessions of one replica would make a duplicate series
	for _, r := range list {
		l := [3]string{r.IP, strconv.Itoa(r.Port), r.State}
		if seen[l] {
			continue
		}
		seen[l] = true
		s.emit("redis_connected_slave_offset_bytes", float64(r.Offset), l[:]...)
		s.emit("redis_connected_slave_lag_seconds", float64(int64(r.Lag(s.now).Seconds())), l[:]...)
	}
}

func (s *scrape) backlog(hs history.Status) {
	f := s.c.src.Port.BacklogFigures()
	s.emit("psync_proxy_backlog_write_rate_bytes_per_second", f.Rate)
	s.emit("psync_proxy_backlog_write_rate_peak_bytes_per_second", f.Peak)
	s.emit("psync_proxy_backlog_coverage_seconds", f.Coverage)
	s.emit("psync_proxy_backlog_size_for_outage_bytes", float64(f.SizeShort), "5m")
	s.emit("psync_proxy_backlog_size_for_outage_bytes", float64(f.SizeLong), "10m")
	st := hs.Storage
	disk := s.c.src.History.Disk()
	diskBytes, segments := 0.0, 0.0
	if disk {
		diskBytes, segments = float64(st.Bytes), float64(st.Segments)
	}
	s.emit("psync_proxy_backlog_disk_bytes", diskBytes)
	s.emit("psync_proxy_backlog_segments", segments)
	age := -1.0
	if st.OldestAgeOK {
		age = st.OldestAge.Seconds()
	}
	s.emit("psync_proxy_backlog_oldest_age_seconds", age)
	s.emit("psync_proxy_backlog_synced_offset", float64(st.Synced))
	s.emit("psync_proxy_backlog_storage_error", b2f(st.LastErr != nil))
	s.emit("psync_proxy_backlog_disk_full_events_total", float64(st.DiskFullEvents))
	s.emit("psync_proxy_backlog_effective_size_bytes", float64(st.EffectiveSize))
}

func (s *scrape) snapshot(hs history.Status) {
	src := s.c.src
	state := src.Port.SnapshotState()
	for _, st := range clientport.SnapshotStates {
		s.emit("psync_proxy_snapshot_state", b2f(st == state), st)
	}
	age, size, off, changes := -1.0, 0.0, -1.0, 0.0
	if snap := hs.Snapshot; snap != nil {
		age, size, off = s.now.Sub(snap.Created).Seconds(), float64(snap.Size), float64(snap.Offset)
		if hs.Backlog {
			changes = float64(max(hs.End-snap.Offset, 0))
		}
	}
	s.emit("psync_proxy_snapshot_age_seconds", age)
	s.emit("psync_proxy_snapshot_size_bytes", size)
	s.emit("psync_proxy_snapshot_offset", off)
	s.emit("redis_rdb_changes_since_last_save", changes)
	rs := src.Refresher.Status()
	s.emit("redis_rdb_last_bgsave_status", b2f(rs.LastErr == ""))
	s.emit("psync_proxy_snapshot_refreshes_total", float64(rs.Count))
	s.emit("psync_proxy_snapshot_refresh_failures_total", float64(rs.Failures))
	s.emit("psync_proxy_snapshot_discarded_total", float64(hs.Discarded))
}
