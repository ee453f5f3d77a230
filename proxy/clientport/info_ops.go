package clientport

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/streamrate"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// RedisVersion is the redis_version INFO reports: the Redis release whose replication
// protocol the proxy speaks on both links. It answers what a Redis 7.0 master answers a
// replica (PSYNC2 with capa eof and psync2, REPLCONF rdb-only, GETACK, PSYNC FAILOVER
// refused as 6.2+ does) and asks its master what a 7.0 replica asks; newer handshake options
// (dual-channel, rdb-channel-repl) are declined, which newer replicas treat as a 7.0 master
// (a single-channel sync). Tools that gate commands on the version then send the proxy only
// what 7.0 has. The RDB format is the master's, whatever this says.
const RedisVersion = "7.0.0"

// Outages the guide sizes the backlog for: rate x outage.
const (
	outageShort = 5 * time.Minute
	outageLong  = 10 * time.Minute
)

// BacklogFigures are the guide's figures for the backlog, from the stream rate: INFO
// backlog and the metrics show the same numbers.
type BacklogFigures struct {
	streamrate.Rates
	Held     int64   // stream bytes in the backlog (repl_backlog_histlen)
	Coverage float64 // seconds of stream held at Rate; -1 with no writes
	// SizeShort and SizeLong are the backlog sizes that cover a 5 and a 10 minute outage.
	SizeShort, SizeLong int64
}

// BacklogFigures returns the guide's figures now.
func (p *Port) BacklogFigures() BacklogFigures {
	v := p.cfg.History.View()
	f := BacklogFigures{}
	if p.cfg.Rate != nil {
		f.Rates = p.cfg.Rate.Rates()
	}
	if v.Backlog {
		f.Held = max(v.End-v.First+1, 0)
	}
	f.Coverage = streamrate.Coverage(f.Held, f.Rate)
	f.SizeShort = streamrate.SizeFor(outageShort, f.Rate)
	f.SizeLong = streamrate.SizeFor(outageLong, f.Rate)
	return f
}

// infoBacklogRate writes the guide's figures: the master's write rate over the last minute
// (measured from master_repl_offset), the backlog's coverage at that rate, and the sizes that
// would cover a 5 and a 10 minute outage.
func (p *Port) infoBacklogRate(b *strings.Builder) {
	f := p.BacklogFigures()
	field(b, "backlog_write_rate_bytes_per_sec", int64(f.Rate+0.5))
	field(b, "backlog_write_rate_window_seconds", int64(f.Covered.Seconds()+0.5))
	field(b, "backlog_write_rate_peak_1h_bytes_per_sec", int64(f.Peak+0.5))
	field(b, "backlog_coverage_seconds", strconv.FormatFloat(f.Coverage, 'f', 1, 64))
	field(b, "backlog_size_for_5min_outage", f.SizeShort)
	field(b, "backlog_size_for_10min_outage", f.SizeLong)
	field(b, "backlog_size_for_5min_outage_human", bytesToHuman(f.SizeShort))
	field(b, "backlog_size_for_10min_outage_human", bytesToHuman(f.SizeLong))
}

// MemoryStats are the process's memory figures as INFO memory shows them.
type MemoryStats struct {
	Used    int64 // used_memory: what the Go runtime holds in use (its heap in use, stacks, metadata)
	RSS     int64 // used_memory_rss: resident set size (used_memory where the OS does not tell)
	System  int64 // total_system_memory; 0 where unknown
	Backlog int64 // mem_replication_backlog: RAM holding stream bytes
}

// MemoryStats returns the memory figures now. It stops the world for a moment (the runtime's
// ReadMemStats), so it is for INFO and scrapes, not for hot paths.
func (p *Port) MemoryStats() MemoryStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := MemoryStats{Used: int64(ms.Sys - ms.HeapIdle), RSS: residentBytes(), System: systemMemory(),
		Backlog: p.cfg.History.Status().Storage.Mem}
	if m.RSS <= 0 {
		m.RSS = m.Used
	}
	return m
}

