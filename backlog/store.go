package backlog

import (
	"context"
	"fmt"
	"io"
)

// Backlog is the method set shared by Ring and Disk, so that the proxy can hold either
// (--backlog-mode memory|disk). Append, NewCursor and Close differ in their results (a
// Disk's can fail; its cursors are DiskCursors) and are left out: use NewStreamCursor, and
// the concrete type for the rest.
type Backlog interface {
	Stage(rd io.Reader) ([]byte, error)
	Publish(end int64) ([]byte, error)
	Staged() int64
	DropStaged()
	ReadAt(p []byte, off int64) (int, error)
	Wait(ctx context.Context, off int64) error
	First() int64
	End() int64
	Bounds() (first, end int64)
	Size() int64
	Resize(size int64)
}

// StreamCursor is the method set shared by Cursor and DiskCursor: what a replica's session
// needs to stream the backlog, whichever kind holds it.
type StreamCursor interface {
	WriteTo(ctx context.Context, w io.Writer, limit int) (int64, error)
	WaitAt(ctx context.Context, off int64) error
	Skip(n int64) error
	Offset() int64
	End() int64
	// On reports whether the cursor reads b, so that nothing is written for a cursor of a
	// backlog a new history replaced.
	On(b Backlog) bool
	// Close lets the cursor go: a DiskCursor holds a segment file open until then.
	Close()
}

var (
	_ Backlog      = (*Ring)(nil)
	_ Backlog      = (*Disk)(nil)
	_ StreamCursor = (*Cursor)(nil)
	_ StreamCursor = (*DiskCursor)(nil)
)

// NewStreamCursor returns b.NewCursor(off) as a StreamCursor. On error the cursor is a nil
// interface, never an interface holding a nil pointer.
func NewStreamCursor(b Backlog, off int64) (StreamCursor, error) {
	switch b := b.(type) {
	case *Ring:
		c, err := b.NewCursor(off)
		if err != nil {
			return nil, err
		}
		return c, nil
	case *Disk:
		c, err := b.NewCursor(off)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("backlog: NewStreamCursor: unknown backlog %T", b)
}
