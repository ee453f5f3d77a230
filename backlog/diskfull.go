package backlog

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A full disk shrinks the window; it never stops the stream (design invariant 10). When a
// write, a seal, the creation of a segment or the state file fails because the file system
// is full (ENOSPC, or EDQUOT for a quota), the oldest segment is deleted and the write tried
// again, segment after segment, exactly as retention by size would delete them: oldest
// first, First moving before the files go, never the newest segment. Cursors on a deleted
// segment get ErrTrimmed, never other bytes. Only when nothing older than the newest segment
// is left does the append fail with ErrStorage wrapping ENOSPC, cut back as any failed
// write, for the caller to retry.
//
// A segment a cursor still holds open (it is sending from it at that instant, or read from
// it last and has not been called since) is unlinked at once, but its blocks are freed only
// when the cursor lets the descriptor go, at its next call at the latest (which then fails
// with ErrTrimmed): the write may need the next segment too. Waiting for the reader instead
// would let a slow replica stall the stream.
//
// So that there is an older segment to give up, segments are at most an eighth of the room
// the file system has for the backlog (segLimit).

// fullLogEvery bounds the disk-full warnings: a disk smaller than Size fills again every
// segment or so, and one line a minute with the totals says as much as one per event.
const fullLogEvery = time.Minute

// fullStats counts the disk-full events of a Store, across the disks it starts.
type fullStats struct {
	events    atomic.Int64
	effective atomic.Int64 // bytes held just after the last event made room

	mu      sync.Mutex // guards the warning's rate limit and totals
	lastLog time.Time
	events1 int // events since the last warning
	dropped int // segments deleted since the last warning
}

// noSpace reports whether err says the file system (or the user's quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFullLocked records a disk-full event in which dropped segments were deleted (none:
// no event) and logs it, at most once a minute. The caller holds wmu and has published what
// the freed room let it store.
func (d *disk) diskFullLocked(dropped int) {
	if dropped == 0 {
		return
	}
	f := d.opt.full
	held := max(d.ring.End()-d.First()+1, 0)
	f.effective.Store(held)
	f.events.Add(1)
	f.mu.Lock()
	f.events1++
	f.dropped += dropped
	now := time.Now()
	if !f.lastLog.IsZero() && now.Sub(f.lastLog) < fullLogEvery {
		f.mu.Unlock()
		return
	}
	events, n := f.events1, f.dropped
	f.events1, f.dropped, f.lastLog = 0, 0, now
	f.mu.Unlock()
	if events == 1 {
		d.opt.Logf("Disk full: dropped %d oldest backlog segments; the effective backlog is now %d bytes (asked %d)",
			n, held, d.size.Load())
		return
	}
	d.opt.Logf("Disk full %d times in the last minute: dropped %d oldest backlog segments; the effective backlog is now %d bytes (asked %d)",
		events, n, held, d.size.Load())
}

// measureSpace notes the room the file system has for the backlog: the bytes available now
// plus the stream bytes the backlog's own files hold (which it could give up). Unknown (0)
// when the file system cannot tell. The caller holds wmu or is d's only user.
func (d *disk) measureSpace() {
	free, err := d.opt.statfs(d.dir)
	if err != nil || free < 0 {
		d.space.Store(0)
		return
	}
	d.space.Store(free + max(d.ring.End()-d.First()+1, 0))
}

// segLimit is the data size at which the active segment is sealed: SegmentSize, but at most
// an eighth of Size and an eighth of the room measured when the segment began, and at least
// minSegmentSize (smaller files would cost more than they save).
//
// An eighth of Size: retention by whole segments then keeps at least 7/8 of Size. An eighth
// of the room: a disk smaller than Size fills with eight segments or so, so when it is full
// there is an older segment to give up, and the window shrinks by an eighth at most each
// time. Before, a segment could be a quarter of Size: 1 GB asked on a 96 MB disk made one
// 64 MB segment, and a 48 MB disk filled inside the first segment with nothing older to
// delete, which stopped the stream for good.
func (d *disk) segLimit() int64 {
	lim := min(d.opt.SegmentSize, d.size.Load()/8)
	if room := d.space.Load(); room > 0 {
		lim = min(lim, room/8)
	}
	return max(minSegmentSize, lim)
}
