package backlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// All benchmarks move 16 KiB pieces, taken in turn from a 1 MiB source, through 64 MiB of
// memory, and report MB/s through b.SetBytes. BenchmarkCopy is the baseline: plain copy()
// into a 64 MiB buffer.
const (
	benchPiece = 16 << 10
	benchRing  = 64 << 20
)

// benchSource returns the source buffer and a function giving its i-th piece.
func benchSource() func(i int) []byte {
	src := stream(99, 1<<20)
	return func(i int) []byte {
		off := (i * benchPiece) % len(src)
		return src[off : off+benchPiece]
	}
}

func BenchmarkCopy(b *testing.B) {
	piece := benchSource()
	dst := make([]byte, benchRing)
	for i := 0; i < len(dst); i += benchPiece {
		copy(dst[i:], piece(i)) // fault the pages in, as the ring's fill does below
	}
	b.SetBytes(benchPiece)
	i, pos := 0, 0
	for b.Loop() {
		copy(dst[pos:], piece(i))
		i++
		pos = (pos + benchPiece) % benchRing
	}
}

// BenchmarkFillLarge appends 16 KiB pieces into a fresh 256 MiB ring until it is full, so it
// measures growing the storage from nothing, page faults included, unlike BenchmarkCopy whose
// buffer is faulted in beforehand. max-append-ms is the longest single Append seen: growth
// must never stall the writer for a time that grows with the ring.
func BenchmarkFillLarge(b *testing.B) {
	const size = 256 << 20
	piece := benchSource()
	b.SetBytes(size)
	var worst time.Duration
	for b.Loop() {
		r := newRing(size, 1)
		for i := 0; r.Histlen() < size; i++ {
			start := time.Now()
			r.Append(piece(i))
			worst = max(worst, time.Since(start))
		}
		r.Close()
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-append-ms")
}

// fullRing returns a 64 MiB ring whose storage is fully grown and full, so the benchmarks
// measure the steady state: every Append evicts.
func fullRing(piece func(int) []byte) *ring {
	r := newRing(benchRing, 1)
	for i := 0; r.Histlen() < benchRing; i++ {
		r.Append(piece(i))
	}
	return r
}

func BenchmarkAppend(b *testing.B) {
	piece := benchSource()
	r := fullRing(piece)
	b.SetBytes(benchPiece)
	i := 0
	for b.Loop() {
		r.Append(piece(i))
		i++
	}
}

// BenchmarkAppendCursors measures the writer's append rate (the MB/s column) while N cursors
// each try to read everything it appends into their own 64 KiB buffer. As in the proxy, the
// writer never waits: a cursor that falls a whole ring behind gets ErrTrimmed and, like a
// replica after a full sync, starts again at End()+1. Readers are allowed to lag: the writer
// here is an unthrottled memcpy loop, much faster than any master link. Extra columns:
// rd-MB/s is what all cursors together read per second, trims how often one was lapped.
func BenchmarkAppendCursors(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchAppendCursors(b, n) })
	}
}

func benchAppendCursors(b *testing.B, readers int) {
	piece := benchSource()
	r := fullRing(piece)
	var read, trims atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			p := make([]byte, 64<<10)
			c, _ := r.newCursor(r.End() + 1)
			for {
				n, err := c.Read(context.Background(), p)
				read.Add(int64(n))
				switch {
				case errors.Is(err, ErrTrimmed):
					trims.Add(1)
					if c, err = r.newCursor(r.End() + 1); err != nil {
						return
					}
				case err != nil:
					return
				}
			}
		})
	}
	b.SetBytes(benchPiece)
	i := 0
	for b.Loop() {
		r.Append(piece(i))
		i++
	}
	// b.Loop has stopped the timer: the shutdown below is not measured.
	elapsed := b.Elapsed().Seconds()
	got := read.Load()
	r.Close()
	wg.Wait()
	b.ReportMetric(float64(got)/1e6/elapsed, "rd-MB/s")
	b.ReportMetric(float64(trims.Load()), "trims")
}

// pieceSource is an io.Reader handing out benchSource's pieces, one a Read.
type pieceSource struct {
	piece func(int) []byte
	i     int
}

func (s *pieceSource) Read(p []byte) (int, error) {
	n := copy(p, s.piece(s.i))
	s.i++
	return n, nil
}

// BenchmarkAppendFrom is the upstream's old hot path: read into the ring, publish all.
func BenchmarkAppendFrom(b *testing.B) {
	piece := benchSource()
	r := fullRing(piece)
	src := &pieceSource{piece: piece}
	b.SetBytes(benchPiece)
	for b.Loop() {
		r.AppendFrom(src)
	}
}

// BenchmarkStagePublish is the upstream's hot path: read into the ring, then publish up to a
// command boundary; here all but the last 100 bytes, which the next round publishes.
func BenchmarkStagePublish(b *testing.B) {
	piece := benchSource()
	r := fullRing(piece)
	src := &pieceSource{piece: piece}
	b.SetBytes(benchPiece)
	for b.Loop() {
		if _, err := r.Stage(src); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Publish(r.End() + r.Staged() - 100); err != nil {
			b.Fatal(err)
		}
	}
}
