package backlog

import (
	"errors"
	"fmt"
	"io"
)

// Staging lets the writer store bytes before it makes them visible. The upstream link reads
// the master straight into the backlog (Stage), finds the last whole command in what it read,
// and publishes up to there (Publish): readers, and so replicas, never see the start of a
// command whose end has not arrived. If the stream then turns out to be broken, the bytes
// past the last whole command are dropped (DropStaged) before anyone saw them, and the link
// asks the master again from the byte after that command. No byte is copied for this: staged
// bytes sit where they will stay once published.

// ErrStageFull is returned by Stage, which then reads nothing, when the bytes staged fill
// the room for them (Size for a ring, the 1 MiB read buffer for a disk): publish some first.
var ErrStageFull = errors.New("backlog: no room to stage more bytes")

// Stage reads once from rd straight into the storage after End and the bytes already staged,
// and keeps the bytes read staged: no reader sees them, and End does not move, until Publish.
// It returns them as a slice of the ring's storage, valid and unchanged until the next Stage,
// Append or AppendFrom, and rd's error. One read takes at most the rest of the current block
// and never makes the bytes staged exceed Size (ErrStageFull when they are at Size). Only the
// writer may call it. After Close it returns ErrClosed.
func (r *ring) Stage(rd io.Reader) ([]byte, error) {
	r.wmu.Lock()
	if r.closed.Load() {
		r.wmu.Unlock()
		return nil, ErrClosed
	}
	room := r.size.Load() - r.staged
	if room <= 0 {
		r.wmu.Unlock()
		return nil, ErrStageFull
	}
	dst, fresh := r.reserve()
	if int64(len(dst)) > room {
		dst = dst[:room]
	}
	r.wmu.Unlock()

	// Bytes past End belong to the writer alone, and Resize never lets go of a block holding
	// End+1 or later: dst can be filled without any lock.
	n, err := rd.Read(dst)

	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() {
		return nil, ErrClosed
	}
	r.stage(n, fresh)
	return dst[:n], err
}

// Publish makes the bytes staged up to offset end visible: End becomes end, waiters wake, and
// the ring evicts as Append does. end must be within [End, End+Staged]. It returns the bytes
// just published as one slice of the storage, valid like Stage's, or nil when they span two
// blocks (or nothing was published). The error is ErrClosed after Close, or a range error.
func (r *ring) Publish(end int64) ([]byte, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() {
		return nil, ErrClosed
	}
	start := r.end.Load() + 1
	if end < start-1 || end > start-1+r.staged {
		return nil, fmt.Errorf("backlog: publish up to %d: the bytes staged are %d to %d", end, start, start-1+r.staged)
	}
	if end < start {
		return nil, nil
	}
	r.publishLocked(end - start + 1)
	// wmu keeps blocks and base as they are: the slice can be taken without mu.
	if start < r.first.Load() || (start-r.base)/r.bsize != (end-r.base)/r.bsize {
		return nil, nil
	}
	rel := start - r.base
	b := r.blocks.at(int(rel / r.bsize)).b
	return b[rel%r.bsize : rel%r.bsize+end-start+1], nil
}

// Staged returns the number of bytes staged and not yet published.
func (r *ring) Staged() int64 {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.staged
}

// DropStaged forgets the bytes staged: the next Stage or Append writes at End+1 again.
func (r *ring) DropStaged() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() || r.staged == 0 {
		return
	}
	r.staged = 0
	// Blocks that held only staged bytes go, so that the back block holds End or End+1.
	next := r.end.Load() + 1
	r.mu.Lock()
	for r.blocks.n > 0 && r.base+int64(r.blocks.n-1)*r.bsize > next {
		r.release(r.blocks.popBack())
	}
	r.mu.Unlock()
}

// Stage is ring.Stage for a disk: it reads once into the disk's read buffer after the bytes
// staged there, which Publish then stores (segment files first, then the RAM tail). The
// bytes returned are valid until the next Stage or AppendFrom. It returns ErrStageFull when
// the buffer (1 MiB) is full of staged bytes, ErrClosed, or errNoHistory. Append and
// AppendFrom store any staged bytes before their own.
func (d *disk) Stage(rd io.Reader) ([]byte, error) {
	d.wmu.Lock()
	switch {
	case d.closed.Load():
		d.wmu.Unlock()
		return nil, ErrClosed
	case !d.history:
		d.wmu.Unlock()
		return nil, errNoHistory
	}
	if d.rbuf == nil {
		d.rbuf = make([]byte, readSize)
		d.bufMem.Store(readSize)
	}
	if d.sHead > 0 && len(d.rbuf)-d.sTail < len(d.rbuf)/4 {
		// Move the staged bytes (part of one command) to the front so that reads stay
		// large; at most once per buffer's worth of reads.
		d.sTail = copy(d.rbuf, d.rbuf[d.sHead:d.sTail])
		d.sHead = 0
	}
	if d.sTail == len(d.rbuf) {
		d.wmu.Unlock()
		return nil, ErrStageFull
	}
	buf := d.rbuf[d.sTail:] // only the single writer uses rbuf, so the read needs no lock
	d.wmu.Unlock()

	n, rerr := rd.Read(buf)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closed.Load() {
		return nil, ErrClosed
	}
	d.sTail += n
	return buf[:n], rerr
}

// Publish stores the bytes staged up to offset end and makes them visible, as Append does:
// all of them or none, and on error (ErrStorage) they stay staged so the caller can retry.
// It returns the bytes published, valid until the next Stage.
func (d *disk) Publish(end int64) ([]byte, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	start := d.ring.End() + 1
	staged := int64(d.sTail - d.sHead)
	if end < start-1 || end > start-1+staged {
		return nil, fmt.Errorf("backlog: publish up to %d: the bytes staged are %d to %d", end, start, start-1+staged)
	}
	return d.publishLocked(int(end - start + 1))
}

// publishLocked stores the first n staged bytes; see Publish. The caller holds wmu.
func (d *disk) publishLocked(n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	p := d.rbuf[d.sHead : d.sHead+n]
	if err := d.appendLocked(p); err != nil {
		return nil, err
	}
	d.sHead += len(p)
	if d.sHead == d.sTail {
		d.sHead, d.sTail, d.stagedErr = 0, 0, nil
	}
	return p, nil
}

// publishStagedLocked stores every staged byte. The caller holds wmu.
func (d *disk) publishStagedLocked() ([]byte, error) {
	return d.publishLocked(d.sTail - d.sHead)
}

// Staged returns the number of bytes staged and not yet published.
func (d *disk) Staged() int64 {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	return int64(d.sTail - d.sHead)
}

// DropStaged forgets the bytes staged.
func (d *disk) DropStaged() {
	d.wmu.Lock()
	d.sHead, d.sTail, d.stagedErr = 0, 0, nil
	d.wmu.Unlock()
}
