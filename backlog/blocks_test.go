package backlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// memBound is the most storage a ring of the given size may hold, as Mem documents: size
// rounded up to whole blocks, plus two blocks.
func memBound(size, bsize int64) int64 {
	return ((size+bsize-1)/bsize + 2) * bsize
}

// blockAddrs maps the first offset of each block r holds to the block's address.
func blockAddrs(r *ring) map[int64]*byte {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	m := make(map[int64]*byte, r.blocks.n)
	for k := range r.blocks.n {
		m[r.base+int64(k)*r.bsize] = &r.blocks.at(k).b[0]
	}
	return m
}

// checkSameBlocks fails if a block that still holds the offsets it held when addrs was
// taken is now at another address: held bytes were moved.
func checkSameBlocks(t *testing.T, r *ring, addrs map[int64]*byte) {
	t.Helper()
	for off, p := range blockAddrs(r) {
		if q, ok := addrs[off]; ok && p != q {
			t.Fatalf("the block for offsets from %d moved", off)
		}
	}
}

// checkLayout checks the storage invariants documented on ring and the Mem bound.
func checkLayout(t *testing.T, r *ring) {
	t.Helper()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	first, end, b, n := r.first.Load(), r.end.Load(), r.bsize, int64(r.blocks.n)
	if n > 0 {
		if first < r.base || first >= r.base+b {
			t.Fatalf("First %d is not in the front block [%d, %d)", first, r.base, r.base+b)
		}
		if last := r.base + n*b; end+1 > last || end+1 < last-b {
			t.Fatalf("End+1 = %d is not in the back block [%d, %d]", end+1, last-b, last)
		}
	}
	for k := range r.blocks.n {
		if int64(len(r.blocks.at(k).b)) != b {
			t.Fatalf("block %d has %d bytes, want %d", k, len(r.blocks.at(k).b), b)
		}
	}
	spare := int64(0)
	if r.spare != nil {
		spare = 1
	}
	if m := r.Mem(); m != (n+spare)*b {
		t.Fatalf("Mem() = %d, want %d blocks and %d spare of %d bytes", m, n, spare, b)
	}
	if m, lim := r.Mem(), memBound(r.Size(), b); m > lim {
		t.Fatalf("Mem() = %d > %d for Size() = %d", m, lim, r.Size())
	}
}

// TestBlocksModel drives rings of many block sizes with random appends (some longer than the
// ring), resizes and reads, and compares bounds and bytes with a model of the stream.
func TestBlocksModel(t *testing.T) {
	ref := stream(40, 1<<20+17) // byte o is ref[(o-1)%len(ref)]; see cyclicEqual
	for _, bsize := range []int64{1000, 4096, 5003, 64 << 10, 64<<10 + 1, blockSize} {
		t.Run(fmt.Sprint(bsize), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(40, uint64(bsize)))
			for round := range 4 {
				size := MinSize + rng.Int64N(300<<10)
				next := 1 + rng.Int64N(1<<30)
				r := newRingBlocks(size, next, bsize)
				first, end := next, next-1
				for range 300 {
					switch op := rng.IntN(20); {
					case op == 0:
						size = max(MinSize, rng.Int64N(400<<10))
						r.Resize(size)
						first = max(first, end-size+1)
					default:
						n := rng.Int64N(size / 4)
						if op == 1 {
							n = size + rng.Int64N(2*size) // longer than the ring
						}
						p := make([]byte, n)
						for i := range p {
							p[i] = ref[(end+int64(i))%int64(len(ref))]
						}
						r.Append(p)
						end += n
						first = max(first, end-size+1)
					}
					checkBounds(t, r, first, end)
					checkLayout(t, r)
					off := first + rng.Int64N(end-first+2)
					p := make([]byte, rng.IntN(3*chunk))
					k, err := r.ReadAt(p, off)
					if err != nil || int64(k) != min(int64(len(p)), end+1-off) || !cyclicEqual(ref, off, p[:k]) {
						t.Fatalf("round %d: ReadAt(%d bytes, %d) = %d, %v", round, len(p), off, k, err)
					}
					if _, err := r.ReadAt(p[:1], first-1); !errors.Is(err, ErrTrimmed) {
						t.Fatalf("ReadAt(First-1) = %v, want ErrTrimmed", err)
					}
				}
				r.Close()
				if r.Mem() != 0 {
					t.Fatalf("Mem() after Close = %d", r.Mem())
				}
			}
		})
	}
}

