package backlog

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// stream returns n bytes of a deterministic pseudo-random stream. Tests append it from
// offset 1, so the byte at offset o is stream[o-1]: a misplaced or stale byte is caught.
func stream(seed uint64, n int) []byte {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// checkBounds fails unless r's bounds are first and end.
func checkBounds(t *testing.T, r *ring, first, end int64) {
	t.Helper()
	if f, e := r.Bounds(); f != first || e != end {
		t.Fatalf("Bounds() = (%d, %d), want (%d, %d)", f, e, first, end)
	}
	if r.First() != first || r.End() != end {
		t.Fatalf("First(), End() = %d, %d, want %d, %d", r.First(), r.End(), first, end)
	}
	if h := r.Histlen(); h != end-first+1 {
		t.Fatalf("Histlen() = %d, want %d", h, end-first+1)
	}
}

// checkHeld reads every held byte of r from many offsets and sizes, crossing block
// boundaries, and compares with ref, where ref[i] is the byte at offset base+i.
func checkHeld(t *testing.T, r *ring, ref []byte, base int64) {
	t.Helper()
	first, end := r.Bounds()
	p := make([]byte, 3*chunk)
	for _, size := range []int{1, 7, 4096, chunk - 1, chunk + 3, 3 * chunk} {
		for off := first; off <= end+1; off += 1 + int64(size)/3 {
			n, err := r.ReadAt(p[:size], off)
			if err != nil {
				t.Fatalf("ReadAt(%d bytes, %d): %v", size, off, err)
			}
			if want := min(int64(size), end+1-off); int64(n) != want {
				t.Fatalf("ReadAt(%d bytes, %d) = %d, want %d", size, off, n, want)
			}
			if !bytes.Equal(p[:n], ref[off-base:off-base+int64(n)]) {
				t.Fatalf("ReadAt(%d bytes, %d): wrong bytes", size, off)
			}
		}
	}
}

func TestEmptyRing(t *testing.T) {
	r := newRing(1<<20, 1)
	checkBounds(t, r, 1, 0)
	if r.Size() != 1<<20 || r.Mem() != 0 {
		t.Fatalf("Size, Mem = %d, %d, want %d, 0", r.Size(), r.Mem(), 1<<20)
	}
	p := make([]byte, 10)
	if n, err := r.ReadAt(p, 1); n != 0 || err != nil {
		t.Fatalf("ReadAt(End+1) = %d, %v, want 0, nil", n, err)
	}
	if _, err := r.ReadAt(p, 0); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("ReadAt(First-1) = %v, want ErrTrimmed", err)
	}
	if _, err := r.ReadAt(p, 2); !errors.Is(err, ErrFuture) {
		t.Fatalf("ReadAt(End+2) = %v, want ErrFuture", err)
	}

	r = newRing(1<<20, 1001)
	checkBounds(t, r, 1001, 1000)
	r.Append([]byte("abc"))
	checkBounds(t, r, 1001, 1003)
	if n, err := r.ReadAt(p, 1002); err != nil || string(p[:n]) != "bc" {
		t.Fatalf("ReadAt(1002) = %q, %v, want \"bc\"", p[:n], err)
	}
}

func TestMinSize(t *testing.T) {
	for _, size := range []int64{-1, 0, 1, MinSize - 1} {
		if got := newRing(size, 1).Size(); got != MinSize {
			t.Fatalf("newRing(%d).Size() = %d, want %d", size, got, MinSize)
		}
	}
	r := newRing(1<<20, 1)
	r.Resize(100)
	if r.Size() != MinSize {
		t.Fatalf("after Resize(100) Size() = %d, want %d", r.Size(), MinSize)
	}
}

func TestAppendAndWrap(t *testing.T) {
	ref := stream(1, 100<<10)
	r := newRing(MinSize, 1)
	r.Append(ref[:10<<10])
	checkBounds(t, r, 1, 10<<10)
	checkHeld(t, r, ref, 1)

	// The second append wraps: the oldest bytes go and First moves.
	r.Append(ref[10<<10 : 20<<10])
	checkBounds(t, r, 20<<10-MinSize+1, 20<<10)
	checkHeld(t, r, ref, 1)

	p := make([]byte, 100)
	if _, err := r.ReadAt(p, r.First()-1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("ReadAt(First-1) = %v, want ErrTrimmed", err)
	}
	if _, err := r.ReadAt(p, 1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("ReadAt(1) = %v, want ErrTrimmed", err)
	}
	if _, err := r.ReadAt(p, r.End()+2); !errors.Is(err, ErrFuture) {
		t.Fatalf("ReadAt(End+2) = %v, want ErrFuture", err)
	}
	if n, err := r.ReadAt(p, r.End()+1); n != 0 || err != nil {
		t.Fatalf("ReadAt(End+1) = %d, %v, want 0, nil", n, err)
	}
	if n, err := r.ReadAt(nil, r.First()); n != 0 || err != nil {
		t.Fatalf("ReadAt(nil, First) = %d, %v, want 0, nil", n, err)
	}
	// Keep wrapping many times.
	for off := 20 << 10; off < len(ref); off += 3000 {
		r.Append(ref[off:min(off+3000, len(ref))])
	}
	checkBounds(t, r, int64(len(ref))-MinSize+1, int64(len(ref)))
	checkHeld(t, r, ref, 1)
}

