package backlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentCursors streams 64 MiB through a 1 MiB ring with random append sizes while 8
// cursors check every byte against the reference. The test's writer holds back when a fast
// cursor is half a ring behind (the ring itself never waits), so fast cursors must read
// everything. A slow cursor must end in ErrTrimmed, having read only correct bytes. Edge
// readers hammer the bytes being evicted, and a Bounds checker watches the published pairs.
// It runs again with a small ring of small blocks (of an odd size, so reads and appends
// cross block boundaries at every alignment), where the edge readers race with blocks being
// recycled as new back blocks thousands of times.
func TestConcurrentCursors(t *testing.T) {
	for _, tc := range []struct {
		name               string
		size, bsize, total int64
	}{
		{"1MiB-blocks", 1 << 20, blockSize, 64 << 20},
		{"small-blocks", 64 << 10, 4099, 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total := tc.total
			if testing.Short() {
				total /= 8
			}
			testConcurrentCursors(t, tc.size, tc.bsize, int(total))
		})
	}
}

func testConcurrentCursors(t *testing.T, size, bsize int64, total int) {
	const fast = 8
	ref := stream(20, total)
	r := newRingBlocks(size, 1, bsize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	progress := make([]atomic.Int64, fast) // next offset of each fast cursor
	var writerDone atomic.Bool
	var wg sync.WaitGroup

	for i := range fast {
		c, _ := r.newCursor(1)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			p := make([]byte, 128<<10)
			for c.Offset() <= int64(total) {
				off := c.Offset()
				n, err := c.Read(ctx, p[:1+rng.IntN(len(p))])
				if err != nil {
					t.Errorf("fast cursor %d at %d: %v", i, off, err)
					return
				}
				if !bytes.Equal(p[:n], ref[off-1:off-1+int64(n)]) {
					t.Errorf("fast cursor %d: wrong bytes at %d+%d", i, off, n)
					return
				}
				progress[i].Store(c.Offset())
			}
		})
	}

	slow, _ := r.newCursor(1)
	wg.Go(func() {
		p := make([]byte, 1<<10)
		for {
			off := slow.Offset()
			n, err := slow.Read(ctx, p)
			if errors.Is(err, ErrTrimmed) {
				if slow.Offset() != off || off >= r.First() {
					t.Errorf("slow cursor: ErrTrimmed at %d with First() = %d", off, r.First())
				}
				return
			}
			if err != nil {
				t.Errorf("slow cursor at %d: %v, want ErrTrimmed", off, err)
				return
			}
			if !bytes.Equal(p[:n], ref[off-1:off-1+int64(n)]) {
				t.Errorf("slow cursor: wrong bytes at %d+%d", off, n)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})

	var edgeOK, edgeTrimmed atomic.Int64
	for i := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			p := make([]byte, 8<<10)
			for !writerDone.Load() {
				first, end := r.Bounds()
				off := first + rng.Int64N(min(4<<10, end-first+2))
				n, err := r.ReadAt(p[:1+rng.IntN(len(p))], off)
				switch {
				case errors.Is(err, ErrTrimmed):
					edgeTrimmed.Add(1)
				case err != nil:
					t.Errorf("edge ReadAt(%d): %v", off, err)
					return
				case !bytes.Equal(p[:n], ref[off-1:off-1+int64(n)]):
					t.Errorf("edge ReadAt(%d): wrong bytes", off)
					return
				default:
					edgeOK.Add(1)
				}
			}
		})
	}

	wg.Go(func() { checkBoundsLoop(t, r, &writerDone, size) })

	wg.Go(func() {
		defer writerDone.Store(true)
		rng := rand.New(rand.NewPCG(20, 3))
		for off := 0; off < total; {
			for int64(off)-minProgress(progress) > size/2 {
				if ctx.Err() != nil {
					t.Errorf("writer: fast cursors stopped at %d", minProgress(progress))
					return
				}
				runtime.Gosched()
			}
			// At most a quarter ring at a time, so that one Append cannot lap the fast cursors.
			k := min(1+rng.IntN(int(min(64<<10, size/4))), total-off)
			r.Append(ref[off : off+k])
			off += k
		}
	})

	wg.Wait()
	if r.End() != int64(total) {
		t.Fatalf("End() = %d, want %d", r.End(), total)
	}
	t.Logf("edge reads: %d good, %d trimmed", edgeOK.Load(), edgeTrimmed.Load())
}

