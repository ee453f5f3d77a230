package backlog

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
)

var (
	// ErrTrimmed is returned for an offset below First: the bytes were evicted, so the caller
	// must full-sync. No other bytes are ever served in their place.
	ErrTrimmed = errors.New("backlog: offset no longer held")
	// ErrFuture is returned for an offset above End+1, which the stream has not reached.
	ErrFuture = errors.New("backlog: offset beyond end")
	// ErrClosed is returned by reads and waits once the ring was closed (new epoch or shutdown).
	ErrClosed = errors.New("backlog: closed")
)

// MinSize is the smallest ring; smaller sizes are raised to it, as Redis does with
// CONFIG_REPL_BACKLOG_MIN_SIZE.
const MinSize = 16 << 10

const (
	// chunk bounds every copy made under mu, so the writer waits at most one chunk for a
	// reader, and a reader at most one chunk for the writer.
	chunk = 64 << 10
	// minAlloc is the first storage allocation; it doubles from there up to the size.
	minAlloc = 64 << 10
)

// Ring is an in-RAM backlog addressed by absolute offset. Append must be called by one
// goroutine only; every other method is safe for concurrent use.
type Ring struct {
	// wmu serializes the mutators: Append, Resize and Close. Append has a single caller by
	// contract; wmu lets Resize (CONFIG SET) and Close (shutdown) come from other goroutines.
	// Readers never take it. Because only wmu holders write buf, a wmu holder may read buf
	// without mu.
	wmu sync.Mutex

	// mu guards the contents of buf. A wmu holder takes it exclusively for each chunk it
	// copies in and to swap buf; readers take it shared for each chunk they copy out.
	mu sync.RWMutex
	// buf is the storage; len(buf) is the capacity and never exceeds size. The byte at offset
	// o, First <= o <= End, is buf[(o-base)%len(buf)], and base <= First. buf and base change
	// only with wmu and mu (exclusive) both held, so either lock is enough to read them.
	buf  []byte
	base int64

	// first and end are the held bytes' bounds. They change only with wmu and mu (exclusive)
	// both held, and only forward:
	//   - first passes a byte in the same critical section that overwrites it, or an earlier
	//     one, so a reader holding mu that sees first <= o reads the true byte o;
	//   - end passes a byte in the critical section that copies it in, after the copy.
	// Lock-free readers take a consistent pair through seq, a seqlock: seq is odd while a
	// pair is being stored.
	seq   atomic.Uint64
	first atomic.Int64
	end   atomic.Int64

	size   atomic.Int64 // configured maximum; stored with wmu held
	closed atomic.Bool  // set once, with wmu held, before buf is released

	// waitMu guards wake, the broadcast channel for Wait. It is nil while nobody waits, so a
	// busy stream without waiters allocates nothing. A waiter creates it; Append or Close
	// closes it and sets it back to nil. waiting mirrors wake != nil so that Append can skip
	// waitMu. No wakeup is lost: a waiter stores waiting and then loads end (or closed), and
	// the notifier stores end (or closed) and then loads waiting, so one sees the other.
	waitMu  sync.Mutex
	wake    chan struct{}
	waiting atomic.Bool
}

// NewRing returns an empty ring holding at most size bytes, whose first appended byte gets
// offset next, so First() == next and End() == next-1. A size below MinSize is raised to
// MinSize. No storage is allocated until bytes arrive.
func NewRing(size int64, next int64) *Ring {
	r := &Ring{base: next}
	r.size.Store(max(size, MinSize))
	r.first.Store(next)
	r.end.Store(next - 1)
	return r
}

