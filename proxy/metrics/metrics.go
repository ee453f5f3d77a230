// Package metrics exports psync-proxy to Prometheus. A Collector reads the parts' Status and
// Stats at scrape time, the same figures INFO renders, so nothing is counted twice. The
// fields redis_exporter already maps keep redis_exporter's names and labels
// (redis_master_repl_offset, redis_connected_slave_lag_seconds{slave_ip,slave_port,
// slave_state}, ...), so dashboards and alerts written for Redis replicas work unchanged on
// the proxy; what only the proxy knows is psync_proxy_*.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/psync-proxy/psync-proxy/proxy/clientport"
	"github.com/psync-proxy/psync-proxy/proxy/downstream"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// Sources are the parts a Collector reads.
type Sources struct {
	History   *history.History
	Link      *upstream.Link
	Refresher *upstream.Refresher
	Sessions  *downstream.Sessions
	Port      *clientport.Port
	Version   string // psync-proxy's
	RunID     string
	Started   time.Time
}

// Collector is a prometheus.Collector of the proxy's figures.
type Collector struct {
	src   Sources
	descs map[string]*prometheus.Desc
	kinds map[string]prometheus.ValueType
}

// def is one metric: its name, help and labels; counter or gauge.
type def struct {
	name, help string
	counter    bool
	labels     []string
}

var (
	masterLabels  = []string{"master_host", "master_port"}
	replicaLabels = []string{"slave_ip", "slave_port", "slave_state"}
	infoLabels    = []string{"role", "redis_version", "redis_build_id", "redis_mode", "os", "maxmemory_policy",
		"tcp_port", "run_id", "process_id", "master_replid"}
)