// minProgress returns the offset of the slowest fast cursor, as a 0-based stream index.
func minProgress(progress []atomic.Int64) int64 {
	m := progress[0].Load()
	for i := range progress {
		m = min(m, progress[i].Load())
	}
	return m - 1
}

// checkBoundsLoop checks Bounds until done: each pair is consistent, no larger than maxSize,
// and neither bound ever moves back.
func checkBoundsLoop(t *testing.T, r *ring, done *atomic.Bool, maxSize int64) {
	var lastFirst, lastEnd int64
	for !done.Load() {
		first, end := r.Bounds()
		if first > end+1 || end-first+1 > maxSize || first < lastFirst || end < lastEnd {
			t.Errorf("Bounds() = (%d, %d) after (%d, %d), max size %d",
				first, end, lastFirst, lastEnd, maxSize)
			return
		}
		lastFirst, lastEnd = first, end
		runtime.Gosched()
	}
}

// TestResizeConcurrent resizes the ring at random while a writer appends and readers read at
// random held offsets: every byte returned must be right, Bounds must stay consistent, and
// Mem must never exceed what the largest size may take (see memBound). It runs with 1 MiB
// blocks and with small ones, which shrinking lets go of and appending recycles. The writer goes on until enough resizes happened,
// so it appends ref over and over: byte o is ref[(o-1)%len(ref)], and ref is longer than any
// ring, so a stale byte still shows.
func TestResizeConcurrent(t *testing.T) {
	const maxSize = 2 << 20
	total, minResizes := 16<<20, int64(300)
	if testing.Short() {
		total, minResizes = 4<<20, 50
	}
	for _, bsize := range []int64{blockSize, 5003} {
		t.Run(fmt.Sprint(bsize), func(t *testing.T) {
			testResizeConcurrent(t, maxSize, bsize, total, minResizes)
		})
	}
}

func testResizeConcurrent(t *testing.T, maxSize, bsize int64, total int, minResizes int64) {
	ref := stream(30, int(2*maxSize+1))
	r := newRingBlocks(maxSize, 1, bsize)
	var done atomic.Bool
	var resizes atomic.Int64
	var wg sync.WaitGroup

	wg.Go(func() {
		defer done.Store(true)
		rng := rand.New(rand.NewPCG(30, 1))
		for off := 0; off < total || resizes.Load() < minResizes; {
			i := off % len(ref)
			k := min(1+rng.IntN(64<<10), len(ref)-i)
			r.Append(ref[i : i+k])
			off += k
			runtime.Gosched()
		}
	})
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(30, 2))
		for !done.Load() {
			r.Resize(MinSize + rng.Int64N(maxSize-MinSize+1))
			resizes.Add(1)
			if m := r.Mem(); m > memBound(maxSize, bsize) {
				t.Errorf("Mem() = %d > %d", m, memBound(maxSize, bsize))
				return
			}
			runtime.Gosched()
		}
	})
	for i := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			p := make([]byte, 256<<10)
			for !done.Load() {
				first, end := r.Bounds()
				off := first + rng.Int64N(end-first+2)
				n, err := r.ReadAt(p[:1+rng.IntN(len(p))], off)
				switch {
				case errors.Is(err, ErrTrimmed):
				case err != nil:
					t.Errorf("ReadAt(%d): %v", off, err)
					return
				case !cyclicEqual(ref, off, p[:n]):
					t.Errorf("ReadAt(%d): wrong bytes", off)
					return
				}
				runtime.Gosched() // on 2 cores, spinning readers would starve the writer
			}
		})
	}
	wg.Go(func() { checkBoundsLoop(t, r, &done, maxSize) })
	wg.Wait()
	t.Logf("%d resizes, %d bytes", resizes.Load(), r.End())

	r.Resize(maxSize)
	first, end := r.Bounds()
	p := make([]byte, end-first+1)
	if n, err := r.ReadAt(p, first); n != len(p) || err != nil || !cyclicEqual(ref, first, p) {
		t.Fatalf("final ReadAt(%d) = %d, %v", first, n, err)
	}
}

// cyclicEqual reports whether p is what ref repeated forever holds from offset off.
func cyclicEqual(ref []byte, off int64, p []byte) bool {
	for len(p) > 0 {
		i := int((off - 1) % int64(len(ref)))
		k := min(len(p), len(ref)-i)
		if !bytes.Equal(p[:k], ref[i:i+k]) {
			return false
		}
		p, off = p[k:], off+int64(k)
	}
	return true
}
