package history

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// Pending is a decision taken against the history at one moment, to be granted (Grant) once
// the caller is ready to serve it, e.g. after its turn under --max-concurrent-full-syncs.
type Pending struct {
	Decision
	View    View
	Changed <-chan struct{} // closed at the next change of the history
	gen     uint64
	snap    *Snapshot
	arrive  *Arriving
}

// Decide decides req against the history now (see the function Decide) and returns the
// decision with the view it was taken against and a channel closed at the history's next
// change: a Wait, Hold or NeedSnapshot is worth deciding again then.
func (h *History) Decide(req Request, now time.Time, timeout time.Duration) Pending {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.viewLocked()
	return Pending{Decision: Decide(v, req, now, timeout), View: v, Changed: h.changed.Wait(),
		gen: h.gen, snap: h.snap, arrive: h.arriving}
}

// Grant is what a granted decision serves from.
type Grant struct {
	Cursor   backlog.StreamCursor // Continue, FullSync: the stream from Decision.From; the caller closes it
	Snapshot *Snapshot            // FullSync: the snapshot
	Arriving *Arriving            // PassThrough: the snapshot arriving
	File     *os.File             // FullSync, PassThrough: the snapshot's file, open; the caller closes it
	Gen      uint64               // the history's generation it was granted in
}

// Grant opens what d is served from: the cursor and the snapshot's file, in one critical
// section with a check that the history is still the one decided against, so that a file is
// never paired with another snapshot's offset. It fails with ErrChanged if the history
// changed, or with the backlog's error if the bytes were dropped meanwhile: decide again.
func (h *History) Grant(d Pending) (Grant, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := Grant{Gen: h.gen}
	if d.gen != h.gen || d.snap != h.snap || d.arrive != h.arriving {
		return g, ErrChanged
	}
	var err error
	switch d.Kind {
	case Continue, FullSync:
		if g.Cursor, err = h.bl.Cursor(d.From); err != nil {
			return g, err
		}
	case PassThrough:
		g.Arriving = d.arrive
		if g.File, err = os.Open(d.arrive.Path); err != nil {
			return g, fmt.Errorf("open the arriving snapshot: %w", err)
		}
		return g, nil
	default:
		return g, fmt.Errorf("history: nothing to grant for a %v", d.Kind)
	}
	if d.Kind == FullSync {
		g.Snapshot = h.snap
		if g.File, err = h.snap.open(); err != nil {
			g.Cursor.Close()
			g.Cursor = nil
			return g, err
		}
	}
	return g, nil
}

// CursorAfter returns a cursor at off+1 of the history a snapshot replid:off belongs to,
// once it is the current one: the stream after a snapshot that arrived.
func (h *History) CursorAfter(replid string, off int64) (backlog.StreamCursor, uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !strings.EqualFold(h.replid, replid) || h.bl == nil {
		return nil, h.gen, ErrChanged
	}
	cur, err := h.bl.Cursor(off + 1)
	return cur, h.gen, err
}

// DiscardSnapshot drops snap after it failed its check, unless another has replaced it, so it
// is never served again. It reports whether it dropped it: a new one is then wanted.
func (h *History) DiscardSnapshot(snap *Snapshot, err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap != snap {
		return false
	}
	h.log.Errorf("Discarding the snapshot %s:%d, it fails its check and will never be served: %v", snap.Replid, snap.Offset, err)
	h.discarded.Add(1)
	h.snap = nil
	h.changedLocked()
	return true
}

// NoteBadRDB counts an RDB from the master that failed its check before it became a snapshot.
func (h *History) NoteBadRDB() { h.discarded.Add(1) }

// Discarded is how many snapshots or received RDBs were thrown away for failing their check.
func (h *History) Discarded() int64 { return h.discarded.Load() }
