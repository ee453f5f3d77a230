package backlog

import (
	"context"
	"errors"
	"io"
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
	// chunk bounds every copy a reader makes under mu, so the writer waits at most one chunk
	// for a reader.
	chunk = 64 << 10
	// blockSize is the size of every storage block. Storage grows and shrinks a block at a
	// time and held bytes are never moved, so no Append or Resize costs more than one
	// block's allocation, whatever the ring's size.
	blockSize = 1 << 20
)

// ring is an in-RAM backlog addressed by absolute offset. Append must be called by one
// goroutine only; every other method is safe for concurrent use.
type ring struct {
	// wmu serializes the mutators: Append, Resize and Close. Append has a single caller by
	// contract; wmu lets Resize (CONFIG SET) and Close (shutdown) come from other goroutines.
	// Readers never take it. Because only wmu holders change the storage, a wmu holder may
	// read it without mu.
	wmu sync.Mutex

	// mu guards the storage: blocks, base and the held bytes. A wmu holder takes it
	// exclusively to publish bytes it wrote past End and for every change to blocks or base;
	// readers take it shared for each chunk they copy out or pin, and never touch a block
	// without it. Bytes past End are the writer's alone: it fills them without mu.
	mu sync.RWMutex
	// blocks is the storage, ordered by offset: blocks.at(k) holds the offsets
	// [base+k*bsize, base+(k+1)*bsize), so the byte at offset o, First <= o <= End+staged, is
	// blocks.at((o-base)/bsize)[(o-base)%bsize]. Every block in it holds an offset in
	// [First, End+staged+1]: the front block holds First (base <= First), the back block
	// End+staged or End+staged+1. blocks and base change only with wmu and mu (exclusive) both
	// held, so either lock is enough to read them.
	blocks deque
	base   int64
	bsize  int64 // the size of every block; blockSize but in tests
	// spare is a block taken off the front of blocks, kept to become the next back block, so
	// that a full ring allocates nothing. At most one is kept: memory goes back when the
	// size shrinks. Only wmu holders use it; readers cannot reach it. A block that a cursor
	// has pinned (see cursor.WriteTo) never becomes the spare: it is let go instead, so its
	// bytes stay as they were until the cursor is done with them.
	spare *block
	// staged is the number of bytes Stage stored past End that Publish has not made visible
	// yet; they follow End in blocks, which may then end with blocks holding only such bytes.
	// Only wmu holders use it (see stage.go).
	staged int64
	// mem is the bytes of all blocks allocated: those in blocks and spare. Stored with wmu.
	mem atomic.Int64

	// first and end are the held bytes' bounds. They change only with wmu and mu (exclusive)
	// both held, and only forward:
	//   - first passes every byte of a block in the critical section that takes the block off
	//     blocks, or an earlier one. A block's bytes are only rewritten at offsets above End,
	//     after it has come back as the new back block, so a reader holding mu that sees
	//     first <= o <= end reads the true byte o;
	//   - end passes a byte in the critical section that copies it in, after the copy.
	// Lock-free readers take a consistent pair through seq, a seqlock: seq is odd while a
	// pair is being stored.
	seq   atomic.Uint64
	first atomic.Int64
	end   atomic.Int64

	size   atomic.Int64 // configured maximum; stored with wmu held
	closed atomic.Bool  // set once, with wmu held, before the storage is released

	// waitMu guards wake, the broadcast channel for Wait. It is nil while nobody waits, so a
	// busy stream without waiters allocates nothing. A waiter creates it; Append or Close
	// closes it and sets it back to nil. waiting mirrors wake != nil so that Append can skip
	// waitMu. No wakeup is lost: a waiter stores waiting and then loads end (or closed), and
	// the notifier stores end (or closed) and then loads waiting, so one sees the other.
	waitMu  sync.Mutex
	wake    chan struct{}
	waiting atomic.Bool
}

// newRing returns an empty ring holding at most size bytes, whose first appended byte gets
// offset next, so First() == next and End() == next-1. A size below MinSize is raised to
// MinSize. Storage is allocated in blocks of 1 MiB as bytes arrive, so a large ring costs
// nothing until it is used, and it never needs one large allocation. Because of the block
// granularity, the memory a ring uses may exceed size by about two blocks (see Mem).
func newRing(size int64, next int64) *ring {
	return newRingBlocks(size, next, blockSize)
}

