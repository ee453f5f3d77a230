package history

// Status is the history as INFO and the metrics show it.
type Status struct {
	View
	Snapshot  *Snapshot // nil when none; immutable
	Discarded int64     // snapshots and RDBs thrown away for failing their check
	Storage   storeStats
}

// Status returns the history now, with the backlog's storage figures.
func (h *History) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Status{View: h.viewLocked(), Snapshot: h.snap, Discarded: h.discarded.Load()}
	if h.bl != nil {
		s.Storage = h.store.Stats()
	} else {
		s.Storage = storeStats{Mode: h.store.opt.Mode, First: -1, Synced: -1}
		if d := h.store.disk; d != nil {
			s.Storage.LastErr = d.Err()
		}
	}
	return s
}

// Disk reports whether the backlog is kept on disk.
func (h *History) Disk() bool { return h.store.opt.Mode == modeDisk }