// Append adds p at End()+1 and wakes every waiter. Only one goroutine may call Append. It
// never waits for readers beyond one chunk copy: when the ring is full the oldest bytes are
// evicted. If p is longer than Size, End still advances by len(p) but only the newest Size
// bytes are kept. After Close, Append does nothing.
func (r *Ring) Append(p []byte) {
	if len(p) == 0 {
		return
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() {
		return
	}
	size := r.size.Load()
	if n := int64(len(p)); n > size {
		// The older bytes could only be evicted by the newer ones: count them as appended
		// and evicted at once, leaving an empty ring at the offset where p's tail goes.
		e := r.end.Load() + n - size
		r.mu.Lock()
		r.setBounds(e+1, e)
		r.mu.Unlock()
		p = p[n-size:]
	}
	r.reserve(int64(len(p)), size)
	for len(p) > 0 {
		k := min(len(p), chunk)
		r.put(p[:k])
		p = p[k:]
	}
	r.notify()
}

// reserve makes the storage large enough for the held bytes plus n more, up to size, so that
// bytes are evicted only once the storage has reached size. The caller holds wmu.
func (r *Ring) reserve(n, size int64) {
	first, end := r.first.Load(), r.end.Load()
	need := min(end-first+1+n, size)
	if int64(len(r.buf)) >= need {
		return
	}
	// Allocate and copy without mu: readers keep reading the old storage meanwhile, and
	// nobody else writes it because we hold wmu.
	nb := make([]byte, allocSize(need, size))
	r.copyAt(nb[:end-first+1], first)
	r.mu.Lock()
	r.buf, r.base = nb, first
	r.mu.Unlock()
}

// put copies q, at most chunk bytes and at most len(buf), in at End()+1. The caller holds wmu.
func (r *Ring) put(q []byte) {
	end := r.end.Load()
	last := end + int64(len(q))
	c := int64(len(r.buf))
	first := max(r.first.Load(), last-c+1)
	pos := (end + 1 - r.base) % c
	r.mu.Lock()
	if first != r.first.Load() {
		r.setBounds(first, end) // evict before overwriting
	}
	k := copy(r.buf[pos:], q)
	copy(r.buf, q[k:])
	r.setBounds(first, last)
	r.mu.Unlock()
}

// setBounds publishes a new pair. The caller holds wmu and mu exclusively.
func (r *Ring) setBounds(first, end int64) {
	r.seq.Add(1)
	r.first.Store(first)
	r.end.Store(end)
	r.seq.Add(1)
}

// notify wakes every Wait in progress.
func (r *Ring) notify() {
	if !r.waiting.Load() {
		return
	}
	r.waitMu.Lock()
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
		r.waiting.Store(false)
	}
	r.waitMu.Unlock()
}

// wakeChan returns the channel the next notify closes.
func (r *Ring) wakeChan() <-chan struct{} {
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{})
		r.waiting.Store(true)
	}
	return r.wake
}

// copyAt copies len(dst) held bytes starting at offset off into dst. The caller holds mu or
// wmu, which keeps buf from changing, and has checked that the bytes are held.
func (r *Ring) copyAt(dst []byte, off int64) {
	if len(dst) == 0 {
		return
	}
	pos := (off - r.base) % int64(len(r.buf))
	k := copy(dst, r.buf[pos:])
	copy(dst[k:], r.buf)
}

// ReadAt copies the bytes from offset off into p, as many as are held up to len(p), and
// returns how many. At End()+1 it returns 0, nil. A short count with a nil error means the
// rest is not there: not yet, or no longer; the next call tells which. Errors: ErrTrimmed
// for off < First() (bytes evicted, even while being copied, are never returned),
// ErrFuture for off > End()+1, ErrClosed after Close.
func (r *Ring) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for {
		q := p[n:min(len(p), n+chunk)]
		k, err := r.readChunk(q, off+int64(n))
		n += k
		if k < len(q) || n == len(p) {
			if n > 0 {
				// The bytes copied so far are good; the next call reports what stopped us.
				return n, nil
			}
			return 0, err
		}
	}
}

