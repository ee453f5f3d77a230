package backlog

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Append adds p at End()+1, all of it or nothing: on error End does not move, the bytes
// partly written are cut back, and the caller may retry with the same bytes. The bytes are
// written to the newest segment (and synced first under FsyncAlways), then copied into the
// RAM tail, which publishes them and wakes the waiters. Bytes still staged (an AppendFrom
// that could not store them) are stored first. Errors: ErrClosed, errNoHistory, and
// ErrStorage wrapping the file error (see Err).
func (d *disk) Append(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if _, err := d.publishStagedLocked(); err != nil {
		return err
	}
	return d.appendLocked(p)
}

// AppendFrom is Stage then Publish of all that was read: it reads once from rd into the
// disk's buffer and stores what it read, as Append does. It returns the bytes stored, valid
// until the next Stage or AppendFrom, and rd's error. If they cannot be stored it returns nil
// and the storage error and keeps them staged: the next AppendFrom stores them first,
// without reading, and returns them then with the read error they came with. So the caller
// can back off and call again without losing a byte. No lock is held during the read.
func (d *disk) AppendFrom(rd io.Reader) ([]byte, error) {
	d.wmu.Lock()
	if d.sTail > d.sHead {
		rerr := d.stagedErr
		p, err := d.publishStagedLocked()
		d.wmu.Unlock()
		if err != nil {
			return nil, err
		}
		return p, rerr
	}
	d.wmu.Unlock()
	p, rerr := d.Stage(rd)
	if len(p) == 0 {
		return nil, rerr
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if _, err := d.publishStagedLocked(); err != nil {
		d.stagedErr = rerr
		return nil, err
	}
	return p, rerr
}

// appendLocked stores p; see Append. The caller holds wmu.
func (d *disk) appendLocked(p []byte) error {
	switch {
	case d.closed.Load():
		return ErrClosed
	case !d.history:
		return errNoHistory
	}
	dropped := 0
	defer func() { d.diskFullLocked(dropped) }()
	for {
		wrote, err := d.writeLocked(p)
		if err == nil {
			break
		}
		if noSpace(err) && d.dropOldestLocked() {
			// The disk is full: the oldest segment made room; cut what the failed write
			// left and try again.
			d.dirty = d.dirty || wrote
			dropped++
			continue
		}
		if !wrote {
			d.setErr(err) // a repair of an earlier failure failed again: nothing new to cut
			return err
		}
		return d.failLocked(err)
	}
	w, s := d.w, d.act
	w.dataSize += int64(len(p))
	w.idxSize += int64(len(d.ibuf))
	// Readers of the files may now use these bytes; publishing them is the ring's Append.
	// Retention goes first, so that Bounds never shows more than Size bytes held.
	s.last.Store(s.start + w.dataSize - 1)
	d.retainLocked(d.ring.End()+int64(len(p)), time.Time{})
	d.ring.Append(p)
	end := d.ring.End()
	switch d.opt.Fsync {
	case FsyncAlways:
		d.sp = syncPoint{w: w, data: w.dataSize, idx: w.idxSize, end: end}
		d.synced.Store(end)
	case FsyncNo:
		d.synced.Store(end)
	case FsyncEverySec:
		if end-d.sp.end >= syncEvery {
			select {
			case d.kick <- struct{}{}:
			default: // a sync is already due
			}
		}
	}
	d.setErr(nil)
	return nil
}

// writeLocked writes p to the active segment, sealing it and starting a new one first when it
// is full, and under FsyncAlways syncs it. It publishes nothing. On error, wrote reports
// whether the files may hold part of a failed write or seal, which the caller must have cut
// (failLocked, or the repair the next call begins with); it is false when the repair of an
// earlier failure failed again.
func (d *disk) writeLocked(p []byte) (wrote bool, err error) {
	if err := d.repairLocked(); err != nil {
		return false, err
	}
	if d.w == nil || d.w.dataSize >= d.segLimit() {
		if err := d.rotateLocked(); err != nil {
			return true, err
		}
	}
	w, s := d.w, d.act
	d.ibuf = d.ibuf[:0]
	for q := p; len(q) > 0; {
		k := min(len(q), maxRecord)
		d.ibuf = appendEntry(d.ibuf, q[:k])
		q = q[k:]
	}
	if err := d.writeAt(opWriteData, w.data, p, w.dataSize); err != nil {
		return true, fmt.Errorf("%w: write segment %s: %w", ErrStorage, segName(s.start), err)
	}
	if err := d.writeAt(opWriteIndex, w.idx, d.ibuf, w.idxSize); err != nil {
		return true, fmt.Errorf("%w: write index of segment %s: %w", ErrStorage, segName(s.start), err)
	}
	if d.opt.Fsync == FsyncAlways {
		if err := d.syncWriter(w, false); err != nil {
			return true, err
		}
	}
	return false, nil
}

// failLocked records a storage error and cuts the partial write at once, so that what is on
// disk stays valid even if nothing is ever appended again. It returns err.
func (d *disk) failLocked(err error) error {
	d.dirty = true
	d.setErr(err)
	d.opt.Logf("backlog: %v; appends are refused until a retry succeeds", err)
	if rerr := d.repairLocked(); rerr != nil {
		d.opt.Logf("backlog: cannot clean up after the error yet: %v", rerr)
	}
	return err
}

// writeAt writes p at pos, through the test hook.
func (d *disk) writeAt(op faultOp, f *os.File, p []byte, pos int64) error {
	if k, err := d.fault(op, len(p)); err != nil {
		if k > 0 {
			f.WriteAt(p[:min(k, len(p))], pos) // what a write to a full disk leaves behind
		}
		return err
	}
	_, err := f.WriteAt(p, pos)
	return err
}

// syncWriter fsyncs w's files. With repairing false it fails while an earlier fsync error is
// unrepaired (see syncErr); a writer already closed by a seal, which synced it, is skipped.
func (d *disk) syncWriter(w *segWriter, repairing bool) error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	if w.closed {
		return nil
	}
	if p := d.syncErr.Load(); p != nil && !repairing {
		return *p
	}
	_, err := d.fault(opSync, 0)
	if err == nil {
		// The two files are synced at once: the file system can commit both in one journal
		// transaction, where one after the other would wait for two.
		idxErr := make(chan error, 1)
		go func() { idxErr <- w.idx.Sync() }()
		err = w.data.Sync()
		if e := <-idxErr; err == nil {
			err = e
		}
	}
	if err != nil {
		err = fmt.Errorf("%w: fsync: %w", ErrStorage, err)
		d.syncErr.Store(&err)
	}
	return err
}

