package backlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chunkReader returns src in pieces of random length (sometimes none), as a socket does.
type chunkReader struct {
	src []byte
	rng *rand.Rand
	max int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.src) == 0 {
		return 0, io.EOF
	}
	if c.rng.IntN(10) == 0 {
		return 0, nil
	}
	n := copy(p[:min(len(p), 1+c.rng.IntN(c.max))], c.src)
	c.src = c.src[n:]
	return n, nil
}

// TestAppendFromSequence fills rings of several block sizes with AppendFrom and Append mixed,
// and checks the returned slices, the bounds and the held bytes against the source.
func TestAppendFromSequence(t *testing.T) {
	for _, tc := range []struct{ size, bsize int64 }{
		{MinSize, blockSize}, {MinSize, 4096}, {256 << 10, 5003}, {4 << 20, blockSize},
	} {
		ref := stream(60, 8<<20)
		rng := rand.New(rand.NewPCG(60, uint64(tc.bsize)))
		r := newRingBlocks(tc.size, 1, tc.bsize)
		src := &chunkReader{src: ref, rng: rng, max: 200 << 10}
		off := 0
		for off < len(ref) {
			if rng.IntN(4) == 0 {
				k := min(1+rng.IntN(100<<10), len(src.src))
				r.Append(src.src[:k])
				src.src = src.src[k:]
				off += k
				continue
			}
			got, err := r.AppendFrom(src)
			if err != nil {
				t.Fatalf("AppendFrom at %d: %v", off, err)
			}
			if !bytes.Equal(got, ref[off:off+len(got)]) {
				t.Fatalf("AppendFrom at %d returned bytes that are not the ones read", off)
			}
			off += len(got)
			if r.End() != int64(off) {
				t.Fatalf("End() = %d after %d bytes", r.End(), off)
			}
		}
		checkLayout(t, r)
		checkHeld(t, r, ref, 1)
		if _, err := r.AppendFrom(src); !errors.Is(err, io.EOF) {
			t.Fatalf("AppendFrom at the source's end: %v, want EOF", err)
		}
		checkLayout(t, r) // an empty read hands the fresh block back
		r.Close()
		if _, err := r.AppendFrom(src); !errors.Is(err, ErrClosed) {
			t.Fatalf("AppendFrom after Close: %v, want ErrClosed", err)
		}
	}
}

// blockingReader gives n bytes of b once released, so that a test can act during a read.
type blockingReader struct {
	started, release chan struct{}
	b                []byte
}

func (b *blockingReader) Read(p []byte) (int, error) {
	close(b.started)
	<-b.release
	return copy(p, b.b), nil
}

// TestAppendFromDoesNotBlockMutators checks that Resize and Close proceed while AppendFrom
// waits for its reader, and that what the read brings after Close is dropped.
func TestAppendFromDoesNotBlockMutators(t *testing.T) {
	r := newRing(1<<20, 1)
	ref := stream(61, 300<<10)
	r.Append(ref[:200<<10])
	br := &blockingReader{started: make(chan struct{}), release: make(chan struct{}), b: ref[200<<10:]}
	done := make(chan error, 1)
	go func() {
		_, err := r.AppendFrom(br)
		done <- err
	}()
	<-br.started
	r.Resize(MinSize) // would deadlock if AppendFrom held wmu during the read
	checkBounds(t, r, 200<<10-MinSize+1, 200<<10)
	close(br.release)
	if err := <-done; err != nil {
		t.Fatalf("AppendFrom: %v", err)
	}
	checkBounds(t, r, 300<<10-MinSize+1, 300<<10)
	checkHeld(t, r, ref, 1)

	br = &blockingReader{started: make(chan struct{}), release: make(chan struct{}), b: ref}
	go func() {
		_, err := r.AppendFrom(br)
		done <- err
	}()
	<-br.started
	r.Close()
	close(br.release)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendFrom overtaken by Close: %v, want ErrClosed", err)
	}
	if r.End() != 300<<10 {
		t.Fatalf("End() = %d, bytes read after Close were appended", r.End())
	}
}

// TestWriteToSequence reads a ring with WriteTo at random limits while it is filled, and
// checks the exact sequence arrives.
func TestWriteToSequence(t *testing.T) {
	ref := stream(62, 6<<20)
	rng := rand.New(rand.NewPCG(62, 62))
	r := newRingBlocks(512<<10, 1, 64<<10)
	c, _ := r.newCursor(1)
	var got bytes.Buffer
	ctx := context.Background()
	for off := 0; off < len(ref); {
		k := min(1+rng.IntN(100<<10), len(ref)-off)
		r.Append(ref[off : off+k])
		off += k
		for c.Offset() <= r.End() {
			if _, err := c.WriteTo(ctx, &got, 1+rng.IntN(300<<10)); err != nil {
				t.Fatalf("WriteTo at %d: %v", c.Offset(), err)
			}
		}
	}
	if !bytes.Equal(got.Bytes(), ref) {
		t.Fatalf("WriteTo wrote %d bytes, not the %d appended", got.Len(), len(ref))
	}
}