// defs lists every metric: redis_exporter's names first, then the proxy's own.
var defs = []def{
	{name: "redis_up", help: "1: the proxy answered this scrape."},
	{name: "redis_instance_info", help: "Information about the proxy, as redis_exporter labels a Redis instance.", labels: infoLabels},
	{name: "redis_uptime_in_seconds", help: "Seconds since the proxy started."},
	{name: "redis_connected_clients", help: "Client connections, replicas included."},
	{name: "redis_memory_used_bytes", help: "Memory the Go runtime holds in use (INFO used_memory)."},
	{name: "redis_memory_used_rss_bytes", help: "Resident set size (INFO used_memory_rss)."},
	{name: "redis_master_repl_offset", help: "Offset of the last byte received from the master."},
	{name: "redis_repl_backlog_is_active", help: "1 while the proxy holds a backlog."},
	{name: "redis_replication_backlog_bytes", help: "repl-backlog-size: the backlog's retention."},
	{name: "redis_repl_backlog_history_bytes", help: "Stream bytes in the backlog (repl_backlog_histlen)."},
	{name: "redis_repl_backlog_first_byte_offset", help: "Offset of the backlog's first byte."},
	{name: "redis_connected_slaves", help: "Replicas connected to the proxy."},
	{name: "redis_master_link_up", help: "1 while the link to the master streams.", labels: masterLabels},
	{name: "redis_master_last_io_seconds_ago", help: "Seconds since the master last sent a byte (-1: never).", labels: masterLabels},
	{name: "redis_master_sync_in_progress", help: "1 while the proxy receives a full sync from the master.", labels: masterLabels},
	{name: "redis_slave_repl_offset", help: "The proxy's replication offset as a replica of its master.", labels: masterLabels},
	{name: "redis_replica_resyncs_full", help: "Full syncs the proxy served to replicas (sync_full)."},
	{name: "redis_replica_partial_resync_accepted", help: "Partial resyncs accepted (sync_partial_ok)."},
	{name: "redis_replica_partial_resync_denied", help: "Partial resyncs denied (sync_partial_err)."},
	{name: "redis_connected_slave_offset_bytes", help: "A replica's last acknowledged offset.", labels: replicaLabels},
	{name: "redis_connected_slave_lag_seconds", help: "Seconds since a replica's last acknowledgement.", labels: replicaLabels},
	{name: "redis_net_repl_input_bytes_total", help: "Bytes received from the master (stream and RDB).", counter: true},
	{name: "redis_net_repl_output_bytes_total", help: "Bytes sent to replicas (stream and snapshots).", counter: true},
	{name: "redis_connections_received_total", help: "Connections accepted.", counter: true},
	{name: "redis_rejected_connections_total", help: "Connections refused (maxclients, protected mode).", counter: true},
	{name: "redis_rdb_last_bgsave_status", help: "1 if the last snapshot refresh succeeded (or none was needed)."},
	{name: "redis_rdb_changes_since_last_save", help: "Stream bytes since the cached snapshot's offset."},

	{name: "psync_proxy_info", help: "psync-proxy's version and backlog mode.", labels: []string{"version", "backlog_mode"}},
	{name: "psync_proxy_backlog_write_rate_bytes_per_second", help: "The master's stream rate, averaged over the last minute."},
	{name: "psync_proxy_backlog_write_rate_peak_bytes_per_second", help: "The highest one-minute average stream rate of the last hour."},
	{name: "psync_proxy_backlog_coverage_seconds", help: "Seconds of stream the backlog holds at the current rate (-1: no writes)."},
	{name: "psync_proxy_backlog_size_for_outage_bytes", help: "Backlog size covering an outage of this length at the current rate.", labels: []string{"outage"}},
	{name: "psync_proxy_backlog_memory_bytes", help: "RAM holding stream bytes (the ring, or the disk backlog's RAM tail)."},
	{name: "psync_proxy_backlog_disk_bytes", help: "Stream bytes in the disk backlog's files (0 in memory mode)."},
	{name: "psync_proxy_backlog_segments", help: "Segment files of the disk backlog (0 in memory mode)."},
	{name: "psync_proxy_backlog_oldest_age_seconds", help: "Age of the oldest byte held, to a segment (-1: unknown)."},
	{name: "psync_proxy_backlog_synced_offset", help: "Highest offset durable under the fsync policy: the most the master is acknowledged."},
	{name: "psync_proxy_backlog_storage_error", help: "1 while a storage error keeps the backlog from storing or syncing."},
	{name: "psync_proxy_backlog_disk_full_events_total", help: "Times a full disk made the backlog drop its oldest segments.", counter: true},
	{name: "psync_proxy_backlog_effective_size_bytes", help: "What the disk could hold of the backlog when last found full (repl-backlog-size otherwise)."},
	{name: "psync_proxy_snapshot_state", help: "1 for the cached snapshot's current state.", labels: []string{"state"}},
	{name: "psync_proxy_snapshot_age_seconds", help: "Age of the cached snapshot (-1: none)."},
	{name: "psync_proxy_snapshot_size_bytes", help: "Size of the cached snapshot."},
	{name: "psync_proxy_snapshot_offset", help: "Offset of the cached snapshot (-1: none)."},
	{name: "psync_proxy_snapshot_refreshes_total", help: "Snapshot refreshes asked of the master.", counter: true},
	{name: "psync_proxy_snapshot_refresh_failures_total", help: "Snapshot refreshes that failed.", counter: true},
	{name: "psync_proxy_snapshot_discarded_total", help: "Snapshots that failed their check and were never served.", counter: true},
	{name: "psync_proxy_full_syncs_served_total", help: "Full syncs served from the cached snapshot.", counter: true},
	{name: "psync_proxy_full_syncs_in_progress", help: "Full syncs sending their snapshot now."},
	{name: "psync_proxy_full_syncs_waiting", help: "Full syncs waiting for a turn (max-concurrent-full-syncs)."},
	{name: "psync_proxy_master_changes_total", help: "Times the proxy was moved to another master.", counter: true},
	{name: "psync_proxy_history_changes_total", help: "Replication history changes: a new replication ID or a full resync upstream.", counter: true},
	{name: "psync_proxy_client_query_buffer_limit_disconnections_total", help: "Clients closed by client-query-buffer-limit.", counter: true},
}

// Names lists the name of every metric the Collector exports.
func Names() []string {
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.name
	}
	return out
}

// New returns a Collector of src.
func New(src Sources) *Collector {
	c := &Collector{src: src, descs: make(map[string]*prometheus.Desc, len(defs)), kinds: map[string]prometheus.ValueType{}}
	for _, d := range defs {
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, d.labels, nil)
		c.kinds[d.name] = prometheus.GaugeValue
		if d.counter {
			c.kinds[d.name] = prometheus.CounterValue
		}
	}
	return c
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range defs {
		ch <- c.descs[d.name]
	}
}

// scrape is one Collect: the channel and the time.
type scrape struct {
	c   *Collector
	ch  chan<- prometheus.Metric
	now time.Time
}

// emit sends metric name's value with its label values.
func (s *scrape) emit(name string, v float64, labels ...string) {
	s.ch <- prometheus.MustNewConstMetric(s.c.descs[name], s.c.kinds[name], v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
