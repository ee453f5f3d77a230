package backlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
)

// check reports whether off can be read now: ErrClosed, ErrTrimmed below First, ErrFuture
// past End+1.
func (d *disk) check(off int64) error {
	if d.closed.Load() {
		return ErrClosed
	}
	first, end := d.Bounds()
	switch {
	case off < first:
		return ErrTrimmed
	case off > end+1:
		return ErrFuture
	}
	return nil
}

// Wait blocks until byte off exists (End() >= off) and returns nil. It returns ErrTrimmed if
// off < First(), ErrClosed once closed, and ctx.Err() when ctx ends first.
func (d *disk) Wait(ctx context.Context, off int64) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if off < d.First() {
		return ErrTrimmed
	}
	err := d.ring.Wait(ctx, off)
	if !errors.Is(err, ErrTrimmed) {
		return err
	}
	// The RAM tail let go of off, so the byte exists; it is held unless it is trimmed here too.
	if off < d.First() {
		return ErrTrimmed
	}
	return nil
}

// ReadAt copies the bytes from offset off into p, as many as are held up to len(p) and at
// most up to the end of one segment, and returns how many. Errors and short counts as
// ring.ReadAt.
func (d *disk) ReadAt(p []byte, off int64) (int, error) {
	var ref segRef
	defer ref.release()
	return d.readAt(p, off, &ref)
}

// readAt reads from the RAM tail when it holds off, else from the files, keeping the
// segment it used in ref for the next call.
func (d *disk) readAt(p []byte, off int64, ref *segRef) (int, error) {
	if err := d.check(off); err != nil {
		return 0, err
	}
	if off >= d.ring.First() {
		ref.release() // reading from RAM now: let the file go
		n, err := d.ring.ReadAt(p, off)
		if !errors.Is(err, ErrTrimmed) {
			return n, err
		}
		// Evicted from RAM meanwhile: the files have it.
	}
	f, s, err := d.segmentAt(off, ref)
	if err != nil {
		return 0, err
	}
	n := min(int64(len(p)), s.last.Load()-off+1, d.ring.End()-off+1)
	if n <= 0 {
		return 0, nil
	}
	k, err := f.ReadAt(p[:n], off-s.start)
	if int64(k) < n {
		return k, fmt.Errorf("%w: read segment %s at %d: %d of %d bytes: %v", ErrStorage, segName(s.start), off-s.start, k, n, err)
	}
	return k, nil
}

// segRef is a reference to a segment a reader holds across calls, with its descriptor.
type segRef struct {
	s *segment
	f *os.File
}

func (r *segRef) release() {
	if r.s != nil {
		r.s.release()
		r.s, r.f = nil, nil
	}
}

// segmentAt returns the segment holding off, reusing ref's when it does, and leaves a
// reference to it in ref. A segment deleted meanwhile gives ErrTrimmed (or ErrClosed).
func (d *disk) segmentAt(off int64, ref *segRef) (*os.File, *segment, error) {
	if s := ref.s; s != nil {
		if off >= s.start && off <= s.last.Load() {
			return ref.f, s, nil
		}
		ref.release()
	}
	d.segMu.RLock()
	i := sort.Search(len(d.segs), func(i int) bool { return d.segs[i].start > off }) - 1
	var s *segment
	if i >= 0 {
		s = d.segs[i]
	}
	d.segMu.RUnlock()
	if s == nil || off > s.last.Load() {
		if d.closed.Load() {
			return nil, nil, ErrClosed
		}
		return nil, nil, ErrTrimmed // only possible if the segments changed since the check
	}
	f, err := s.acquire()
	if errors.Is(err, errGone) {
		if d.closed.Load() {
			return nil, nil, ErrClosed
		}
		return nil, nil, ErrTrimmed
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	ref.s, ref.f = s, f
	return f, s, nil
}