func TestAppendLargerThanSize(t *testing.T) {
	ref := stream(2, 200<<10)
	r := newRing(MinSize, 1)
	r.Append(ref[:5])
	r.Append(ref[5 : 100<<10])
	checkBounds(t, r, 100<<10-MinSize+1, 100<<10)
	checkHeld(t, r, ref, 1)
	if r.Mem() != blockSize {
		t.Fatalf("Mem() = %d, want one block", r.Mem())
	}
	r.Append(ref[100<<10 : 101<<10])
	checkBounds(t, r, 101<<10-MinSize+1, 101<<10)
	checkHeld(t, r, ref, 1)

	// Into an empty ring that does not start at 1, larger than a chunk.
	r = newRing(100<<10, 5001)
	r.Append(ref)
	checkBounds(t, r, 5000+int64(len(ref))-100<<10+1, 5000+int64(len(ref)))
	checkHeld(t, r, ref, 5001)
}

func TestManySmallAppends(t *testing.T) {
	ref := stream(3, 300<<10)
	r := newRing(64<<10, 1)
	rng := rand.New(rand.NewPCG(3, 3))
	for off := 0; off < len(ref); {
		k := min(1+rng.IntN(7), len(ref)-off)
		r.Append(ref[off : off+k])
		off += k
		if off%(50<<10) < 7 {
			checkHeld(t, r, ref, 1)
		}
	}
	checkBounds(t, r, int64(len(ref))-64<<10+1, int64(len(ref)))
	checkHeld(t, r, ref, 1)
}

// TestLazyGrowth checks that storage is allocated one block at a time as bytes arrive, never
// beyond the bound Mem documents, and that growing never moves held bytes.
func TestLazyGrowth(t *testing.T) {
	const size, bsize = 1_000_000, 64 << 10 // size is not a whole number of blocks
	ref := stream(4, 3*size)
	r := newRingBlocks(size, 1, bsize)
	if r.Mem() != 0 {
		t.Fatalf("Mem() = %d before any append, want 0", r.Mem())
	}
	r.Append(ref[:1])
	if r.Mem() != bsize {
		t.Fatalf("Mem() = %d after 1 byte, want %d", r.Mem(), bsize)
	}
	prev := r.Mem()
	addrs := blockAddrs(r)
	for off := 1; off < len(ref); off += 10_000 {
		r.Append(ref[off:min(off+10_000, len(ref))])
		m := r.Mem()
		switch {
		case m > memBound(size, bsize):
			t.Fatalf("Mem() = %d > %d", m, memBound(size, bsize))
		case m < r.Histlen():
			t.Fatalf("Mem() = %d < Histlen() %d", m, r.Histlen())
		case m < prev:
			t.Fatalf("Mem() went down from %d to %d at a constant size", prev, m)
		case m > prev+bsize:
			t.Fatalf("Mem() went from %d to %d, want one block at a time", prev, m)
		}
		checkSameBlocks(t, r, addrs)
		addrs = blockAddrs(r)
		prev = m
	}
	if r.Histlen() != size {
		t.Fatalf("Histlen() = %d, want %d", r.Histlen(), size)
	}
	checkHeld(t, r, ref, 1)
}

