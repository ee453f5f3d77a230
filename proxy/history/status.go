package history

import "github.com/psync-proxy/psync-proxy/backlog"

// Status is the history as INFO and the metrics show it.
type Status struct {
	View
	Snapshot  *Snapshot // nil when none; immutable
	Discarded int64     // snapshots and RDBs thrown away for failing their check
	// Storage describes the backlog's storage; with no current history, only its mode, size,
	// last error and disk-full figures, and First and Synced are -1.
	Storage backlog.Stats
}

// Status returns the history now, with the backlog's storage figures.
func (h *History) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Status{View: h.viewLocked(), Snapshot: h.snap, Discarded: h.discarded.Load(), Storage: h.store.Stats()}
	if h.bl == nil {
		st := s.Storage
		s.Storage = backlog.Stats{Mode: st.Mode, Size: st.Size, First: -1, Synced: -1, LastErr: st.LastErr,
			DiskFullEvents: st.DiskFullEvents, EffectiveSize: st.EffectiveSize}
	}
	return s
}

// Disk reports whether the backlog is kept on disk.
func (h *History) Disk() bool { return h.opt.Disk }
