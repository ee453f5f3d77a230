package history

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// NewWriter starts receiving an RDB into a temporary file beside the snapshot. When
// arriving, replicas waiting for a first snapshot may follow it as it is written (see
// Receiving).
//
// keep is the first offset the current backlog must still hold once this RDB is in place: a
// refresh passes its snapshot's offset + 1; a new history, which replaces the backlog
// whole, passes NewHistory. If the disk fills while the RDB is written (in disk mode the
// backlog fills it to the brim), the backlog gives up its oldest segments before keep, one
// at a time, until the RDB fits: the bytes before a new snapshot only serve replicas that lag
// behind it, while without a snapshot no replica can full-sync at all. If it still does not
// fit, the transfer fails with ErrNoRoom and the backlog keeps serving partial resyncs.
func (h *History) NewWriter(keep int64) (*Writer, error) {
	return newWriter(h.dir, func() bool { return h.makeRoom(keep) })
}

// NewHistory is NewWriter's keep for the RDB of a new history: every backlog byte may go.
const NewHistory = int64(math.MaxInt64)

// makeRoom has the backlog give up its oldest segment if it lies before keep.
func (h *History) makeRoom(keep int64) bool {
	if !h.store.Release(keep) {
		return false
	}
	h.log.Warnf("Disk full while writing a snapshot: the backlog gave up its oldest segment, it now holds %d bytes",
		h.store.Stats().Bytes)
	return true
}

// Receiving announces the RDB w is receiving as replid:off, of size bytes (-1: EOF-marked),
// so that replicas waiting for a first snapshot can follow it. done withdraws it with the
// transfer's outcome: nil once installed.
func (h *History) Receiving(w *Writer, replid string, off, size int64) (done func(error)) {
	a := &Arriving{Replid: replid, Offset: off, Size: size, Path: w.f.Name()}
	w.a = a
	h.mu.Lock()
	h.arriving = a
	h.changedLocked()
	h.mu.Unlock()
	return func(err error) {
		a.End(err)
		h.mu.Lock()
		if h.arriving == a {
			h.arriving = nil
		}
		h.mu.Unlock()
	}
}

// InstallEpoch makes a freshly received snapshot current: a new history starts at off+1 under
// replid, the old backlog is dropped and every replica answered is disconnected. If the
// snapshot cannot be put in place, nothing changes. The backlog is started after the
// snapshot is in place, so that a restart finds either the old snapshot with the old history
// or the new snapshot; if that fails, the history is forgotten (the next PSYNC upstream is a
// full one) rather than relay a stream it cannot keep.
func (h *History) InstallEpoch(replid string, off int64, snap *Snapshot) (backlog.Backlog, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.installSnapshotLocked(snap); err != nil {
		return nil, err
	}
	h.replid, h.replid2, h.secondOff = replid, ZeroReplid, -1
	bl, err := h.store.Start(replid, off+1)
	if err != nil {
		h.replid, h.bl = "", nil
		err = fmt.Errorf("starting the backlog of the new history: %w", err)
	} else {
		h.bl = bl
	}
	h.epoch++
	h.newHistoryLocked()
	return bl, err
}

// installSnapshotLocked puts snap in place of the current snapshot, on disk and in memory.
// Caller holds mu, which also serializes installs.
func (h *History) installSnapshotLocked(snap *Snapshot) error {
	metaErr, err := snap.install(h.dir)
	if err != nil {
		return err
	}
	if metaErr != nil {
		h.log.Warnf("The snapshot is in use but a restart will not find it: %v", metaErr)
	}
	h.snap = snap
	return nil
}

// ShiftReplid follows a master that continued under a new replication ID (a failover): the
// old ID stays valid up to the current end, as in Redis's shiftReplicationId. In disk mode
// the IDs are stored first: if that fails nothing changes and the link must drop before a
// byte of the new history is stored, or a restart would resume those bytes under the old ID.
func (h *History) ShiftReplid(newID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bl == nil {
		return errors.New("history: no history to continue under a new ID")
	}
	replid2, secondOff := h.replid, h.bl.End()+1
	if err := h.store.SetIDs(newID, replid2, secondOff); err != nil && !errors.Is(err, backlog.ErrClosed) {
		h.log.Errorf("Cannot store the new replication IDs with the disk backlog: %v", err)
		return fmt.Errorf("storing the new replication ID %s: %w", newID, err)
	}
	h.replid, h.replid2, h.secondOff = newID, replid2, secondOff
	h.log.Infof("Setting secondary replication ID to %s, valid up to offset: %d. New replication ID is %s",
		h.replid2, h.secondOff, h.replid)
	h.newHistoryLocked()
	return nil
}

// InstallRefreshed makes snap, fetched on a refresh connection while bl was current, the
// snapshot that serves full syncs: only if bl is still the current backlog under the same
// history and still holds the byte after the snapshot.
func (h *History) InstallRefreshed(snap *Snapshot, bl backlog.Backlog) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bl != bl || !strings.EqualFold(h.replid, snap.Replid) {
		return errors.New("the replication history changed while the snapshot was fetched")
	}
	if first := bl.First(); first > snap.Offset+1 {
		why := "it cannot cover the time a snapshot takes; increase --backlog-size"
		if st := h.store.Stats(); st.DiskFullEvents > 0 {
			why = fmt.Sprintf("the disk is full (the backlog holds %d bytes of the %d asked): it cannot hold the snapshot and the stream after it together", st.Bytes, st.Size)
		}
		return fmt.Errorf("the backlog no longer holds offset %d (first byte %d): %s", snap.Offset+1, first, why)
	}
	if err := h.installSnapshotLocked(snap); err != nil {
		return fmt.Errorf("saving snapshot: %w", err)
	}
	h.changedLocked()
	return nil
}
