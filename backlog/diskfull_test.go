package backlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smallDisk simulates a file system of quota bytes under a disk backlog's directory: writes
// and creations that would take the files past it fail with ENOSPC after writing what fits,
// as a real full disk does, and statfs reports what is left.
type smallDisk struct {
	t     *testing.T
	dir   string // the backlog's directory (<Dir>/backlog)
	mu    sync.Mutex
	quota int64
	fulls int // ENOSPC returned
}

func (sd *smallDisk) used() int64 {
	ents, err := os.ReadDir(sd.dir)
	if err != nil {
		sd.t.Errorf("smallDisk: %v", err)
		return 0
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func (sd *smallDisk) fault(op faultOp, n int) (int, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	need := int64(n)
	switch op {
	case opWriteData, opWriteIndex, opState:
	case opCreate:
		need = headerSize
	default:
		return n, nil
	}
	if free := sd.quota - sd.used(); need > free {
		sd.fulls++
		return int(max(free, 0)), syscall.ENOSPC
	}
	return n, nil
}

func (sd *smallDisk) statfs(string) (int64, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return max(sd.quota-sd.used(), 0), nil
}

func (sd *smallDisk) setQuota(q int64) {
	sd.mu.Lock()
	sd.quota = q
	sd.mu.Unlock()
}

// openSmall opens a disk-mode Store on a simulated disk of quota bytes and starts a history
// at 1 with retention size.
func openSmall(t *testing.T, l *testLog, quota, size int64) (*Store, *disk, *smallDisk) {
	t.Helper()
	dir := t.TempDir()
	sd := &smallDisk{t: t, dir: filepath.Join(dir, "backlog"), quota: quota}
	opt := Options{Mode: Disk, Dir: dir, Size: size, RAMTail: MinSize, Fsync: FsyncNo,
		Logf: l.logf, tick: time.Hour, statfs: sd.statfs}
	s, _, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := faultFunc(sd.fault)
	s.dk.faults.Store(&f)
	b, err := s.Start(testReplid, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s, b.(*disk), sd
}

// TestDiskFullShrinks: retention asks for 1 MiB on a 200 KiB disk. The stream goes on: the
// oldest segments make room, segments are small enough that there always is an older one,
// a cursor that keeps up reads every byte, one left on a deleted segment gets ErrTrimmed,
// and the event is counted and logged.
func TestDiskFullShrinks(t *testing.T) {
	l := newTestLog(t)
	const quota = 200 << 10
	s, d, sd := openSmall(t, l, quota, 1<<20)
	if lim := d.segLimit(); lim > quota/8 || lim < minSegmentSize {
		t.Fatalf("segLimit = %d on a %d-byte disk", lim, quota)
	}
	ref := stream(21, 1<<20)
	ctx := context.Background()
	follow, _ := d.newCursor(1)
	lag, _ := d.newCursor(1)
	var got []byte
	buf := make([]byte, 5000)
	holding := false
	rng := newPieces(5)
	for off := 0; off < len(ref); {
		n := min(len(ref)-off, rng.next(4000))
		if err := d.Append(ref[off : off+n]); err != nil {
			t.Fatalf("Append at %d (disk full %d times): %v", off, sd.fulls, err)
		}
		off += n
		for follow.Offset() <= d.End() {
			k, err := follow.Read(ctx, buf)
			if err != nil {
				t.Fatalf("following cursor at %d: %v", follow.Offset(), err)
			}
			got = append(got, buf[:k]...)
		}
		if !holding && d.First() == 1 && d.ring.First() > 1 {
			// The first bytes are only in the files now: reading them, the lagging cursor
			// takes segment 1 and keeps it open.
			if _, err := lag.Read(ctx, buf[:100]); err != nil {
				t.Fatal(err)
			}
			holding = lag.ref.s != nil
		}
	}
	if !holding {
		t.Fatal("the lagging cursor never held the first segment open")
	}
	if !bytes.Equal(got, ref) {
		t.Fatal("the following cursor read other bytes than were appended")
	}
	if _, err := lag.Read(ctx, buf); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("cursor on a deleted segment: %v, want ErrTrimmed", err)
	}
	lag.Close()
	st := s.Stats()
	if st.End != int64(len(ref)) || st.First <= 1 || st.DiskFullEvents == 0 || sd.fulls == 0 ||
		st.EffectiveSize <= 0 || st.EffectiveSize > quota || st.LastErr != nil {
		t.Fatalf("Stats = %+v (ENOSPC %d times)", st, sd.fulls)
	}
	if st.Bytes < quota/2 {
		t.Fatalf("only %d bytes held on a %d-byte disk", st.Bytes, quota)
	}
	if l.find("Disk full: dropped ") == "" || l.find("the effective backlog is now") == "" {
		t.Fatal("no disk-full warning")
	}
	checkDisk(t, d, ref, 1)

	// Nothing was damaged: a restart recovers the same window.
	first := d.First()
	s.Close()
	s2, rec, err := Open(Options{Mode: Disk, Dir: filepath.Dir(sd.dir), Size: 1 << 20, Logf: l.logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !rec.History || rec.First != first || rec.End != int64(len(ref)) || rec.Dropped != 0 {
		t.Fatalf("Recovery = %+v, want %d-%d", rec, first, len(ref))
	}
	checkDisk(t, rec.Backlog.(*disk), ref, 1)
}

// TestDiskFullNothingToDrop: when the disk fills inside the only segment, the append fails
// with ErrStorage wrapping ENOSPC, moves nothing, and is retried once there is room.
func TestDiskFullNothingToDrop(t *testing.T) {
	l := newTestLog(t)
	s, d, sd := openSmall(t, l, 1<<30, 1<<20) // segments of Size/8 = 128 KiB
	ref := stream(22, 100<<10)
	appendPieces(t, d, ref[:60<<10], 1, 3000)
	sd.setQuota(sd.used() + 1000)
	end := d.End()
	err := d.Append(ref[60<<10:])
	if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) || d.End() != end || d.First() != 1 {
		t.Fatalf("Append on a full disk = %v, End %d (was %d), First %d", err, d.End(), end, d.First())
	}
	if st := s.Stats(); st.DiskFullEvents != 0 || !errors.Is(st.LastErr, syscall.ENOSPC) || st.EffectiveSize != st.Size {
		t.Fatalf("Stats = %+v", st)
	}
	sd.setQuota(1 << 30)
	if err := d.Append(ref[60<<10:]); err != nil {
		t.Fatalf("retry: %v", err)
	}
	checkDisk(t, d, ref, 1)
	if st := s.Stats(); st.LastErr != nil {
		t.Fatalf("LastErr after the retry = %v", st.LastErr)
	}
}

// failN fails the first n calls of op with err (after writing nothing).
func failN(d *disk, op faultOp, n int, err error) *int {
	calls := new(int)
	var mu sync.Mutex
	f := faultFunc(func(o faultOp, k int) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if o != op || *calls >= n {
			return k, nil
		}
		*calls++
		return 0, err
	})
	d.faults.Store(&f)
	return calls
}

// TestDiskFullAtRotation: a full disk at the creation of the next segment deletes the
// oldest segments, one per failure, and the seal and the new segment go through.
func TestDiskFullAtRotation(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	d := newHistory(t, t.TempDir(), opt, 1)
	ref := stream(23, 64<<10)
	stored := 40 << 10
	appendPieces(t, d, ref[:stored], 1, 1000)
	for d.w.dataSize < d.segLimit() {
		if err := d.Append(ref[stored : stored+500]); err != nil {
			t.Fatal(err)
		}
		stored += 500
	}
	if d.Segments() < 4 {
		t.Fatalf("%d segments", d.Segments())
	}
	third := d.segs[2].start
	calls := failN(d, opCreate, 2, syscall.ENOSPC)
	if err := d.Append(ref[stored : stored+500]); err != nil {
		t.Fatalf("Append across a rotation on a full disk: %v", err)
	}
	stored += 500
	if *calls != 2 || d.First() != third || d.opt.full.events.Load() != 1 {
		t.Fatalf("after 2 ENOSPC at create: %d calls, First %d (want %d), %d events", *calls, d.First(), third, d.opt.full.events.Load())
	}
	appendPieces(t, d, ref[stored:], 2, 1000)
	d, rec := reopen(t, d, opt)
	if rec.First != third || rec.End != int64(len(ref)) {
		t.Fatalf("Recovery = %+v", rec)
	}
	checkDisk(t, d, ref, 1)
}

// TestDiskFullState: the state file of a failover makes room on a full disk too; any other
// error keeps the old state and every segment.
func TestDiskFullState(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	d := newHistory(t, t.TempDir(), opt, 1)
	ref := stream(24, 40<<10)
	appendPieces(t, d, ref, 1, 1000)
	old := d.State()
	segs := d.Segments()
	failN(d, opState, 1, syscall.EIO)
	if err := d.SetState(State{Replid: "x", Epoch: old.Epoch}); !errors.Is(err, syscall.EIO) || d.State() != old || d.Segments() != segs {
		t.Fatalf("SetState with EIO = %v, state %+v, %d segments (were %d)", err, d.State(), d.Segments(), segs)
	}
	second := d.segs[1].start
	failN(d, opState, 1, syscall.EDQUOT)
	st := State{Replid: "y", Replid2: old.Replid, SecondOff: 5, Epoch: old.Epoch}
	if err := d.SetState(st); err != nil || d.State() != st || d.First() != second {
		t.Fatalf("SetState over quota = %v, state %+v, First %d (want %d)", err, d.State(), d.First(), second)
	}
	d, rec := reopen(t, d, opt)
	if rec.State != st || rec.First != second {
		t.Fatalf("Recovery = %+v", rec)
	}
	checkDisk(t, d, ref, 1)
}

// TestDiskIOErrorKeepsSegments: an I/O error is not a full disk: nothing is deleted, the
// append fails with ErrStorage and is retried, and readers get what is stored.
func TestDiskIOErrorKeepsSegments(t *testing.T) {
	l := newTestLog(t)
	d := newHistory(t, t.TempDir(), testOpts(l), 1)
	ref := stream(25, 50<<10)
	appendPieces(t, d, ref[:40<<10], 1, 1000)
	in := inject(d)
	in.set(opWriteData, syscall.EIO, 10)
	first, end := d.Bounds()
	if err := d.Append(ref[40<<10:]); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append with EIO = %v", err)
	}
	if f, e := d.Bounds(); f != first || e != end || d.opt.full.events.Load() != 0 {
		t.Fatalf("Bounds %d-%d after EIO, were %d-%d", f, e, first, end)
	}
	checkDisk(t, d, ref[:40<<10], 1)
	in.clear()
	if err := d.Append(ref[40<<10:]); err != nil {
		t.Fatal(err)
	}
	checkDisk(t, d, ref, 1)
}

func TestSegLimit(t *testing.T) {
	d := &disk{opt: Options{SegmentSize: DefaultSegmentSize}}
	for _, c := range []struct{ size, room, want int64 }{
		{1 << 30, 0, DefaultSegmentSize},       // large Size, room unknown
		{128 << 20, 0, 16 << 20},               // Size/8
		{1 << 30, 96 << 20, 12 << 20},          // room/8: 1 GB asked on a 96 MB disk
		{1 << 30, 48 << 20, 6 << 20},           // the 48 MB disk that filled in one segment
		{MinSize, 1 << 40, minSegmentSize},     // floor
		{1 << 30, 1 << 40, DefaultSegmentSize}, // a big disk changes nothing
	} {
		d.size.Store(c.size)
		d.space.Store(c.room)
		if got := d.segLimit(); got != c.want {
			t.Errorf("segLimit(size %d, room %d) = %d, want %d", c.size, c.room, got, c.want)
		}
	}
}

// pieces gives piece sizes from a fixed sequence.
type pieces struct{ x uint64 }

func newPieces(seed uint64) *pieces { return &pieces{seed} }

func (p *pieces) next(maxPiece int) int {
	p.x = p.x*6364136223846793005 + 1442695040888963407
	return 1 + int(p.x>>33)%maxPiece
}

// genAt fills p with the generated stream's bytes from offset off: byte o is byte o%8 of a
// 64-bit mix of o/8, so a byte from any other offset shows.
func genAt(p []byte, off int64, scratch []byte) []byte {
	base := off &^ 7
	need := int(off-base) + len(p) + 8
	if cap(scratch) < need {
		scratch = make([]byte, need)
	}
	scratch = scratch[:need]
	for i := 0; i+8 <= need; i += 8 {
		x := uint64(base+int64(i)) >> 3
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		binary.LittleEndian.PutUint64(scratch[i:], x)
	}
	copy(p, scratch[off-base:])
	return scratch
}

// genReader reads the generated stream from offset off.
type genReader struct {
	off     int64
	scratch []byte
}

func (g *genReader) Read(p []byte) (int, error) {
	g.scratch = genAt(p, g.off, g.scratch)
	g.off += int64(len(p))
	return len(p), nil
}

// TestDiskFullTmpfs is the case of issue 13: a 1 GB backlog asked on a 96 MB tmpfs. 400 MB
// go through Stage and Publish with a cursor following: the stream never stops, every byte
// read is the byte written, and the window is what the disk holds.
func TestDiskFullTmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 400 MB")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 96 MB tmpfs to fill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	l := newTestLog(t)
	s, _, err := Open(Options{Mode: Disk, Dir: dir, Size: 1 << 30, Logf: l.logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // before the umount
	const total = 400 << 20
	const next = 1001
	b, err := s.Start(testReplid, next)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		read, restarts int64
		err            error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		c, err := b.Cursor(next)
		if err != nil {
			done <- result{err: err}
			return
		}
		buf := make([]byte, 256<<10)
		want := make([]byte, len(buf))
		var scratch []byte
		for c.Offset() < next+total {
			off := c.Offset()
			n, err := c.Read(ctx, buf)
			if errors.Is(err, ErrTrimmed) {
				// Fell behind the window: start again from what is held, as a replica's
				// full sync would.
				c.Close()
				r.restarts++
				if c, err = b.Cursor(b.First()); err == nil {
					continue
				}
				c = nil
			}
			if err != nil {
				r.err = err
				break
			}
			scratch = genAt(want[:n], off, scratch)
			if !bytes.Equal(buf[:n], want[:n]) {
				r.err = fmt.Errorf("wrong bytes at offset %d", off)
				break
			}
			r.read += int64(n)
		}
		if c != nil {
			c.Close()
		}
		done <- r
	}()

	src := &genReader{off: next}
	for b.End() < next+total-1 {
		if _, err := b.Stage(&limited{src, next + total - src.off}); err != nil {
			t.Fatalf("Stage at %d: %v", b.End()+1, err)
		}
		if _, err := b.Publish(b.End() + b.Staged()); err != nil {
			t.Fatalf("Publish at %d (disk full %d times): %v", b.End()+1, s.Stats().DiskFullEvents, err)
		}
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the reader did not reach the end")
	}
	if r.err != nil {
		t.Fatalf("reader: %v", r.err)
	}
	st := s.Stats()
	t.Logf("Stats: %+v; reader read %d bytes, restarted %d times", st, r.read, r.restarts)
	if st.End != next+total-1 || st.First <= next || st.DiskFullEvents == 0 || st.LastErr != nil ||
		st.EffectiveSize <= 0 || st.EffectiveSize > 96<<20 {
		t.Fatalf("Stats = %+v", st)
	}
	if l.find("Disk full: ") == "" {
		t.Fatal("no disk-full warning")
	}
}

// limited hands out at most n bytes of g per read, so the writer stops at the total.
type limited struct {
	g *genReader
	n int64
}

func (l *limited) Read(p []byte) (int, error) {
	return l.g.Read(p[:min(int64(len(p)), l.n)])
}

// TestRelease: Release gives up the oldest segment when it lies wholly before an offset,
// never the newest, and counts a disk-full event.
func TestRelease(t *testing.T) {
	s, _, err := Open(Options{Mode: Disk, Dir: t.TempDir(), Size: 64 << 20, SegmentSize: minSegmentSize})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Release(1 << 40) {
		t.Fatal("released a segment with no history")
	}
	b, err := s.Start("8de1787ba490483314a4d30f1c628bc5025eb761", 1)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, minSegmentSize)
	for range 4 {
		if err := b.(*disk).Append(chunk); err != nil {
			t.Fatal(err)
		}
	}
	segs := s.Stats().Segments
	if segs < 3 {
		t.Fatalf("%d segments, want several", segs)
	}
	// The first segment holds offsets 1 to minSegmentSize.
	if s.Release(minSegmentSize) || b.First() != 1 {
		t.Fatalf("released a segment that reaches the offset kept (first %d)", b.First())
	}
	if !s.Release(minSegmentSize+1) || b.First() != minSegmentSize+1 {
		t.Fatalf("first %d after a release", b.First())
	}
	n := 1
	for s.Release(1 << 40) {
		n++
	}
	if n != segs-1 || s.Stats().Segments != 1 {
		t.Fatalf("released %d, %d segments left, want only the newest", n, s.Stats().Segments)
	}
	if st := s.Stats(); st.DiskFullEvents != int64(n) || st.EffectiveSize != st.Bytes {
		t.Fatalf("stats %+v", st)
	}
}
