package backlog

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestNewCursor(t *testing.T) {
	r := newRing(MinSize, 1)
	r.Append(make([]byte, 2*MinSize))
	first, end := r.Bounds()
	if _, err := r.newCursor(first - 1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("newCursor(First-1) = %v, want ErrTrimmed", err)
	}
	if _, err := r.newCursor(end + 2); !errors.Is(err, ErrFuture) {
		t.Fatalf("newCursor(End+2) = %v, want ErrFuture", err)
	}
	for _, off := range []int64{first, end, end + 1} {
		c, err := r.newCursor(off)
		if err != nil || c.Offset() != off {
			t.Fatalf("newCursor(%d) = %v, offset %d", off, err, c.Offset())
		}
	}
}

// TestCursorSequence interleaves random appends and random reads and checks the cursor
// returns exactly the appended sequence, across wraps and storage growth.
func TestCursorSequence(t *testing.T) {
	ref := stream(10, 4<<20)
	rng := rand.New(rand.NewPCG(10, 10))
	r := newRing(256<<10, 1)
	c, err := r.newCursor(1)
	if err != nil {
		t.Fatalf("newCursor: %v", err)
	}
	ctx := context.Background()
	var got []byte
	buf := make([]byte, 200<<10)
	for off := 0; off < len(ref); {
		k := min(1+rng.IntN(100<<10), len(ref)-off)
		r.Append(ref[off : off+k])
		off += k
		for c.Offset() <= r.End() {
			n, err := c.Read(ctx, buf[:1+rng.IntN(len(buf))])
			if err != nil {
				t.Fatalf("Read at %d: %v", c.Offset(), err)
			}
			got = append(got, buf[:n]...)
		}
	}
	if !bytes.Equal(got, ref) {
		t.Fatalf("cursor read %d bytes, not the %d appended", len(got), len(ref))
	}
}

func TestCursorBlocks(t *testing.T) {
	r := newRing(MinSize, 1)
	c, _ := r.newCursor(1)
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	p := make([]byte, 10)
	go func() {
		n, err := c.Read(context.Background(), p)
		done <- res{n, err}
	}()
	select {
	case got := <-done:
		t.Fatalf("Read returned %d, %v on an empty ring", got.n, got.err)
	case <-time.After(20 * time.Millisecond):
	}
	r.Append([]byte("hey"))
	select {
	case got := <-done:
		if got.err != nil || string(p[:got.n]) != "hey" {
			t.Fatalf("Read = %q, %v, want \"hey\"", p[:got.n], got.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Read was not woken by Append")
	}
	if c.Offset() != 4 {
		t.Fatalf("Offset() = %d, want 4", c.Offset())
	}

	// Close wakes a blocked Read with ErrClosed.
	go func() {
		n, err := c.Read(context.Background(), p)
		done <- res{n, err}
	}()
	time.Sleep(10 * time.Millisecond)
	r.Close()
	select {
	case got := <-done:
		if !errors.Is(got.err, ErrClosed) {
			t.Fatalf("Read after Close = %d, %v, want ErrClosed", got.n, got.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Read was not woken by Close")
	}
}

func TestCursorContext(t *testing.T) {
	r := newRing(MinSize, 1)
	c, _ := r.newCursor(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	p := make([]byte, 10)
	if _, err := c.Read(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read = %v, want context.DeadlineExceeded", err)
	}
	// A context error does not finish the cursor.
	r.Append([]byte("x"))
	if n, err := c.Read(context.Background(), p); n != 1 || err != nil {
		t.Fatalf("Read after a context error = %d, %v, want 1, nil", n, err)
	}
}

// TestCursorOvertaken checks that a cursor the writer laps gets ErrTrimmed, keeps getting it,
// and is never moved forward.
func TestCursorOvertaken(t *testing.T) {
	ref := stream(11, 64<<10)
	r := newRing(MinSize, 1)
	c, _ := r.newCursor(1)
	r.Append(ref[:10<<10])
	p := make([]byte, 4<<10)
	if n, err := c.Read(context.Background(), p); n != 4<<10 || err != nil || !bytes.Equal(p, ref[:4<<10]) {
		t.Fatalf("first Read = %d, %v", n, err)
	}
	r.Append(ref[10<<10 : 30<<10]) // First is now past the cursor
	for range 2 {
		if n, err := c.Read(context.Background(), p); n != 0 || !errors.Is(err, ErrTrimmed) {
			t.Fatalf("Read of a lapped cursor = %d, %v, want 0, ErrTrimmed", n, err)
		}
	}
	if c.Offset() != 4<<10+1 {
		t.Fatalf("Offset() = %d after ErrTrimmed, want %d", c.Offset(), 4<<10+1)
	}
}