// readChunk is one locked step of ReadAt; p holds at most chunk bytes.
func (r *Ring) readChunk(p []byte, off int64) (int, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed.Load() {
		return 0, ErrClosed
	}
	first, end := r.first.Load(), r.end.Load() // stable: both change only under mu
	switch {
	case off < first:
		return 0, ErrTrimmed
	case off > end+1:
		return 0, ErrFuture
	}
	n := int(min(int64(len(p)), end+1-off))
	r.copyAt(p[:n], off)
	// Holding mu already keeps the writer from overwriting these bytes; the re-check keeps
	// "never return overwritten bytes" true here even if first is ever stored outside mu.
	if off < r.first.Load() {
		return 0, ErrTrimmed
	}
	return n, nil
}

// Wait blocks until byte off exists (End() >= off) and returns nil. It returns ErrTrimmed if
// off < First(), ErrClosed once the ring is closed, and ctx.Err() when ctx ends first. It
// starts no goroutine.
func (r *Ring) Wait(ctx context.Context, off int64) error {
	var wake <-chan struct{}
	for {
		switch {
		case r.closed.Load():
			return ErrClosed
		case off < r.first.Load():
			return ErrTrimmed
		case off <= r.end.Load():
			return nil
		}
		if wake == nil {
			// Register, then look again before sleeping (see waiting).
			wake = r.wakeChan()
			continue
		}
		select {
		case <-wake:
			wake = nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// First returns the offset of the oldest byte held; End()+1 when the ring is empty.
func (r *Ring) First() int64 { return r.first.Load() }

// End returns the offset of the last byte appended (master_repl_offset).
func (r *Ring) End() int64 { return r.end.Load() }

// Bounds returns First and End as a consistent pair, without locking.
func (r *Ring) Bounds() (first, end int64) {
	for {
		s := r.seq.Load()
		if s&1 == 0 {
			first, end = r.first.Load(), r.end.Load()
			if r.seq.Load() == s {
				return first, end
			}
		}
		// The writer is between two stores; let it finish.
		runtime.Gosched()
	}
}

// Histlen returns the number of bytes held, End()-First()+1.
func (r *Ring) Histlen() int64 {
	first, end := r.Bounds()
	return end - first + 1
}

// Size returns the configured maximum number of bytes held.
func (r *Ring) Size() int64 { return r.size.Load() }

// Mem returns the bytes currently allocated for storage; at most Size, 0 after Close.
func (r *Ring) Mem() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return int64(len(r.buf))
}

// Resize changes the maximum at runtime (CONFIG SET repl-backlog-size), keeping the newest
// bytes: shrinking evicts from the front, growing keeps everything. A size below MinSize is
// raised to MinSize. Safe to call concurrently with Append and readers.
func (r *Ring) Resize(size int64) {
	size = max(size, MinSize)
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() {
		return
	}
	r.size.Store(size)
	first, end := r.first.Load(), r.end.Load()
	first = max(first, end-size+1)
	if int64(len(r.buf)) <= size {
		if first != r.first.Load() {
			r.mu.Lock()
			r.setBounds(first, end)
			r.mu.Unlock()
		}
		return
	}
	// The storage exceeds the new maximum: move the kept bytes to smaller storage so the
	// memory is given back. As in reserve, the copy is done without mu.
	nb := make([]byte, allocSize(end-first+1, size))
	r.copyAt(nb[:end-first+1], first)
	r.mu.Lock()
	r.setBounds(first, end)
	r.buf, r.base = nb, first
	r.mu.Unlock()
}

// Close wakes every waiter with ErrClosed and releases the storage; later reads return
// ErrClosed and Append does nothing. First and End keep their last values. Idempotent.
func (r *Ring) Close() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Swap(true) {
		return
	}
	r.mu.Lock()
	r.buf = nil
	r.mu.Unlock()
	r.notify()
}

// allocSize returns the storage size for need bytes: minAlloc doubled until it fits, capped
// at size. Doubling keeps the number of reallocations logarithmic in the size.
func allocSize(need, size int64) int64 {
	if need <= 0 {
		return 0
	}
	c := int64(minAlloc)
	for c < need {
		c *= 2
	}
	return min(c, size)
}
