package backlog

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// diskCursor reads a disk's stream in order for one replica, with cursor's semantics: it
// never skips a byte, ErrTrimmed and ErrClosed are sticky. Bytes still in the RAM tail are
// written straight from it (as cursor.WriteTo does); older ones come from the segment files,
// by sendfile when the writer is a TCP or Unix socket, else through a fixed buffer. It moves
// between the two by itself as it catches up or falls behind the tail. It is not safe for
// concurrent use.
//
// While it reads a segment it keeps that file open; Close lets it go (the descriptor is also
// released when the cursor moves on, and by the garbage collector if Close is never called).
type diskCursor struct {
	d   *disk
	off int64
	err error
	// ring is a cursor on the RAM tail, re-aimed at off before each use. Keeping one reuses
	// its zero-copy WriteTo and its scratch space, so streaming from RAM allocates nothing.
	ring cursor
	ref  segRef // the segment being read from the files, if any
	buf  []byte // fileChunk bytes once needed: the bound on a lagging cursor's memory
}

// newCursor returns a cursor whose next byte is off. Errors: ErrTrimmed for off < First(),
// ErrFuture for off > End()+1, ErrClosed after Close.
func (d *disk) newCursor(off int64) (*diskCursor, error) {
	if err := d.check(off); err != nil {
		return nil, err
	}
	return &diskCursor{d: d, off: off, ring: cursor{r: d.ring}}, nil
}

// Cursor is newCursor for Backlog: on error the cursor is a nil interface.
func (d *disk) Cursor(off int64) (StreamCursor, error) {
	c, err := d.newCursor(off)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// fail records a final error (ErrTrimmed, ErrClosed) and lets the file go; it returns err.
func (c *diskCursor) fail(err error) error {
	if errors.Is(err, ErrTrimmed) || errors.Is(err, ErrClosed) {
		c.err = err
		c.ref.release()
	}
	return err
}

// Read blocks until the byte at the cursor exists, then copies up to len(p) bytes and
// advances past them. Errors as cursor.Read, plus ErrStorage when a file cannot be read.
func (c *diskCursor) Read(ctx context.Context, p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for {
		n, err := c.d.readAt(p, c.off, &c.ref)
		if err == nil && (n > 0 || len(p) == 0) {
			c.off += int64(n)
			return n, nil
		}
		if err == nil {
			if err = c.d.Wait(ctx, c.off); err == nil {
				continue
			}
		}
		return 0, c.fail(err)
	}
}

// WriteTo waits until the byte at the cursor exists, then writes up to limit bytes from there
// to w and advances past what w took. From the RAM tail it is cursor.WriteTo (one writev,
// blocks pinned); from the files it is one sendfile, or buffered reads and writes, within one
// segment. No lock is held while w writes. Errors as cursor.WriteTo, plus ErrStorage.
func (c *diskCursor) WriteTo(ctx context.Context, w io.Writer, limit int) (int64, error) {
	if c.err != nil {
		return 0, c.err
	}
	if limit <= 0 {
		return 0, nil
	}
	d := c.d
	for {
		if err := d.check(c.off); err != nil {
			return 0, c.fail(err)
		}
		if c.off > d.End() {
			if err := d.Wait(ctx, c.off); err != nil {
				return 0, c.fail(err)
			}
			continue
		}
		if c.off >= d.ring.First() {
			c.ref.release()
			c.ring.off, c.ring.err = c.off, nil
			n, err := c.ring.WriteTo(ctx, w, limit)
			c.off = c.ring.off
			if errors.Is(err, ErrTrimmed) && n == 0 {
				continue // the RAM tail let go of it meanwhile: the files have it
			}
			return n, c.fail(err)
		}
		n, err := c.writeFile(w, limit)
		c.off += n
		if n > 0 && (errors.Is(err, ErrTrimmed) || errors.Is(err, ErrClosed)) {
			err = nil // report the bytes sent; the next call finds the cursor trimmed
		}
		return n, c.fail(err)
	}
}

// writeFile writes bytes at the cursor from the segment files, within one segment.
func (c *diskCursor) writeFile(w io.Writer, limit int) (int64, error) {
	d := c.d
	f, s, err := d.segmentAt(c.off, &c.ref)
	if err != nil {
		return 0, err
	}
	count := min(int64(limit), s.last.Load()-c.off+1, d.ring.End()-c.off+1)
	if count <= 0 {
		return 0, nil
	}
	pos := c.off - s.start
	if n, handled, err := sendFile(w, f, pos, count); handled {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: segment %s is shorter than its index", ErrStorage, segName(s.start))
		}
		return n, err
	}
	if c.buf == nil {
		c.buf = make([]byte, fileChunk)
	}
	var done int64
	for done < count {
		k := min(int64(len(c.buf)), count-done)
		r, err := f.ReadAt(c.buf[:k], pos+done)
		if int64(r) < k {
			return done, fmt.Errorf("%w: read segment %s at %d: %d of %d bytes: %v", ErrStorage, segName(s.start), pos+done, r, k, err)
		}
		n, err := w.Write(c.buf[:k])
		done += int64(n)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// Wait blocks until the byte at the cursor exists. Errors as Read.
func (c *diskCursor) Wait(ctx context.Context) error {
	if c.err != nil {
		return c.err
	}
	err := c.d.Wait(ctx, c.off)
	if errors.Is(err, ErrTrimmed) || errors.Is(err, ErrClosed) {
		c.fail(err)
	}
	return err
}

// WaitAt blocks until the byte at off exists, off being the cursor's offset as the caller last
// read it (see cursor.WaitAt). ErrTrimmed and ErrClosed are not kept.
func (c *diskCursor) WaitAt(ctx context.Context, off int64) error {
	return c.d.Wait(ctx, off)
}

// Skip moves the cursor past n bytes delivered without it. It fails with ErrFuture, moving
// nothing, if End()+1 < Offset()+n.
func (c *diskCursor) Skip(n int64) error {
	if n < 0 || c.off+n > c.d.End()+1 {
		return ErrFuture
	}
	c.off += n
	return nil
}

// Offset returns the offset of the next byte Read returns.
func (c *diskCursor) Offset() int64 { return c.off }

// End returns the disk's End().
func (c *diskCursor) End() int64 { return c.d.End() }

// On reports whether the cursor reads d.
func (c *diskCursor) On(b Backlog) bool { return b == Backlog(c.d) }

// Close releases the segment file the cursor holds open, if any. The cursor stays usable:
// a later read opens what it needs again.
func (c *diskCursor) Close() { c.ref.release() }
