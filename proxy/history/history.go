// Package history owns psync-proxy's replication history: the master's replication IDs
// (replid, replid2 and the second offset), the backlog of the stream under them, the cached
// snapshot that serves full syncs, and the snapshot arriving on the master link. One lock
// guards it all, so a replica's PSYNC is decided against one consistent state, and the
// decision itself is a pure function of that state (Decide).
//
// The master link is the only writer of the history (InstallEpoch, ShiftReplid, appends to
// the backlog); replica sessions read it (Decide, Grant); the refresher swaps snapshots.
package history

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/internal/wake"
)

// Options configure Open.
type Options struct {
	// Dir holds the snapshot and, in disk mode, the backlog's segments.
	Dir string
	// Disk keeps the backlog in segment files under Dir/backlog that survive restarts;
	// otherwise it is a RAM ring, lost on restart.
	Disk        bool
	BacklogSize int64 // retention (repl-backlog-size), live through Resize
	BacklogTTL  time.Duration
	Fsync       backlog.FsyncPolicy
	RAMTail     int64
	Log         *zap.SugaredLogger
	// OnChange is called, under the history's lock, each time the history changes under
	// replicas already answered (a new history, a new replication ID), with the new
	// generation: they must reconnect to learn it, as Redis's disconnectSlaves makes them.
	OnChange func(gen uint64)
}

// ErrChanged is returned by Grant when the history changed since the decision.
var ErrChanged = errors.New("the replication history changed")

// History is the replication history. Its methods are safe for concurrent use.
type History struct {
	opt Options
	dir string
	log *zap.SugaredLogger
	// onChange: see Options.OnChange.
	onChange func(gen uint64)
	size     atomic.Int64 // live repl-backlog-size

	// discarded counts snapshots thrown away because they failed their check.
	discarded atomic.Int64

	mu sync.Mutex
	// The master link is the only writer of these; sessions read them to decide PSYNC.
	// bl and snap change together (one epoch); replid is "" until the first full sync.
	replid, replid2 string
	secondOff       int64
	store           *backlog.Store
	bl              backlog.Backlog // the current history's backlog; nil when there is none
	snap            *Snapshot       // nil when no valid snapshot of this history is cached
	arriving        *Arriving       // the snapshot the master link is receiving, once its payload started
	gen             uint64          // bumped at each change that OnChange announces
	epoch           uint64          // bumped each time bl is replaced (View.Epoch)
	changed         wake.Broadcast  // any change of the fields above
}