func TestResizeDown(t *testing.T) {
	ref := stream(5, 2<<20)
	r := newRing(1<<20, 1)
	r.Append(ref[:800<<10])
	r.Resize(100 << 10)
	checkBounds(t, r, 700<<10+1, 800<<10)
	if r.Size() != 100<<10 || r.Mem() != blockSize {
		t.Fatalf("Size(), Mem() = %d, %d, want %d, one block", r.Size(), r.Mem(), 100<<10)
	}
	checkHeld(t, r, ref, 1)
	if _, err := r.ReadAt(make([]byte, 1), 700<<10); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("ReadAt(old bytes) = %v, want ErrTrimmed", err)
	}
	r.Append(ref[800<<10 : 1000<<10])
	checkBounds(t, r, 900<<10+1, 1000<<10)
	checkHeld(t, r, ref, 1)

	// Fewer bytes held than the new size: nothing is evicted.
	r = newRing(1<<20, 1)
	r.Append(ref[:300<<10])
	r.Resize(500 << 10)
	checkBounds(t, r, 1, 300<<10)
	if r.Mem() != blockSize {
		t.Fatalf("Mem() = %d, want one block", r.Mem())
	}
	checkHeld(t, r, ref, 1)
	r.Resize(MinSize)
	checkBounds(t, r, 300<<10-MinSize+1, 300<<10)
	checkHeld(t, r, ref, 1)

	// Storage in one block: only First moves.
	r = newRing(1<<20, 1)
	r.Append(ref[:40<<10])
	r.Resize(30 << 10)
	checkBounds(t, r, 10<<10+1, 40<<10)
	checkHeld(t, r, ref, 1)
}

func TestResizeUp(t *testing.T) {
	ref := stream(6, 2<<20)
	r := newRing(64<<10, 1)
	r.Append(ref[:200<<10])
	r.Resize(1 << 20)
	checkBounds(t, r, 136<<10+1, 200<<10)
	if r.Size() != 1<<20 || r.Mem() != blockSize {
		t.Fatalf("Size(), Mem() = %d, %d, want %d, one block", r.Size(), r.Mem(), 1<<20)
	}
	r.Append(ref[200<<10 : 500<<10])
	checkBounds(t, r, 136<<10+1, 500<<10)
	if r.Mem() != blockSize {
		t.Fatalf("Mem() = %d, want one block", r.Mem())
	}
	checkHeld(t, r, ref, 1)
}

func TestClose(t *testing.T) {
	r := newRing(MinSize, 1)
	r.Append([]byte("hello"))
	r.Close()
	r.Close() // idempotent
	p := make([]byte, 10)
	if _, err := r.ReadAt(p, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAt after Close = %v, want ErrClosed", err)
	}
	if err := r.Wait(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v, want ErrClosed", err)
	}
	if _, err := r.newCursor(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("newCursor after Close = %v, want ErrClosed", err)
	}
	r.Append([]byte("more"))
	r.Resize(1 << 20)
	checkBounds(t, r, 1, 5)
	if r.Mem() != 0 {
		t.Fatalf("Mem() after Close = %d, want 0", r.Mem())
	}
}

// waitAsync runs r.Wait in a goroutine owned by the test and returns its result channel.
func waitAsync(t *testing.T, r *ring, ctx context.Context, off int64) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Wait(ctx, off) }()
	select {
	case err := <-done:
		t.Fatalf("Wait(%d) returned %v before it could be woken", off, err)
	case <-time.After(20 * time.Millisecond):
	}
	return done
}

// result returns what the Wait behind done returned, failing if it takes too long.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("Wait was not woken")
		return nil
	}
}

func TestWait(t *testing.T) {
	ctx := context.Background()
	r := newRing(MinSize, 1)
	done := waitAsync(t, r, ctx, 3)
	r.Append([]byte("ab")) // not yet byte 3
	select {
	case err := <-done:
		t.Fatalf("Wait(3) returned %v with End() = 2", err)
	case <-time.After(20 * time.Millisecond):
	}
	r.Append([]byte("c"))
	if err := result(t, done); err != nil {
		t.Fatalf("Wait(3) = %v, want nil", err)
	}
	if err := r.Wait(ctx, 2); err != nil {
		t.Fatalf("Wait on a held byte = %v, want nil", err)
	}
	r.Append(make([]byte, 2*MinSize))
	if err := r.Wait(ctx, 2); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("Wait on an evicted byte = %v, want ErrTrimmed", err)
	}
}

func TestWaitCancel(t *testing.T) {
	r := newRing(MinSize, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := waitAsync(t, r, ctx, 1)
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestWaitClose(t *testing.T) {
	r := newRing(MinSize, 1)
	var waits []<-chan error
	for off := int64(1); off <= 5; off++ {
		waits = append(waits, waitAsync(t, r, context.Background(), off))
	}
	r.Close()
	for i, done := range waits {
		if err := result(t, done); !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter %d after Close = %v, want ErrClosed", i, err)
		}
	}
}

func TestAppendAllocatesNothing(t *testing.T) {
	r := newRing(MinSize, 1)
	p := make([]byte, 1000)
	r.Append(make([]byte, MinSize)) // storage fully grown
	if a := testing.AllocsPerRun(1000, func() { r.Append(p) }); a != 0 {
		t.Fatalf("Append without waiters allocates %v times per call, want 0", a)
	}
}
