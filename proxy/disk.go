package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/resp"
)

// Disk mode (--backlog-mode disk): the backlog is a backlog.Disk under Dir/backlog, together
// with the replication state (replid, replid2, second offset, epoch) that lets a restarted
// proxy PSYNC upstream from the recovered end and answer replicas' PSYNC with +CONTINUE.

func (p *Proxy) diskOptions() backlog.DiskOptions {
	return backlog.DiskOptions{
		Size:    p.backlogSize.Load(),
		TTL:     p.cfg.BacklogTTL,
		Fsync:   p.cfg.BacklogFsync,
		RAMTail: p.cfg.BacklogRAMTail,
		Logf:    p.log.Infof,
	}
}

// openDisk opens the disk backlog at start-up and restores the history it holds when the
// snapshot belongs to it. Otherwise it starts a new history at the snapshot (as memory mode
// does with a new ring), or none when there is no snapshot: the first sync is then full.
func (p *Proxy) openDisk(snap *snapshot) error {
	d, rec, err := backlog.OpenDisk(p.cfg.Dir, p.diskOptions())
	if err != nil {
		return fmt.Errorf("proxy: opening the disk backlog in %s: %w", p.cfg.Dir, err)
	}
	p.disk, p.epoch = d, rec.State.Epoch
	why := ""
	switch {
	case !rec.HasState:
		why = "no replication state stored"
	case !rec.History:
		why = "no stream of the stored history on disk"
	case snap == nil:
		// A history without a snapshot could resume upstream, but could not serve a full sync
		// until a refresh; keep the simple rule that the pair is restored together.
		why = "no snapshot to go with it"
	case !snapshotInHistory(snap, rec):
		why = fmt.Sprintf("the snapshot %s:%d belongs to another history (backlog %s, started as %s)",
			snap.Replid, snap.Offset, rec.State.Replid, rec.EpochReplid)
	}
	if why == "" {
		st := rec.State
		p.replid, p.replid2, p.secondOff = st.Replid, st.Replid2, st.SecondOff
		if p.replid2 == "" {
			p.replid2 = zeroReplid
		}
		p.snap, p.ring = snap, d
		p.resumeScan = p.rescan(d, snap)
		p.resumeBlind = p.resumeScan == nil
		p.log.Infof("Recovered the disk backlog: %s offsets %d to %d (%d bytes in %d segments), %d torn bytes dropped, %d segments discarded; replid2 %s up to %d; snapshot %s:%d",
			st.Replid, rec.First, rec.End, rec.End-rec.First+1, rec.Segments, rec.Dropped, rec.Discarded,
			p.replid2, p.secondOff, snap.Replid, snap.Offset)
		return nil
	}
	if rec.HasState || rec.Segments > 0 {
		p.log.Warnf("Not resuming from the disk backlog: %s", why)
	}
	if snap == nil {
		return nil
	}
	p.replid, p.snap = snap.Replid, snap
	p.mu.Lock()
	nd, err := p.resetDiskLocked(snap.Offset + 1)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("proxy: starting the disk backlog at snapshot %s:%d: %w", snap.Replid, snap.Offset, err)
	}
	p.ring = nd
	p.log.Infof("Loaded snapshot %s:%d (%d bytes) from %s", snap.Replid, snap.Offset, snap.Size, p.cfg.Dir)
	return nil
}

// snapshotInHistory reports whether snap was taken from the recovered history: under the ID
// it started with, its current ID, or its previous ID below the switch.
func snapshotInHistory(snap *snapshot, rec backlog.Recovery) bool {
	st := rec.State
	switch {
	case strings.EqualFold(snap.Replid, rec.EpochReplid), strings.EqualFold(snap.Replid, st.Replid):
		return true
	case strings.EqualFold(snap.Replid, st.Replid2) && st.SecondOff >= 0 && snap.Offset < st.SecondOff:
		return true
	}
	return false
}

// rescan rebuilds the stream scanner after a recovery, so that ACKs keep reporting command
// boundaries and GETACK is answered: the recovered end may fall inside a command. The scan
// starts at the byte after the snapshot, a known boundary, when the backlog still holds it;
// otherwise it returns nil and the upstream falls back to acknowledging the stored end.
func (p *Proxy) rescan(d *backlog.Disk, snap *snapshot) *resp.Scanner {
	start := snap.Offset + 1
	cur, err := d.NewCursor(start)
	if err != nil {
		return nil
	}
	defer cur.Close()
	sc := resp.NewScanner(start, streamLimits())
	buf := make([]byte, 256<<10)
	for cur.Offset() <= d.End() {
		n, err := cur.Read(context.Background(), buf[:min(int64(len(buf)), d.End()-cur.Offset()+1)])
		if err != nil {
			p.log.Warnf("Cannot rescan the recovered backlog for command boundaries: %v", err)
			return nil
		}
		if err := sc.Feed(buf[:n], nil); err != nil {
			p.log.Warnf("Cannot follow command boundaries in the recovered backlog: %v", err)
			return nil
		}
	}
	return sc
}

// resetDiskLocked starts a new history at next under p.replid, in a new epoch, reopening the
// directory if an earlier Reset failed. Caller holds mu.
func (p *Proxy) resetDiskLocked(next int64) (*backlog.Disk, error) {
	if p.disk == nil {
		d, _, err := backlog.OpenDisk(p.cfg.Dir, p.diskOptions())
		if err != nil {
			return nil, fmt.Errorf("reopening the disk backlog: %w", err)
		}
		p.disk = d
	}
	st := backlog.State{Replid: p.replid, Replid2: zeroReplid, SecondOff: -1, Epoch: p.epoch + 1}
	d, err := p.disk.Reset(st, next)
	if err != nil {
		// Reset closed the old Disk anyway; the next epoch reopens the directory.
		p.disk = nil
		return nil, fmt.Errorf("starting a new disk backlog history at %d: %w", next, err)
	}
	p.disk, p.epoch = d, st.Epoch
	return d, nil
}

// saveStateLocked stores new replication IDs with the disk backlog when they change within
// an epoch (a failover upstream). Caller holds mu.
func (p *Proxy) saveStateLocked(replid, replid2 string, secondOff int64) error {
	if p.disk == nil || p.ring == nil {
		return nil
	}
	st := backlog.State{Replid: replid, Replid2: replid2, SecondOff: secondOff, Epoch: p.epoch}
	if err := p.disk.SetState(st); err != nil && !errors.Is(err, backlog.ErrClosed) {
		p.log.Errorf("Cannot store the new replication IDs with the disk backlog: %v", err)
		return fmt.Errorf("storing the new replication ID %s: %w", replid, err)
	}
	return nil
}