// newRingBlocks is newRing with blocks of bsize bytes.
func newRingBlocks(size, next, bsize int64) *ring {
	if bsize <= 0 {
		panic("backlog: block size must be positive")
	}
	r := &ring{base: next, bsize: bsize}
	r.size.Store(max(size, MinSize))
	r.first.Store(next)
	r.end.Store(next - 1)
	return r
}

// Append adds p at End()+1 and wakes every waiter. Only one goroutine may call Append (or
// AppendFrom). It never waits for readers: the bytes are copied into storage past End, which
// no reader looks at, and published in a short critical section; when the ring is full the
// oldest bytes are evicted. If p is longer than Size, End still advances by len(p) but only
// the newest Size bytes are kept. After Close, Append does nothing. Held bytes are never
// moved, so the cost of an Append does not depend on the ring's size.
func (r *ring) Append(p []byte) {
	if len(p) == 0 {
		return
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() {
		return
	}
	r.publishLocked(r.staged) // bytes staged by Stage come first
	size := r.size.Load()
	if n := int64(len(p)); n > size {
		// The older bytes could only be evicted by the newer ones: count them as appended
		// and evicted at once, leaving an empty ring at the offset where p's tail goes.
		e := r.end.Load() + n - size
		r.mu.Lock()
		r.setBounds(e+1, e)
		r.trim()
		r.mu.Unlock()
		p = p[n-size:]
	}
	for len(p) > 0 {
		dst, fresh := r.reserve()
		k := copy(dst, p)
		r.stage(k, fresh)
		r.publishLocked(int64(k))
		p = p[k:]
	}
}

// AppendFrom reads once from rd straight into the ring's storage at End()+1 and appends the
// bytes read, saving the copy Append makes. It returns them as a slice of the ring's storage,
// which stays valid and unchanged until the next Append, AppendFrom or Stage (only those
// reuse storage), and rd's error. wmu is not held during the read, so Resize and Close never
// wait for the network. One read takes at most the rest of the current block and at most
// Size bytes. After Close it reads nothing and returns ErrClosed; bytes read by a call that
// Close overtakes are dropped with the ring. Bytes staged by Stage are published with them.
func (r *ring) AppendFrom(rd io.Reader) ([]byte, error) {
	b, err := r.Stage(rd)
	r.wmu.Lock()
	r.publishLocked(r.staged)
	r.wmu.Unlock()
	return b, err
}

// reserve returns where the next bytes go, after End and the bytes staged: the free tail of
// the back block, or the whole of a block to add at the back (fresh: the spare, or a new one)
// when the back block is full or there is none. The caller holds wmu. No reader looks past
// End, so the caller may fill dst without mu, and then calls stage.
func (r *ring) reserve() (dst []byte, fresh *block) {
	if n := r.blocks.n; n > 0 {
		if pos := r.end.Load() + 1 + r.staged - r.base - int64(n-1)*r.bsize; pos < r.bsize {
			return r.blocks.at(n - 1).b[pos:], nil
		}
	}
	fresh, r.spare = r.spare, nil
	if fresh == nil {
		fresh = &block{b: make([]byte, r.bsize)}
		r.mem.Add(r.bsize)
	}
	return fresh.b, fresh
}

// stage adds the k bytes written at the start of the space reserve returned to the bytes
// staged, adding fresh at the back of blocks (when set). No reader sees them until
// publishLocked. The caller holds wmu.
func (r *ring) stage(k int, fresh *block) {
	if k == 0 {
		if fresh != nil {
			r.release(fresh)
		}
		return
	}
	if fresh != nil {
		r.mu.Lock()
		if r.blocks.n == 0 {
			r.base = r.end.Load() + 1 + r.staged
		}
		r.blocks.push(fresh)
		r.mu.Unlock()
	}
	r.staged += int64(k)
}

// publishLocked makes the first k bytes staged visible: it moves End by k and First as far as
// Size requires, lets the blocks below First go and wakes the waiters. The caller holds wmu.
func (r *ring) publishLocked(k int64) {
	if k <= 0 || r.closed.Load() {
		return
	}
	first, end := r.first.Load(), r.end.Load()
	last := end + k
	r.mu.Lock()
	r.setBounds(max(first, last-r.size.Load()+1), last)
	r.trim()
	r.mu.Unlock()
	r.staged -= k
	r.notify()
}

// release keeps blk as the spare, or lets it go when there is one already or a cursor still
// writes from it. The caller holds wmu, and blk is no longer in blocks.
func (r *ring) release(blk *block) {
	if r.spare == nil && blk.pins.Load() == 0 {
		r.spare = blk
	} else {
		r.mem.Add(-r.bsize)
	}
}

// frontFreed reports whether trim, once First is first, takes the front block off blocks.
// The caller holds wmu.
func (r *ring) frontFreed(first int64) bool {
	return r.blocks.n > 0 && r.base+r.bsize <= first
}

// trim takes every block whose bytes are all below First off the front of blocks, keeps one
// as the spare and lets the others go. The caller holds wmu and mu exclusively and has
// already published First, so no reader can start looking at those blocks. A block still
// pinned by a cursor is let go rather than kept: the garbage collector frees it once the
// cursor is done, and until then nothing writes to it.
func (r *ring) trim() {
	first := r.first.Load()
	for r.frontFreed(first) {
		blk := r.blocks.pop()
		r.base += r.bsize
		r.release(blk)
	}
}

// setBounds publishes a new pair. The caller holds wmu and mu exclusively.
func (r *ring) setBounds(first, end int64) {
	r.seq.Add(1)
	r.first.Store(first)
	r.end.Store(end)
	r.seq.Add(1)
}

// notify wakes every Wait in progress.
func (r *ring) notify() {
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
func (r *ring) wakeChan() <-chan struct{} {
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{})
		r.waiting.Store(true)
	}
	return r.wake
}

