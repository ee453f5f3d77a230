package backlog

import (
	"context"
	"errors"
	"io"
	"net"
)

// cursor reads the stream in order for one replica. It is not safe for concurrent use: each
// replica's writer goroutine owns its cursor.
type cursor struct {
	r   *ring
	off int64 // offset of the next byte to read; moves only over bytes copied out
	// err is sticky: once ErrTrimmed or ErrClosed, the cursor is finished. A cursor that fell
	// behind First is never moved forward: its replica must be disconnected (invariant 4).
	err error
	// bufs, pinned and wbufs are WriteTo's scratch space, kept so that it allocates nothing.
	bufs   [][]byte
	pinned []*block
	wbufs  net.Buffers
}

// newCursor returns a cursor whose next byte is off. It fails as ReadAt does: ErrTrimmed for
// off < First(), ErrFuture for off > End()+1, ErrClosed after Close. off == End()+1 is fine.
func (r *ring) newCursor(off int64) (*cursor, error) {
	if _, err := r.ReadAt(nil, off); err != nil {
		return nil, err
	}
	return &cursor{r: r, off: off}, nil
}

// Cursor is newCursor for Backlog: on error the cursor is a nil interface.
func (r *ring) Cursor(off int64) (StreamCursor, error) {
	c, err := r.newCursor(off)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Read blocks until the byte at the cursor exists, then copies up to len(p) bytes and
// advances the cursor past them. Errors: ErrTrimmed when the cursor fell behind First() (the
// replica lagged past the backlog), ErrClosed, and ctx.Err(). ErrTrimmed and ErrClosed are
// returned again by every later call; a context error is not.
func (c *cursor) Read(ctx context.Context, p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for {
		n, err := c.r.ReadAt(p, c.off)
		if err == nil && (n > 0 || len(p) == 0) {
			c.off += int64(n)
			return n, nil
		}
		if err == nil {
			// At the end: sleep until the writer appends the byte we want.
			err = c.r.Wait(ctx, c.off)
		}
		if err != nil {
			if errors.Is(err, ErrTrimmed) || errors.Is(err, ErrClosed) {
				c.err = err
			}
			return 0, err
		}
	}
}

// Offset returns the offset of the next byte Read returns.
func (c *cursor) Offset() int64 { return c.off }

// WriteTo waits until the byte at the cursor exists, then writes up to limit bytes from
// there to w straight from the ring's storage, with one writev when w is a TCP connection,
// and advances the cursor past what w took. Errors are those of Read, and w's. While w
// writes, the blocks it writes from are pinned: if the bytes are evicted meanwhile, the ring
// lets those blocks go instead of reusing them, so w always sends the true bytes. No lock is
// held while w writes, so a slow peer never holds up the writer.
func (c *cursor) WriteTo(ctx context.Context, w io.Writer, limit int) (int64, error) {
	if c.err != nil {
		return 0, c.err
	}
	for {
		var err error
		c.bufs, c.pinned, err = c.r.pin(c.off, limit, c.bufs[:0], c.pinned[:0])
		if err == nil && len(c.bufs) > 0 {
			c.wbufs = c.bufs // WriteTo consumes its receiver, so give it a copy
			n, werr := c.wbufs.WriteTo(w)
			for i, b := range c.pinned {
				b.pins.Add(-1)
				c.pinned[i] = nil
			}
			clear(c.bufs)
			c.off += n
			return n, werr
		}
		if err == nil {
			err = c.r.Wait(ctx, c.off)
			if err == nil {
				continue
			}
		}
		if errors.Is(err, ErrTrimmed) || errors.Is(err, ErrClosed) {
			c.err = err
		}
		return 0, err
	}
}

// Wait blocks until the byte at the cursor exists, so that a caller can set a write deadline
// just before WriteTo. Its errors are those of Read.
func (c *cursor) Wait(ctx context.Context) error {
	if c.err != nil {
		return c.err
	}
	err := c.r.Wait(ctx, c.off)
	if errors.Is(err, ErrTrimmed) || errors.Is(err, ErrClosed) {
		c.err = err
	}
	return err
}

// On reports whether the cursor reads r.
func (c *cursor) On(b Backlog) bool { return b == Backlog(c.r) }

// Close does nothing: a cursor holds nothing but its place in the ring.
func (c *cursor) Close() {}

// Skip moves the cursor past n bytes that were delivered without it (written to the replica
// straight from the bytes the writer appended). The bytes must exist: Skip fails with
// ErrFuture, moving nothing, if End()+1 < Offset()+n. The caller owns the cursor.
func (c *cursor) Skip(n int64) error {
	if n < 0 || c.off+n > c.r.End()+1 {
		return ErrFuture
	}
	c.off += n
	return nil
}

// End returns the ring's End(), for a caller deciding whether to wait.
func (c *cursor) End() int64 { return c.r.End() }

// WaitAt blocks until the byte at off exists, where off is the cursor's offset as the caller
// last read it (another goroutine may move the cursor meanwhile, under the caller's lock).
// Errors as Read; ErrTrimmed and ErrClosed are not kept, since the cursor may have moved.
func (c *cursor) WaitAt(ctx context.Context, off int64) error {
	return c.r.Wait(ctx, off)
}