// TestRecycle checks that a full ring keeps reusing the same blocks: no block is allocated
// or lost while the size stays the same, and held bytes are never moved.
func TestRecycle(t *testing.T) {
	const size, bsize = 100 << 10, 4096
	ref := stream(41, 2<<20)
	r := newRingBlocks(size, 1, bsize)
	off := 0
	for ; off < size+3*bsize; off += 1000 { // full, and blocks have been recycled
		r.Append(ref[off : off+1000])
	}
	checkLayout(t, r)
	mem := r.Mem()
	known := map[*byte]bool{}
	for _, p := range blockAddrs(r) {
		known[p] = true
	}
	if r.spare != nil {
		known[&r.spare.b[0]] = true
	}
	addrs := blockAddrs(r)
	for ; off+1000 <= len(ref); off += 1000 {
		r.Append(ref[off : off+1000])
		checkSameBlocks(t, r, addrs)
		addrs = blockAddrs(r)
		for _, p := range addrs {
			if !known[p] {
				t.Fatalf("at offset %d a new block was allocated", off)
			}
		}
		if r.Mem() != mem {
			t.Fatalf("Mem() went from %d to %d at a constant size", mem, r.Mem())
		}
	}
	checkLayout(t, r)
	checkHeld(t, r, ref, 1)
}

// TestResizeKeepsBlocks checks that Resize moves no byte: shrinking lets the blocks below
// First go, keeping one spare, and growing changes nothing until bytes arrive.
func TestResizeKeepsBlocks(t *testing.T) {
	const bsize = 16 << 10
	ref := stream(42, 4<<20)
	r := newRingBlocks(1<<20, 1, bsize)
	r.Append(ref[:3<<20])
	checkLayout(t, r)
	addrs := blockAddrs(r)
	r.Resize(MinSize)
	checkBounds(t, r, 3<<20-MinSize+1, 3<<20)
	checkLayout(t, r)
	checkSameBlocks(t, r, addrs)
	if r.Mem() > memBound(MinSize, bsize) {
		t.Fatalf("Mem() = %d after shrinking to MinSize", r.Mem())
	}
	checkHeld(t, r, ref, 1)

	mem := r.Mem()
	addrs = blockAddrs(r)
	r.Resize(2 << 20)
	if r.Mem() != mem {
		t.Fatalf("Mem() went from %d to %d on growing", mem, r.Mem())
	}
	checkSameBlocks(t, r, addrs)
	r.Append(ref[3<<20:])
	checkBounds(t, r, 3<<20-MinSize+1, 4<<20)
	checkLayout(t, r)
	checkSameBlocks(t, r, addrs)
	checkHeld(t, r, ref, 1)
}

// TestAppendRecyclesWithoutAllocating checks that a full ring's Append allocates nothing
// across many block changes, for several block sizes.
func TestAppendRecyclesWithoutAllocating(t *testing.T) {
	for _, tc := range []struct{ size, bsize, piece int64 }{
		{MinSize, blockSize, 64<<10 + 3},
		{MinSize, 4096, 1000},
		{MinSize, 5003, 3000},
		{1 << 20, 64 << 10, 10_000},
	} {
		r := newRingBlocks(tc.size, 1, tc.bsize)
		p := make([]byte, tc.piece)
		for range (tc.size + 3*tc.bsize) / tc.piece { // full, and blocks have been recycled
			r.Append(p)
		}
		base := r.base
		// AllocsPerRun counts every malloc in the process, so a stray one from the runtime
		// must not fail the test: 20 runs of 100 Appends average it away (integer division),
		// while one allocation per Append would still read as 100.
		allocs := testing.AllocsPerRun(20, func() {
			for range 100 {
				r.Append(p)
			}
		})
		if allocs != 0 {
			t.Errorf("size %d, blocks of %d: 100 Appends allocated %v times, want 0",
				tc.size, tc.bsize, allocs)
		}
		if recycled := (r.base - base) / tc.bsize; recycled < 10 {
			t.Errorf("size %d, blocks of %d: only %d blocks recycled", tc.size, tc.bsize, recycled)
		}
	}
}