func (p *Port) infoMemory(b *strings.Builder) {
	m := p.MemoryStats()
	b.WriteString("# Memory\r\n")
	field(b, "used_memory", m.Used)
	field(b, "used_memory_human", bytesToHuman(m.Used))
	field(b, "used_memory_rss", m.RSS)
	field(b, "used_memory_rss_human", bytesToHuman(m.RSS))
	field(b, "total_system_memory", m.System)
	field(b, "total_system_memory_human", bytesToHuman(m.System))
	field(b, "maxmemory", 0)
	field(b, "maxmemory_human", "0B")
	field(b, "maxmemory_policy", "noeviction")
	ratio := 0.0
	if m.Used > 0 {
		ratio = float64(m.RSS) / float64(m.Used)
	}
	field(b, "mem_fragmentation_ratio", strconv.FormatFloat(ratio, 'f', 2, 64))
	field(b, "mem_replication_backlog", m.Backlog)
	// Replicas read the shared backlog through their own cursors: no output buffers.
	field(b, "mem_clients_slaves", 0)
	field(b, "mem_allocator", "go-"+runtime.Version())
}

// infoPersistence maps Redis's persistence fields onto what the proxy persists: the cached
// snapshot plays the RDB (a refresh is a BGSAVE), the disk backlog the AOF's write status.
func (p *Port) infoPersistence(b *strings.Builder) {
	hs, rs := p.cfg.History.Status(), p.cfg.Refresher.Status()
	receiving := p.cfg.Link.Status().State == upstream.StateSync
	changes, lastSave := int64(0), p.cfg.Started.Unix()
	if snap := hs.Snapshot; snap != nil {
		lastSave = snap.Created.Unix()
		if hs.Backlog {
			changes = max(hs.End-snap.Offset, 0)
		}
	}
	saves := rs.Count - rs.Failures
	if rs.Refreshing {
		saves--
	}
	b.WriteString("# Persistence\r\n")
	field(b, "loading", 0)
	field(b, "async_loading", 0)
	// Stream bytes since the snapshot's offset, where Redis counts changes.
	field(b, "rdb_changes_since_last_save", changes)
	field(b, "rdb_bgsave_in_progress", oneZero(rs.Refreshing || receiving))
	field(b, "rdb_last_save_time", lastSave)
	field(b, "rdb_last_bgsave_status", okErr(rs.LastErr == ""))
	field(b, "rdb_last_bgsave_time_sec", -1)
	field(b, "rdb_current_bgsave_time_sec", -1)
	field(b, "rdb_saves", max(saves, 0))
	field(b, "rdb_last_cow_size", 0)
	field(b, "aof_enabled", 0)
	field(b, "aof_rewrite_in_progress", 0)
	field(b, "aof_rewrite_scheduled", 0)
	field(b, "aof_last_rewrite_time_sec", -1)
	field(b, "aof_current_rewrite_time_sec", -1)
	field(b, "aof_last_bgrewrite_status", "ok")
	// The disk backlog's storage errors, in the field tools watch for write errors.
	field(b, "aof_last_write_status", okErr(hs.Storage.LastErr == nil))
}

func okErr(ok bool) string {
	if ok {
		return "ok"
	}
	return "err"
}

func (p *Port) infoCPU(b *strings.Builder) {
	user, sys := cpuTimes()
	b.WriteString("# CPU\r\n")
	field(b, "used_cpu_sys", cpuSeconds(sys))
	field(b, "used_cpu_user", cpuSeconds(user))
	field(b, "used_cpu_sys_children", "0.000000")
	field(b, "used_cpu_user_children", "0.000000")
	field(b, "go_goroutines", runtime.NumGoroutine())
	field(b, "go_gomaxprocs", runtime.GOMAXPROCS(0))
}

func cpuSeconds(d time.Duration) string {
	return fmt.Sprintf("%d.%06d", int64(d/time.Second), int64(d%time.Second/time.Microsecond))
}

// bytesToHuman formats n as Redis's bytesToHuman does: 1023B, 1.50K, 2.00M, 3.25G.
func bytesToHuman(n int64) string {
	units := []string{"B", "K", "M", "G", "T", "P"}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + units[i]
}