// copyAt copies len(dst) held bytes starting at offset off into dst. The caller holds mu or
// wmu, which keeps blocks from changing, and has checked that the bytes are held.
func (r *ring) copyAt(dst []byte, off int64) {
	rel := off - r.base
	for len(dst) > 0 {
		k := copy(dst, r.blocks.at(int(rel / r.bsize)).b[rel%r.bsize:])
		dst = dst[k:]
		rel += int64(k)
	}
}

// ReadAt copies the bytes from offset off into p, as many as are held up to len(p), and
// returns how many. At End()+1 it returns 0, nil. A short count with a nil error means the
// rest is not there: not yet, or no longer; the next call tells which. Errors: ErrTrimmed
// for off < First() (bytes evicted, even while being copied, are never returned),
// ErrFuture for off > End()+1, ErrClosed after Close.
func (r *ring) ReadAt(p []byte, off int64) (int, error) {
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
func (r *ring) readChunk(p []byte, off int64) (int, error) {
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
	// Holding mu already keeps the writer from recycling the blocks these bytes came from;
	// the re-check keeps "never return overwritten bytes" true here even if first is ever
	// stored, or a block recycled, outside mu.
	if off < r.first.Load() {
		return 0, ErrTrimmed
	}
	return n, nil
}

// pin appends to bufs the held bytes from off on, at most limit of them, as slices of the
// storage, and to pinned their blocks, each pinned once (see block). The caller unpins them.
// At End()+1 it returns no slices and a nil error; its errors are those of ReadAt.
func (r *ring) pin(off int64, limit int, bufs [][]byte, pinned []*block) ([][]byte, []*block, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed.Load() {
		return bufs, pinned, ErrClosed
	}
	first, end := r.first.Load(), r.end.Load()
	switch {
	case off < first:
		return bufs, pinned, ErrTrimmed
	case off > end+1:
		return bufs, pinned, ErrFuture
	}
	n := min(int64(limit), end+1-off)
	for rel := off - r.base; n > 0; {
		blk := r.blocks.at(int(rel / r.bsize))
		b := blk.b[rel%r.bsize:]
		b = b[:min(int64(len(b)), n)]
		blk.pins.Add(1)
		bufs, pinned = append(bufs, b), append(pinned, blk)
		n -= int64(len(b))
		rel += int64(len(b))
	}
	return bufs, pinned, nil
}

// Wait blocks until byte off exists (End() >= off) and returns nil. It returns ErrTrimmed if
// off < First(), ErrClosed once the ring is closed, and ctx.Err() when ctx ends first. It
// starts no goroutine.
func (r *ring) Wait(ctx context.Context, off int64) error {
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
func (r *ring) First() int64 { return r.first.Load() }

// End returns the offset of the last byte appended (master_repl_offset).
func (r *ring) End() int64 { return r.end.Load() }

// Bounds returns First and End as a consistent pair, without locking.
func (r *ring) Bounds() (first, end int64) {
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
func (r *ring) Histlen() int64 {
	first, end := r.Bounds()
	return end - first + 1
}

// Size returns the configured maximum number of bytes held.
func (r *ring) Size() int64 { return r.size.Load() }

// Mem returns the bytes currently allocated for storage, 0 after Close. Storage comes in
// whole blocks (1 MiB) and one spare block is kept for reuse, so Mem may exceed Size by up
// to about two blocks: it is at most Size rounded up to whole blocks, plus two blocks.
func (r *ring) Mem() int64 { return r.mem.Load() }

// Resize changes the maximum at runtime (CONFIG SET repl-backlog-size), keeping the newest
// bytes: shrinking evicts from the front, growing keeps everything. A size below MinSize is
// raised to MinSize. Safe to call concurrently with Append and readers. No bytes are copied:
// shrinking moves First and lets the blocks below it go, growing only raises the limit.
func (r *ring) Resize(size int64) {
	size = max(size, MinSize)
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Load() {
		return
	}
	r.size.Store(size)
	first, end := r.first.Load(), r.end.Load()
	if f := max(first, end-size+1); f != first {
		r.mu.Lock()
		r.setBounds(f, end)
		r.trim()
		r.mu.Unlock()
	}
}

// Close wakes every waiter with ErrClosed and releases the storage; later reads return
// ErrClosed and Append does nothing. First and End keep their last values. Idempotent; the
// error is always nil (it is there for Backlog).
func (r *ring) Close() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed.Swap(true) {
		return nil
	}
	r.mu.Lock()
	r.blocks = deque{}
	r.spare = nil
	r.mem.Store(0)
	r.mu.Unlock()
	r.notify()
	return nil
}

// Synced returns End(): what a ring holds is as durable as it gets.
func (r *ring) Synced() int64 { return r.End() }

// block is one unit of storage. pins counts the cursors writing straight from it (see
// cursor.WriteTo); while it is above zero the block is never reused.
type block struct {
	b    []byte
	pins atomic.Int32
}

// deque is a FIFO of blocks in a circular slice. Once it has grown to the most blocks the
// ring holds, taking blocks off the front and adding them at the back allocates nothing.
type deque struct {
	s    []*block // len(s) is 0 or a power of two
	head int      // index in s of the front block
	n    int      // number of blocks
}

// at returns the block i places from the front; 0 <= i < n.
func (q *deque) at(i int) *block { return q.s[(q.head+i)&(len(q.s)-1)] }

// push adds b at the back, doubling s when it is full. Only the block slices are moved.
func (q *deque) push(b *block) {
	if q.n == len(q.s) {
		s := make([]*block, max(8, 2*len(q.s)))
		for i := range q.n {
			s[i] = q.at(i)
		}
		q.s, q.head = s, 0
	}
	q.s[(q.head+q.n)&(len(q.s)-1)] = b
	q.n++
}

// popBack removes and returns the back block; n > 0.
func (q *deque) popBack() *block {
	q.n--
	i := (q.head + q.n) & (len(q.s) - 1)
	b := q.s[i]
	q.s[i] = nil
	return b
}

// pop removes and returns the front block; n > 0.
func (q *deque) pop() *block {
	b := q.s[q.head]
	q.s[q.head] = nil
	q.head = (q.head + 1) & (len(q.s) - 1)
	q.n--
	return b
}