// repairLocked brings the active segment back to a valid, synced state after a failure. It
// cuts what failed writes left past the sizes, and after an fsync error it writes the bytes
// since the last durable point again, from the RAM tail, and syncs them: after a failed
// fsync the kernel may have dropped those pages' dirty state, so syncing again without
// rewriting could report success for bytes that are not on disk. The caller holds wmu.
func (d *disk) repairLocked() error {
	se := d.syncErr.Load()
	if !d.dirty && se == nil {
		return nil
	}
	w := d.w
	if w == nil {
		d.dirty = false
		d.syncErr.Store(nil)
		return nil
	}
	if err := d.truncateWriter(w); err != nil {
		return err
	}
	d.dirty = false
	if se == nil {
		return nil
	}
	end, sp := d.ring.End(), d.sp
	if sp.w != w {
		return fmt.Errorf("%w: internal: sync point outside the active segment", ErrStorage)
	}
	if sp.end < end {
		if d.ring.First() > sp.end+1 {
			return fmt.Errorf("%w: after an fsync error, offsets %d-%d must be written again but the RAM tail no longer holds them; reopen the backlog to recover what the disk has",
				ErrStorage, sp.end+1, end)
		}
		buf := make([]byte, min(maxRecord, end-sp.end))
		var ents []byte
		pos := sp.data
		for off := sp.end + 1; off <= end; {
			k := min(int64(len(buf)), end-off+1)
			if n, err := d.ring.ReadAt(buf[:k], off); err != nil || int64(n) != k {
				return fmt.Errorf("%w: rewrite after fsync error: RAM tail read at %d: %d bytes, %v", ErrStorage, off, n, err)
			}
			if err := d.writeAt(opWriteData, w.data, buf[:k], pos); err != nil {
				d.dirty = true
				return fmt.Errorf("%w: rewrite after fsync error: %w", ErrStorage, err)
			}
			ents = appendEntry(ents, buf[:k])
			pos += k
			off += k
		}
		if err := d.writeAt(opWriteIndex, w.idx, ents, sp.idx); err != nil {
			d.dirty = true
			return fmt.Errorf("%w: rewrite index after fsync error: %w", ErrStorage, err)
		}
		w.idxSize = sp.idx + int64(len(ents))
		if err := d.truncateWriter(w); err != nil {
			return err
		}
	}
	if err := d.syncWriter(w, true); err != nil {
		return err
	}
	d.syncErr.Store(nil)
	d.sp = syncPoint{w: w, data: w.dataSize, idx: w.idxSize, end: end}
	d.synced.Store(end)
	d.setErr(nil)
	d.opt.Logf("backlog: storage usable again after an fsync error; offsets %d-%d written again and synced", sp.end+1, end)
	return nil
}

