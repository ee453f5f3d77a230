package clientport

import (
	"strings"
	"time"
)

// infoSyncGate shows the pacing of RDB requests to the master (upstream/syncgate.go): failed
// attempts since start, the last one's reason ("" once an RDB was installed since), and how
// many seconds remain before the next request may start (0: now).
func (p *Port) infoSyncGate(b *strings.Builder) {
	st := p.cfg.Link.SyncStatus()
	field(b, "master_sync_failures", st.Failures)
	field(b, "master_sync_last_error", st.LastErr)
	field(b, "master_sync_next_attempt_in_seconds", int64((st.NextIn+time.Second-1)/time.Second))
}
