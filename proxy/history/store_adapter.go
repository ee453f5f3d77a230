package history

// TEMPORARY: the API backlog.Open/Store will offer, written over today's Ring and Disk so that
// history compiles before backlog's own lands. Nothing else in proxy/ switches on the kinds.

import (
	"context"
	"fmt"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
)

type backlogMode uint8

const (
	modeMemory backlogMode = iota
	modeDisk
)

type storeOptions struct {
	Mode    backlogMode
	Dir     string
	Size    int64
	TTL     time.Duration
	Fsync   backlog.FsyncPolicy
	RAMTail int64
	Logf    func(string, ...any)
}

type storeRecovery struct {
	backlog.Recovery
	Backlog backlog.Backlog
}

type storeStats struct {
	Mode              backlogMode
	Bytes, First, End int64
	Segments          int
	OldestAge         time.Duration
	HasOldestAge      bool
	Synced            int64
	LastErr           error
}

type backlogStore struct {
	opt   storeOptions
	disk  *backlog.Disk
	ring  *backlog.Ring
	epoch uint64
	size  int64
}

func openStore(opt storeOptions) (*backlogStore, storeRecovery, error) {
	s := &backlogStore{opt: opt, size: opt.Size}
	if opt.Mode == modeMemory {
		return s, storeRecovery{}, nil
	}
	d, rec, err := backlog.OpenDisk(opt.Dir, s.diskOptions())
	if err != nil {
		return nil, storeRecovery{}, err
	}
	s.disk, s.epoch = d, rec.State.Epoch
	out := storeRecovery{Recovery: rec}
	if rec.History {
		out.Backlog = d
	}
	return s, out, nil
}

func (s *backlogStore) diskOptions() backlog.DiskOptions {
	return backlog.DiskOptions{Size: s.size, TTL: s.opt.TTL, Fsync: s.opt.Fsync, RAMTail: s.opt.RAMTail, Logf: s.opt.Logf}
}

func (s *backlogStore) Start(replid string, next int64) (backlog.Backlog, error) {
	if s.opt.Mode == modeMemory {
		if s.ring != nil {
			s.ring.Close()
		}
		s.ring = backlog.NewRing(s.size, next)
		return s.ring, nil
	}
	if s.disk == nil {
		d, _, err := backlog.OpenDisk(s.opt.Dir, s.diskOptions())
		if err != nil {
			return nil, fmt.Errorf("reopening the disk backlog: %w", err)
		}
		s.disk = d
	}
	st := backlog.State{Replid: replid, Replid2: ZeroReplid, SecondOff: -1, Epoch: s.epoch + 1}
	d, err := s.disk.Reset(st, next)
	if err != nil {
		s.disk = nil
		return nil, fmt.Errorf("starting a new disk backlog history at %d: %w", next, err)
	}
	s.disk, s.epoch = d, st.Epoch
	return d, nil
}

func (s *backlogStore) SetIDs(replid, replid2 string, secondOff int64) error {
	if s.disk == nil {
		return nil
	}
	return s.disk.SetState(backlog.State{Replid: replid, Replid2: replid2, SecondOff: secondOff, Epoch: s.epoch})
}

func (s *backlogStore) Resize(size int64) {
	s.size = size
	switch {
	case s.ring != nil:
		s.ring.Resize(size)
	case s.disk != nil:
		s.disk.Resize(size)
	}
}

func (s *backlogStore) Stats() storeStats {
	st := storeStats{Mode: s.opt.Mode, First: -1, Synced: -1}
	d := s.disk
	if d == nil {
		return st
	}
	first, end := d.Bounds()
	st.Bytes, st.First, st.End, st.Synced, st.Segments = max(end-first+1, 0), first, end, d.Synced(), d.Segments()
	st.OldestAge, st.HasOldestAge = d.OldestAge()
	st.LastErr = d.Err()
	return st
}

func (s *backlogStore) Close() error {
	if s.ring != nil {
		s.ring.Close()
	}
	if s.disk != nil {
		return s.disk.Close()
	}
	return nil
}

// cursorAt, syncedOf, closeBacklog: what the Backlog interface will offer itself.
func cursorAt(b backlog.Backlog, off int64) (backlog.StreamCursor, error) {
	return backlog.NewStreamCursor(b, off)
}

// SyncedOf is what b has made durable: its End in memory mode.
func SyncedOf(b backlog.Backlog) int64 {
	if d, ok := b.(interface{ Synced() int64 }); ok {
		return d.Synced()
	}
	return b.End()
}

var _ = context.Background