// truncateWriter cuts w's files to its sizes.
func (d *disk) truncateWriter(w *segWriter) error {
	_, err := d.fault(opTruncate, 0)
	if err == nil {
		err = w.data.Truncate(w.dataSize)
	}
	if err == nil {
		err = w.idx.Truncate(w.idxSize)
	}
	if err != nil {
		d.dirty = true
		return fmt.Errorf("%w: cut back a failed write: %w", ErrStorage, err)
	}
	return nil
}

// rotateLocked seals the active segment, if any, and starts a new one at End()+1. The seal
// (trailer, then fsync unless FsyncNo) is durable before the new segment exists, so a crash
// never leaves an unsealed segment behind a newer one. The caller holds wmu.
func (d *disk) rotateLocked() error {
	d.measureSpace()
	end := d.ring.End()
	old, oldSeg := d.w, d.act
	if old != nil {
		if err := d.writeAt(opWriteIndex, old.idx, trailer(old.dataSize), old.idxSize); err != nil {
			d.dirty = true // the repair cuts the index back to idxSize, trailer and all
			return fmt.Errorf("%w: seal segment %s: %w", ErrStorage, segName(oldSeg.start), err)
		}
		if d.opt.Fsync != FsyncNo {
			if err := d.syncWriter(old, false); err != nil {
				d.dirty = true
				return err
			}
		}
	}
	s := newSegment(d.dir, end+1)
	s.began = time.Now()
	w, err := d.createSegment(s)
	if err != nil {
		if old != nil {
			d.dirty = true // take the trailer off again: old goes on being written
		}
		return err
	}
	if old != nil {
		d.syncMu.Lock()
		old.closed = true
		old.data.Close()
		old.idx.Close()
		d.syncMu.Unlock()
		oldSeg.sealedAt = time.Now()
	}
	s.last.Store(end)
	d.segMu.Lock()
	d.segs = append(d.segs, s)
	d.segMu.Unlock()
	d.act, d.w = s, w
	d.sp = syncPoint{w: w, data: 0, idx: headerSize, end: end}
	if d.opt.Fsync != FsyncNo {
		d.synced.Store(end) // the seal synced everything before the new segment
	}
	return nil
}

