package backlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// pieceReader hands out src from pos in pieces of random sizes.
type pieceReader struct {
	src []byte
	pos int
	rng *rand.Rand
	max int
}

func (r *pieceReader) Read(p []byte) (int, error) {
	if r.pos == len(r.src) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1+r.rng.IntN(r.max))], r.src[r.pos:])
	r.pos += n
	return n, nil
}

// Staged bytes are invisible to readers until published, published bytes are exactly the
// staged ones in order, and dropped ones are written again at End+1, for both backlogs. The
// pieces cross block boundaries (4 KiB blocks in the ring).
func TestStagePublish(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) Backlog
	}{
		{"ring", func(t *testing.T) Backlog { return newRingBlocks(64<<10, 1, 4096) }},
		{"disk", func(t *testing.T) Backlog { return newHistory(t, t.TempDir(), testOpts(newTestLog(t)), 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.open(t)
			rng := rand.New(rand.NewPCG(1, 2))
			src := make([]byte, 600<<10)
			for i := range src {
				src[i] = byte(rng.IntN(256))
			}
			rd := &pieceReader{src: src, rng: rng, max: 9000}
			var published, staged int // bytes of src published, and staged after them
			buf := make([]byte, 64<<10)
			for published < len(src) {
				chunk, err := b.Stage(rd)
				switch {
				case errors.Is(err, ErrStageFull):
					chunk = nil
				case errors.Is(err, io.EOF):
				case err != nil:
					t.Fatalf("Stage: %v", err)
				}
				if !bytes.Equal(chunk, src[published+staged:published+staged+len(chunk)]) {
					t.Fatalf("Stage returned other bytes than read")
				}
				staged += len(chunk)
				if got := b.Staged(); got != int64(staged) {
					t.Fatalf("Staged() = %d, want %d", got, staged)
				}
				if b.End() != int64(published) {
					t.Fatalf("End() = %d after staging, want %d", b.End(), published)
				}
				if n, err := b.ReadAt(buf, int64(published)+1); n != 0 || err != nil {
					t.Fatalf("ReadAt(End+1) = %d, %v: staged bytes are visible", n, err)
				}
				if rng.IntN(20) == 0 {
					b.DropStaged()
					staged, rd.pos = 0, published
					continue
				}
				k := rng.IntN(staged + 1)
				if err != nil || rng.IntN(3) == 0 {
					k = staged // at the end, at ErrStageFull, and often anyway
				}
				pub, perr := b.Publish(int64(published + k))
				if perr != nil {
					t.Fatalf("Publish(%d): %v", published+k, perr)
				}
				if pub != nil && !bytes.Equal(pub, src[published:published+k]) {
					t.Fatalf("Publish returned other bytes than published")
				}
				published, staged = published+k, staged-k
				if b.End() != int64(published) {
					t.Fatalf("End() = %d after Publish, want %d", b.End(), published)
				}
			}
			first, end := b.Bounds()
			got := make([]byte, 0, end-first+1)
			for off := first; off <= end; {
				n, err := b.ReadAt(buf, off)
				if err != nil {
					t.Fatalf("ReadAt(%d): %v", off, err)
				}
				got = append(got, buf[:n]...)
				off += int64(n)
			}
			if !bytes.Equal(got, src[first-1:end]) {
				t.Fatalf("bytes %d-%d differ from what was staged", first, end)
			}
			if _, err := b.Publish(end + 1); err == nil {
				t.Fatalf("Publish past the bytes staged succeeded")
			}
		})
	}
}

// A waiter wakes when bytes are published, not when they are staged.
func TestStageWakesOnPublish(t *testing.T) {
	r := newRing(1<<20, 1)
	woke := make(chan error, 1)
	go func() { woke <- r.Wait(context.Background(), 1) }()
	if _, err := r.Stage(bytes.NewReader([]byte("*1\r\n$4\r\nping"))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		t.Fatalf("Wait returned (%v) on staged bytes", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := r.Publish(12); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// A ring stages at most Size bytes; then Stage reads nothing until some are published.
func TestStageFull(t *testing.T) {
	r := newRingBlocks(MinSize, 1, 4096)
	zeros := bytes.NewReader(make([]byte, 2*MinSize))
	for r.Staged() < MinSize {
		if _, err := r.Stage(zeros); err != nil {
			t.Fatalf("Stage at %d staged: %v", r.Staged(), err)
		}
	}
	left := zeros.Len()
	if _, err := r.Stage(zeros); !errors.Is(err, ErrStageFull) {
		t.Fatalf("Stage with Size bytes staged: %v, want ErrStageFull", err)
	}
	if zeros.Len() != left {
		t.Fatalf("a full Stage read %d bytes", left-zeros.Len())
	}
	if _, err := r.Publish(MinSize); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stage(zeros); err != nil {
		t.Fatalf("Stage after Publish: %v", err)
	}
}
