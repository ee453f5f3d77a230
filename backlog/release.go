package backlog

// Release deletes the oldest segment of the current backlog if it lies wholly before offset
// below and is not the newest, and reports whether it did. A caller that needs room on the
// file system the backlog shares (the proxy's snapshot, on a full disk) gives up history it
// can do without, one segment at a time as it needs the room: the bytes before a new
// snapshot's offset only serve replicas that lag behind it. It counts as a disk-full event
// (Stats.DiskFullEvents, EffectiveSize). Cursors on the deleted segment get ErrTrimmed, as
// with retention. In memory mode, or with no history, it does nothing.
func (s *Store) Release(below int64) bool {
	d, ok := s.current().(*disk)
	if !ok {
		return false
	}
	return d.release(below)
}

func (d *disk) release(below int64) bool {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closed.Load() || len(d.segs) < 2 || d.segs[1].start > below || !d.dropOldestLocked() {
		return false
	}
	d.diskFullLocked(1)
	return true
}