// createSegment creates s's files with the header, synced with their directory entries
// unless FsyncNo.
func (d *disk) createSegment(s *segment) (*segWriter, error) {
	fail := func(err error) (*segWriter, error) {
		s.remove()
		return nil, fmt.Errorf("%w: create segment %s: %w", ErrStorage, segName(s.start), err)
	}
	if _, err := d.fault(opCreate, 0); err != nil {
		return fail(err)
	}
	data, err := os.OpenFile(s.path+dataExt, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fail(err)
	}
	idx, err := os.OpenFile(s.path+idxExt, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		data.Close()
		return fail(err)
	}
	hdr := header{start: s.start, epoch: d.State().Epoch, replid: d.epochReplid}.marshal()
	_, err = idx.WriteAt(hdr, 0)
	if err == nil && d.opt.Fsync != FsyncNo {
		if err = data.Sync(); err == nil {
			if err = idx.Sync(); err == nil {
				err = syncDir(d.dir)
			}
		}
	}
	if err != nil {
		data.Close()
		idx.Close()
		return fail(err)
	}
	return &segWriter{data: data, idx: idx, dataSize: 0, idxSize: headerSize}, nil
}

// retainLocked deletes the oldest segments while the bytes held up to end exceed the size,
// or, when now is set and a TTL configured, while the oldest is sealed and older than the
// TTL. The newest segment is never deleted, so the end of the history always stays on
// disk. The caller holds wmu.
func (d *disk) retainLocked(end int64, now time.Time) {
	size, ttl := d.size.Load(), d.opt.TTL
	for len(d.segs) > 1 {
		s := d.segs[0]
		over := end-s.start+1 > size
		expired := ttl > 0 && !now.IsZero() && !s.sealedAt.IsZero() && now.Sub(s.sealedAt) > ttl
		if !over && !expired {
			return
		}
		d.dropOldestLocked()
	}
}

// dropOldestLocked deletes the oldest segment and reports whether there was one to delete:
// the newest never goes. First moves before a file goes: a reader that looked First up
// earlier either still opens the file (and reads the true bytes, which are never rewritten)
// or gets errGone and reports ErrTrimmed; a cursor reading it already finishes its current
// call from the descriptor it holds (the unlinked file) and gets ErrTrimmed on the next.
// The caller holds wmu.
func (d *disk) dropOldestLocked() bool {
	if len(d.segs) <= 1 {
		return false
	}
	s := d.segs[0]
	d.segMu.Lock()
	d.segs[0] = nil
	d.segs = d.segs[1:]
	d.setFirst(d.segs[0].start)
	d.segMu.Unlock()
	if err := s.remove(); err != nil {
		d.opt.Logf("backlog: %v", err)
	}
	return true
}

// setFirst publishes a new First; the caller holds wmu and segMu.
func (d *disk) setFirst(first int64) {
	d.seq.Add(1)
	d.first.Store(first)
	d.seq.Add(1)
}

// syncOnce is the everysec step: fsync the active segment outside wmu (appends go on), then
// move Synced to where the files were when the sync started. After an error it retries the
// repair itself, so that a quiet stream also recovers.
func (d *disk) syncOnce() error {
	d.wmu.Lock()
	w := d.w
	if d.closed.Load() || w == nil {
		d.wmu.Unlock()
		return nil
	}
	if d.dirty || d.syncErr.Load() != nil {
		err := d.repairLocked()
		d.wmu.Unlock()
		return err
	}
	sp := syncPoint{w: w, data: w.dataSize, idx: w.idxSize, end: d.ring.End()}
	if sp.end <= d.sp.end {
		d.wmu.Unlock()
		return nil
	}
	d.wmu.Unlock()

	err := d.syncWriter(w, false)

	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err != nil {
		d.setErr(err)
		d.opt.Logf("backlog: %v; Synced stays at %d until the bytes are written again", err, d.synced.Load())
		return err
	}
	if sp.end > d.sp.end {
		d.sp = sp
		d.synced.Store(sp.end)
	}
	return nil
}

// expire applies the TTL as of now.
func (d *disk) expire(now time.Time) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if !d.closed.Load() {
		d.retainLocked(d.ring.End(), now)
	}
}