// hookWriter calls during on its first Write, then keeps what it was given.
type hookWriter struct {
	during func()
	got    []byte
}

func (h *hookWriter) Write(p []byte) (int, error) {
	if h.during != nil {
		h.during()
		h.during = nil
	}
	h.got = append(h.got, p...)
	return len(p), nil
}

// TestWriteToPinned evicts and recycles the whole ring many times over while WriteTo is
// writing its oldest bytes: the writer must still get the true bytes, because pinned blocks
// are never reused, and the cursor must then report ErrTrimmed, never skip ahead.
func TestWriteToPinned(t *testing.T) {
	const size, bsize = 64 << 10, 4096
	ref := stream(63, 2<<20)
	r := newRingBlocks(size, 1, bsize)
	r.Append(ref[:size])
	c, _ := r.newCursor(1)
	h := &hookWriter{during: func() {
		for off := size; off < len(ref); off += 1000 {
			r.Append(ref[off:min(off+1000, len(ref))])
		}
	}}
	n, err := c.WriteTo(context.Background(), h, 3*bsize+100)
	if err != nil || n != 3*bsize+100 {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	if !bytes.Equal(h.got, ref[:n]) {
		t.Fatal("WriteTo wrote bytes that were overwritten while it wrote")
	}
	if _, err := c.WriteTo(context.Background(), h, 100); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("WriteTo behind First: %v, want ErrTrimmed", err)
	}
	checkLayout(t, r)
	checkHeld(t, r, ref, 1)
}

// TestWriteToConcurrent runs AppendFrom as the writer and WriteTo cursors (fast ones, and a
// slow one that must end with ErrTrimmed) at once, under the race detector in make test.
func TestWriteToConcurrent(t *testing.T) {
	total := 32 << 20
	if testing.Short() {
		total /= 8
	}
	ref := stream(64, total)
	r := newRingBlocks(256<<10, 1, 16<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	progress := make([]atomic.Int64, 4) // next offset of each fast cursor
	for i := range 4 {
		c, _ := r.newCursor(1)
		progress[i].Store(1)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 64))
			var w checkWriter
			w.ref = ref
			for c.Offset() <= int64(total) {
				if _, err := c.WriteTo(ctx, &w, 1+rng.IntN(200<<10)); err != nil {
					t.Errorf("cursor %d at %d: %v", i, c.Offset(), err)
					return
				}
				if w.bad {
					t.Errorf("cursor %d: wrong bytes before %d", i, c.Offset())
					return
				}
				progress[i].Store(c.Offset())
			}
		})
	}
	slow, _ := r.newCursor(1)
	wg.Go(func() {
		w := checkWriter{ref: ref, delay: time.Millisecond}
		for {
			_, err := slow.WriteTo(ctx, &w, 32<<10)
			if w.bad {
				t.Errorf("slow cursor: wrong bytes before %d", slow.Offset())
				return
			}
			if errors.Is(err, ErrTrimmed) {
				return
			}
			if err != nil {
				t.Errorf("slow cursor: %v, want ErrTrimmed", err)
				return
			}
		}
	})
	src := &chunkReader{src: ref, rng: rand.New(rand.NewPCG(64, 0)), max: 64 << 10}
	for {
		// Keep the fast cursors within half a ring; the slow one falls behind.
		for int64(total-len(src.src))-minProgress(progress) > 128<<10 {
			if ctx.Err() != nil {
				t.Fatalf("fast cursors stopped at %d", minProgress(progress))
			}
			runtime.Gosched()
		}
		if _, err := r.AppendFrom(src); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("AppendFrom: %v", err)
		}
	}
	wg.Wait()
}

// checkWriter compares what it is given with ref from its own position on.
type checkWriter struct {
	ref   []byte
	pos   int
	bad   bool
	delay time.Duration
}

func (w *checkWriter) Write(p []byte) (int, error) {
	if !bytes.Equal(p, w.ref[w.pos:w.pos+len(p)]) {
		w.bad = true
	}
	w.pos += len(p)
	time.Sleep(w.delay)
	return len(p), nil
}

// TestZeroCopyAllocatesNothing checks the hot path's steady state: AppendFrom into a full
// ring and WriteTo from it allocate nothing.
func TestZeroCopyAllocatesNothing(t *testing.T) {
	r := newRingBlocks(1<<20, 1, 64<<10)
	src := bytes.NewReader(nil)
	piece := make([]byte, 16<<10)
	c, _ := r.newCursor(1)
	ctx := context.Background()
	step := func() {
		src.Reset(piece)
		if _, err := r.AppendFrom(src); err != nil {
			t.Fatal(err)
		}
		for c.Offset() <= r.End() {
			if _, err := c.WriteTo(ctx, io.Discard, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 200 { // full, and blocks recycled
		step()
	}
	allocs := testing.AllocsPerRun(20, func() {
		for range 100 {
			step()
		}
	})
	if allocs != 0 {
		t.Errorf("100 AppendFrom and WriteTo steps allocated %v times, want 0", allocs)
	}
}