// Open prepares the history of dir: the snapshot an earlier run left there and, in disk
// mode, the backlog recovered with it, so that the first sync upstream can be partial.
func Open(opt Options) (*History, error) {
	if opt.Log == nil {
		opt.Log = zap.NewNop().Sugar()
	}
	if opt.OnChange == nil {
		opt.OnChange = func(uint64) {}
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	h := &History{opt: opt, dir: opt.Dir, log: opt.Log, onChange: opt.OnChange, replid2: ZeroReplid, secondOff: -1}
	h.size.Store(opt.BacklogSize)
	snap, err := loadSnapshot(opt.Dir)
	if err != nil {
		h.log.Warnf("Ignoring the snapshot in %s: %v", opt.Dir, err)
	}
	if w := snap.NewerFormat(); w != "" {
		h.log.Warnf("The snapshot in %s: %s", opt.Dir, w)
	}
	mode := backlog.Memory
	if opt.Disk {
		mode = backlog.Disk
	}
	store, rec, err := backlog.Open(backlog.Options{Mode: mode, Dir: opt.Dir, Size: opt.BacklogSize, TTL: opt.BacklogTTL,
		Fsync: opt.Fsync, RAMTail: opt.RAMTail, Logf: h.log.Infof})
	if err != nil {
		return nil, fmt.Errorf("opening the disk backlog in %s: %w", opt.Dir, err)
	}
	h.store = store
	if err := h.restore(snap, rec); err != nil {
		store.Close()
		return nil, err
	}
	return h, nil
}

// restore resumes the history the disk backlog recovered when the snapshot belongs to it.
// Otherwise it starts a new history at the snapshot, or none when there is no snapshot: the
// first sync upstream is then full.
func (h *History) restore(snap *Snapshot, rec backlog.Recovery) error {
	why := ""
	switch {
	case rec.Backlog == nil && !rec.HasState && rec.Segments == 0:
		why = "-" // nothing recovered: not worth a warning
	case !rec.HasState:
		why = "no replication state stored"
	case rec.Backlog == nil:
		why = "no stream of the stored history on disk"
	case snap == nil:
		// A history without a snapshot could resume upstream, but could not serve a full
		// sync until a refresh; keep the simple rule that the pair is restored together.
		why = "no snapshot to go with it"
	case !snapshotInHistory(snap, rec):
		why = fmt.Sprintf("the snapshot %s:%d belongs to another history (backlog %s, started as %s)",
			snap.Replid, snap.Offset, rec.State.Replid, rec.EpochReplid)
	}
	if why == "" {
		st := rec.State
		h.replid, h.replid2, h.secondOff = st.Replid, st.Replid2, st.SecondOff
		if h.replid2 == "" {
			h.replid2 = ZeroReplid
		}
		h.snap, h.bl = snap, rec.Backlog
		h.epoch++
		h.log.Infof("Recovered the disk backlog: %s offsets %d to %d (%d bytes in %d segments), %d torn bytes dropped, %d segments discarded; replid2 %s up to %d; snapshot %s:%d",
			st.Replid, rec.First, rec.End, rec.End-rec.First+1, rec.Segments, rec.Dropped, rec.Discarded,
			h.replid2, h.secondOff, snap.Replid, snap.Offset)
		return nil
	}
	if why != "-" {
		h.log.Warnf("Not resuming from the disk backlog: %s", why)
	}
	if snap == nil {
		return nil
	}
	bl, err := h.store.Start(snap.Replid, snap.Offset+1)
	if err != nil {
		return fmt.Errorf("starting the backlog at snapshot %s:%d: %w", snap.Replid, snap.Offset, err)
	}
	h.replid, h.snap, h.bl = snap.Replid, snap, bl
	h.epoch++
	h.log.Infof("Loaded snapshot %s:%d (%d bytes) from %s", snap.Replid, snap.Offset, snap.Size, h.dir)
	return nil
}

// snapshotInHistory reports whether snap was taken from the recovered history: under the ID
// it started with, its current ID, or its previous ID below the switch.
func snapshotInHistory(snap *Snapshot, rec backlog.Recovery) bool {
	st := rec.State
	switch {
	case strings.EqualFold(snap.Replid, rec.EpochReplid), strings.EqualFold(snap.Replid, st.Replid):
		return true
	case strings.EqualFold(snap.Replid, st.Replid2) && st.SecondOff >= 0 && snap.Offset < st.SecondOff:
		return true
	}
	return false
}

// Close closes the backlog; in disk mode it syncs the active segment whatever the policy, so
// a clean stop loses nothing.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.store.Close()
}

// Options are the options the history was opened with; BacklogSize is the one at start
// (see BacklogSize for the live one).
func (h *History) Options() Options { return h.opt }

// Dir is the directory holding the snapshot.
func (h *History) Dir() string { return h.dir }

// BacklogSize is the live repl-backlog-size.
func (h *History) BacklogSize() int64 { return h.size.Load() }

// Resize changes repl-backlog-size for the current backlog and the next ones.
func (h *History) Resize(size int64) {
	h.size.Store(size)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.store.Resize(size)
}

// View returns the history now.
func (h *History) View() View {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.viewLocked()
}

func (h *History) viewLocked() View {
	v := View{Replid: h.replid, Replid2: h.replid2, SecondOff: h.secondOff, Size: h.size.Load(), Epoch: h.epoch}
	if h.bl != nil {
		v.Backlog = true
		v.First, v.End = h.bl.Bounds()
	}
	if h.snap != nil {
		v.Snapshot, v.SnapshotOffset = true, h.snap.Offset
	}
	if a := h.arriving; a != nil {
		v.Arriving, v.ArrivingSized = true, a.Size >= 0
		v.ArrivingReplid, v.ArrivingSnapOffset = a.Replid, a.Offset
	}
	return v
}

// Current returns the replication ID and the backlog of the current history; "" and nil
// before the first full sync.
func (h *History) Current() (string, backlog.Backlog) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.replid, h.bl
}

// Snapshot returns the cached snapshot, nil when there is none.
func (h *History) Snapshot() *Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snap
}

// Generation numbers the history's changes that OnChange announces.
func (h *History) Generation() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gen
}

// changedLocked wakes everyone waiting for a change; newHistoryLocked also disconnects the
// replicas already answered. Caller holds mu.
func (h *History) changedLocked() { h.changed.Notify() }

func (h *History) newHistoryLocked() {
	h.gen++
	h.onChange(h.gen)
	h.changed.Notify()
}
