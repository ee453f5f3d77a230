package backlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testLog collects a disk's log lines so that tests can look for them.
type testLog struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func newTestLog(t *testing.T) *testLog { return &testLog{t: t} }

func (l *testLog) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
	l.t.Log(s)
}

// find returns the first line containing sub, or "".
func (l *testLog) find(sub string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return s
		}
	}
	return ""
}

// testOpts are small segments and a small RAM tail, so that a few hundred KiB cross many
// segments and most reads come from the files. The background goroutine is kept quiet:
// tests call syncOnce and expire themselves.
func testOpts(l *testLog) Options {
	return Options{Size: 4 << 20, SegmentSize: 8 << 10, RAMTail: MinSize, Fsync: FsyncNo, Logf: l.logf, tick: time.Hour}
}

var testReplid = strings.Repeat("ab", 20)

// newHistory opens dir and starts a history at next with epoch 1. The disk is closed when
// the test ends (closing twice is fine).
func newHistory(t *testing.T, dir string, opt Options, next int64) *disk {
	t.Helper()
	d, rec, err := openDir(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	if rec.History {
		t.Fatalf("fresh directory: Recovery = %+v", rec)
	}
	d, err = d.Reset(State{Replid: testReplid, Replid2: strings.Repeat("0", 40), SecondOff: -1, Epoch: 1}, next)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// openDir is openDisk of dir.
func openDir(dir string, opt Options) (*disk, Recovery, error) {
	opt.Dir = dir
	return openDisk(opt)
}

// reopen closes d and opens its directory again.
func reopen(t *testing.T, d *disk, opt Options) (*disk, Recovery) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	nd, rec, err := openDir(d.opt.Dir, opt)
	if err != nil {
		t.Fatalf("openDisk: %v", err)
	}
	t.Cleanup(func() { nd.Close() })
	return nd, rec
}

// appendPieces appends src in pieces of random sizes up to maxPiece.
func appendPieces(t *testing.T, d *disk, src []byte, seed uint64, maxPiece int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	for len(src) > 0 {
		n := min(len(src), 1+rng.IntN(maxPiece))
		if err := d.Append(src[:n]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		src = src[n:]
	}
}

// checkDisk reads every held byte of d with a cursor (files, then RAM) and with ReadAt at
// scattered offsets, and compares with ref, where ref[i] is the byte at offset base+i.
func checkDisk(t *testing.T, d *disk, ref []byte, base int64) {
	t.Helper()
	first, end := d.Bounds()
	if first < base || end-base+1 > int64(len(ref)) {
		t.Fatalf("Bounds() = (%d, %d), reference covers %d-%d", first, end, base, base+int64(len(ref))-1)
	}
	got := readDisk(t, d, first, end)
	if !bytes.Equal(got, ref[first-base:end-base+1]) {
		t.Fatalf("bytes %d-%d differ from the reference", first, end)
	}
	p := make([]byte, 5000)
	for off := first; off <= end; off += 997 {
		n, err := d.ReadAt(p, off)
		if err != nil || n == 0 {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
		if !bytes.Equal(p[:n], ref[off-base:off-base+int64(n)]) {
			t.Fatalf("ReadAt(%d): wrong bytes", off)
		}
	}
}

// readDisk returns the bytes first..end read with a cursor in reads of varying sizes.
func readDisk(t *testing.T, d *disk, first, end int64) []byte {
	t.Helper()
	c, err := d.newCursor(first)
	if err != nil {
		t.Fatalf("newCursor(%d): %v", first, err)
	}
	defer c.Close()
	out := make([]byte, 0, end-first+1)
	p := make([]byte, 9000)
	for i := 1; c.Offset() <= end; i++ {
		n, err := c.Read(context.Background(), p[:min(len(p), 1+i*379%len(p), int(end-c.Offset()+1))])
		if err != nil {
			t.Fatalf("Read at %d: %v", c.Offset(), err)
		}
		out = append(out, p[:n]...)
	}
	return out
}

// segFiles returns the segment files in d's directory, sorted.
func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "backlog"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext == dataExt || ext == idxExt {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestDiskNoHistory(t *testing.T) {
	l := newTestLog(t)
	d, rec, err := openDir(t.TempDir(), testOpts(l))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if rec.History || rec.HasState || rec.Segments != 0 || rec.First != 1 || rec.End != 0 {
		t.Fatalf("Recovery = %+v", rec)
	}
	if err := d.Append([]byte("x")); !errors.Is(err, errNoHistory) {
		t.Fatalf("Append = %v, want errNoHistory", err)
	}
	if _, err := d.AppendFrom(strings.NewReader("x")); !errors.Is(err, errNoHistory) {
		t.Fatalf("AppendFrom = %v, want errNoHistory", err)
	}
	if _, _, err := openDir(t.TempDir(), Options{}); err == nil {
		t.Fatal("openDisk without a size succeeded")
	}
}

// TestDiskSequence appends across many segments, reads everything back, and does it again
// across two restarts, appending in between: the bytes at every offset stay the same.
func TestDiskSequence(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	dir := t.TempDir()
	d := newHistory(t, dir, opt, 1001)
	ref := stream(1, 3<<20)
	// The first part has an append longer than maxRecord, stored as several records.
	big := ref[:maxRecord+maxRecord/2]
	if err := d.Append(big); err != nil {
		t.Fatal(err)
	}
	n1 := int64(len(big) + 600<<10)
	appendPieces(t, d, ref[len(big):n1], 1, 5000)
	if f, e := d.Bounds(); f != 1001 || e != 1000+n1 {
		t.Fatalf("Bounds() = (%d, %d), want (1001, %d)", f, e, 1000+n1)
	}
	checkDisk(t, d, ref, 1001)
	segs := d.Segments()
	if segs < 10 {
		t.Fatalf("only %d segments", segs)
	}

	d, rec := reopen(t, d, opt)
	if !rec.History || rec.First != 1001 || rec.End != 1000+n1 || rec.Segments != segs || rec.Dropped != 0 || rec.Discarded != 0 {
		t.Fatalf("Recovery = %+v, want offsets 1001-%d in %d segments", rec, 1000+n1, segs)
	}
	if rec.State.Replid != testReplid || rec.State.Epoch != 1 || rec.EpochReplid != testReplid {
		t.Fatalf("Recovery state = %+v", rec)
	}
	if d.Synced() != rec.End {
		t.Fatalf("Synced() = %d after recovery, want %d", d.Synced(), rec.End)
	}
	if n := len(segFiles(t, dir)); n != 2*segs {
		t.Fatalf("%d files for %d segments", n, segs)
	}
	checkDisk(t, d, ref, 1001)
	appendPieces(t, d, ref[n1:], 2, 3000)
	checkDisk(t, d, ref, 1001)

	d, rec = reopen(t, d, opt)
	if rec.End != 1000+int64(len(ref)) || rec.Dropped != 0 {
		t.Fatalf("Recovery = %+v, want End %d", rec, 1000+len(ref))
	}
	checkDisk(t, d, ref, 1001)
}

// buildTorn writes a history of 1000-byte records whose newest segment holds at least a
// few, closes it and returns the reference, the directory and the newest segment's path
// (without extension) and start.
func buildTorn(t *testing.T, opt Options) (ref []byte, dir, newest string, start int64) {
	t.Helper()
	dir = t.TempDir()
	d := newHistory(t, dir, opt, 1)
	ref = stream(3, 40*1000)
	for i := 0; i < len(ref); i += 1000 {
		if err := d.Append(ref[i : i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	starts := segStarts(t, dir)
	start = starts[len(starts)-1]
	return ref, dir, filepath.Join(dir, "backlog", segName(start)), start
}

// segStarts returns the starts of the segments in dir, in order.
func segStarts(t *testing.T, dir string) []int64 {
	t.Helper()
	var starts []int64
	for _, name := range segFiles(t, dir) {
		if strings.HasSuffix(name, idxExt) {
			s, err := strconv.ParseInt(strings.TrimSuffix(name, idxExt), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			starts = append(starts, s)
		}
	}
	return starts
}

// TestDiskTornTail damages the newest segment in the ways a crash can (data or index cut
// mid-record or mid-entry, a torn header, zeros past the end, a flipped byte) and checks that
// recovery keeps exactly the whole valid records before the damage, logs what it dropped,
// and that appending and recovering again work from there.
func TestDiskTornTail(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	// Segments of 8 KiB: 1000-byte records, the newest segment holds records from start on.
	type damage struct {
		name string
		do   func(t *testing.T, path string, start int64, end int64)
		// wantEnd and wantDropped as functions of the newest segment's start and the old end.
		wantEnd     func(start, end int64) int64
		wantDropped int64
	}
	cut := func(ext string, by int64) func(t *testing.T, path string, start, end int64) {
		return func(t *testing.T, path string, start, end int64) {
			if err := os.Truncate(path+ext, fileSize(t, path+ext)-by); err != nil {
				t.Fatal(err)
			}
		}
	}
	flip := func(at func(start, end int64) int64) func(t *testing.T, path string, start, end int64) {
		return func(t *testing.T, path string, start, end int64) {
			f, err := os.OpenFile(path+dataExt, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := []byte{0}
			pos := at(start, end) - start
			f.ReadAt(b, pos)
			b[0] ^= 0x40
			f.WriteAt(b, pos)
		}
	}
	lastRecord := func(start, end int64) int64 { return end - 1000 }
	for _, tc := range []damage{
		{"data-mid-record", cut(dataExt, 500), lastRecord, 500},
		{"data-at-record-boundary", cut(dataExt, 1000), lastRecord, 0},
		{"index-mid-entry", cut(idxExt, 3), lastRecord, 1000},
		{"index-whole-entry", cut(idxExt, entrySize), lastRecord, 1000},
		{"zeros-past-end", func(t *testing.T, path string, start, end int64) {
			if err := os.Truncate(path+dataExt, fileSize(t, path+dataExt)+4096); err != nil {
				t.Fatal(err)
			}
		}, func(start, end int64) int64 { return end }, 4096},
		{"flipped-byte-last-record", flip(func(start, end int64) int64 { return end - 10 }), lastRecord, 1000},
		{"flipped-byte-second-record", flip(func(start, end int64) int64 { return start + 1500 }),
			func(start, end int64) int64 { return start + 999 }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, dir, path, start := buildTorn(t, opt)
			end := int64(len(ref))
			if end-start+1 < 3000 {
				t.Fatalf("newest segment holds %d bytes; the test needs a few records", end-start+1)
			}
			tc.do(t, path, start, end)
			l := newTestLog(t)
			o := opt
			o.Logf = l.logf
			d, rec, err := openDir(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			wantEnd := tc.wantEnd(start, end)
			wantDropped := tc.wantDropped
			if wantDropped < 0 {
				wantDropped = end - wantEnd
			}
			if rec.End != wantEnd || d.End() != wantEnd || rec.Dropped != wantDropped || !rec.History || rec.First != 1 {
				t.Fatalf("Recovery = %+v, want End %d, Dropped %d", rec, wantEnd, wantDropped)
			}
			if line := l.find("torn tail"); line == "" || !strings.Contains(line, fmt.Sprintf("dropped %d bytes", wantDropped)) {
				t.Fatalf("no log line saying %d bytes were dropped; got %q", wantDropped, line)
			}
			checkDisk(t, d, ref, 1)
			// The stream resumes from the recovered end: append the dropped bytes again.
			if err := d.Append(ref[wantEnd:]); err != nil {
				t.Fatal(err)
			}
			d, rec = reopen(t, d, o)
			if rec.End != end || rec.Dropped != 0 {
				t.Fatalf("after re-append, Recovery = %+v, want End %d", rec, end)
			}
			checkDisk(t, d, ref, 1)
		})
	}

	t.Run("torn-header", func(t *testing.T) {
		// A crash while the newest segment was being created: its header is torn, so it is
		// deleted, and the previous segment (sealed) ends the history.
		ref, dir, path, start := buildTorn(t, opt)
		if err := os.Truncate(path+idxExt, 40); err != nil {
			t.Fatal(err)
		}
		d, rec, err := openDir(dir, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if rec.End != start-1 || rec.Discarded != 1 || !rec.History {
			t.Fatalf("Recovery = %+v, want End %d with one segment discarded", rec, start-1)
		}
		checkDisk(t, d, ref, 1)
		if err := d.Append(ref[start-1:]); err != nil {
			t.Fatal(err)
		}
		d, rec = reopen(t, d, opt)
		if rec.End != int64(len(ref)) {
			t.Fatalf("Recovery = %+v", rec)
		}
		checkDisk(t, d, ref, 1)
	})

	t.Run("unsealed-middle", func(t *testing.T) {
		// A middle segment lost only its trailer: it is checked in full, found whole, kept,
		// and sealed again.
		ref, dir, _, _ := buildTorn(t, opt)
		starts := segStarts(t, dir)
		mid := filepath.Join(dir, "backlog", segName(starts[len(starts)/2]))
		size := fileSize(t, mid+idxExt)
		if err := os.Truncate(mid+idxExt, size-trailerSize); err != nil {
			t.Fatal(err)
		}
		d, rec, err := openDir(dir, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if rec.First != 1 || rec.End != int64(len(ref)) || rec.Discarded != 0 || rec.Segments != len(starts) {
			t.Fatalf("Recovery = %+v", rec)
		}
		if got := fileSize(t, mid+idxExt); got != size {
			t.Fatalf("index of the healed segment is %d bytes, want %d (sealed again)", got, size)
		}
		checkDisk(t, d, ref, 1)
	})

	t.Run("gap", func(t *testing.T) {
		// A middle segment loses its tail (FsyncNo and a machine crash): the history before
		// the hole is deleted, the newest contiguous run is kept.
		ref, dir, _, _ := buildTorn(t, opt)
		starts := segStarts(t, dir)
		midStart := starts[len(starts)/2]
		mid := filepath.Join(dir, "backlog", segName(midStart))
		if err := os.Truncate(mid+idxExt, fileSize(t, mid+idxExt)-trailerSize-3); err != nil {
			t.Fatal(err)
		}
		d, rec, err := openDir(dir, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if rec.End != int64(len(ref)) || rec.First <= midStart || rec.Discarded == 0 {
			t.Fatalf("Recovery = %+v, want the run after segment %d", rec, midStart)
		}
		checkDisk(t, d, ref, 1)
	})
}

// TestDiskRetentionSize fills a small disk backlog many times over: whole segments are
// deleted so that the held bytes stay under the size, First moves to a segment start, and
// cursors behind it get ErrTrimmed and never a wrong byte.
func TestDiskRetentionSize(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	opt.Size = 64 << 10 // segments of Size/4 = 16 KiB
	dir := t.TempDir()
	d := newHistory(t, dir, opt, 1)
	early, err := d.newCursor(1)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	if _, err := d.ReadAt(p, 1); err != nil {
		t.Fatal(err)
	}
	ref := stream(4, 1<<20)
	appendPieces(t, d, ref[:100], 1, 100)
	if n, err := early.Read(context.Background(), p[:10]); n != 10 || err != nil {
		t.Fatal(n, err)
	}
	appendPieces(t, d, ref[100:], 2, 3000)

	first, end := d.Bounds()
	if end != int64(len(ref)) || end-first+1 > opt.Size || end-first+1 < opt.Size-d.segLimit()-3000 {
		t.Fatalf("Bounds() = (%d, %d): %d bytes held, size %d, segments of %d", first, end, end-first+1, opt.Size, d.segLimit())
	}
	files := segFiles(t, dir)
	if len(files) != 2*d.Segments() || files[0] != segName(first)+dataExt {
		t.Fatalf("files %v, %d segments, First %d", files, d.Segments(), first)
	}
	if _, err := early.Read(context.Background(), p); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("Read behind First = %v, want ErrTrimmed", err)
	}
	if _, err := early.WriteTo(context.Background(), io.Discard, 100); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("WriteTo behind First = %v, want ErrTrimmed", err)
	}
	if err := early.Wait(context.Background()); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("Wait behind First = %v, want ErrTrimmed", err)
	}
	if _, err := d.newCursor(first - 1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("newCursor(First-1) = %v, want ErrTrimmed", err)
	}
	if _, err := d.ReadAt(p, first-1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("ReadAt(First-1) = %v, want ErrTrimmed", err)
	}
	if err := d.Wait(context.Background(), first-1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("Wait(First-1) = %v, want ErrTrimmed", err)
	}
	checkDisk(t, d, ref, 1)

	// A cursor reading a segment when it is deleted finishes the bytes it has, correctly,
	// and is trimmed at its next read.
	c, err := d.newCursor(first)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(context.Background(), p)
	if err != nil || !bytes.Equal(p[:n], ref[first-1:first-1+int64(n)]) {
		t.Fatalf("Read = %d, %v (or wrong bytes)", n, err)
	}
	appendPieces(t, d, stream(5, int(opt.Size)), 3, 3000)
	if _, err := c.Read(context.Background(), p); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("Read after its segment went = %v, want ErrTrimmed", err)
	}

	// Shrinking deletes at once; the RAM tail is never larger than the size.
	d.Resize(MinSize)
	if h := d.Histlen(); h > MinSize || d.ring.Size() != MinSize {
		t.Fatalf("after Resize(MinSize): Histlen %d, RAM tail %d", h, d.ring.Size())
	}
	d, rec := reopen(t, d, opt)
	if rec.First != d.First() || rec.End != d.End() || !rec.History {
		t.Fatalf("Recovery = %+v", rec)
	}
}

// TestDiskRetentionTTL deletes sealed segments older than the TTL, never the newest, also
// after a restart (ages then come from the files' modification times).
func TestDiskRetentionTTL(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	opt.TTL = time.Hour
	d := newHistory(t, t.TempDir(), opt, 1)
	ref := stream(6, 50<<10)
	appendPieces(t, d, ref, 1, 2000)
	segs := d.Segments()
	if segs < 4 {
		t.Fatalf("%d segments", segs)
	}
	c, _ := d.newCursor(1)
	d.expire(time.Now())
	if d.Segments() != segs || d.First() != 1 {
		t.Fatalf("segments younger than the TTL were deleted: %d left, First %d", d.Segments(), d.First())
	}
	d, rec := reopen(t, d, opt)
	if rec.Segments != segs {
		t.Fatalf("Recovery = %+v", rec)
	}
	d.expire(time.Now().Add(2 * time.Hour))
	if d.Segments() != 1 || d.End() != int64(len(ref)) {
		t.Fatalf("after the TTL: %d segments, End %d", d.Segments(), d.End())
	}
	if _, err := c.Read(context.Background(), make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("cursor of the closed disk: %v, want ErrClosed", err)
	}
	c, _ = d.newCursor(d.First())
	if _, err := d.newCursor(d.First() - 1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("newCursor(First-1) = %v", err)
	}
	checkDisk(t, d, ref, 1)
	c.Close()
}

// TestDiskCatchUp has cursors start at the oldest byte on disk while the writer goes on
// appending: each reads from the files (sendfile to a TCP socket, a buffer to anything
// else), reaches the RAM tail and follows it, and gets every byte in order.
func TestDiskCatchUp(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	d := newHistory(t, t.TempDir(), opt, 1)
	ref := stream(7, 1<<20)
	half := len(ref) / 2
	appendPieces(t, d, ref[:half], 1, 4000)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	total := int64(len(ref))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	check := func(name string, got []byte) {
		if !bytes.Equal(got, ref) {
			i := 0
			for i < min(len(got), len(ref)) && got[i] == ref[i] {
				i++
			}
			errs <- fmt.Errorf("%s: %d bytes, first difference at offset %d", name, len(got), i+1)
		}
	}
	// TCP: the cursor writes into a socket, a reader collects.
	wg.Go(func() {
		conn, err := ln.Accept()
		if err != nil {
			errs <- err
			return
		}
		defer conn.Close()
		got, err := io.ReadAll(io.LimitReader(conn, total))
		if err != nil {
			errs <- err
		}
		check("tcp", got)
	})
	wg.Go(func() {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			errs <- err
			return
		}
		defer conn.Close()
		c, _ := d.newCursor(1)
		defer c.Close()
		for c.Offset() <= total {
			if _, err := c.WriteTo(ctx, conn, 64<<10); err != nil {
				errs <- fmt.Errorf("tcp WriteTo at %d: %w", c.Offset(), err)
				return
			}
		}
		if c.ref.s != nil {
			errs <- errors.New("tcp cursor still holds a segment after catching up")
		}
	})
	// A buffer: WriteTo copies through the cursor's fixed buffer.
	wg.Go(func() {
		c, _ := d.newCursor(1)
		defer c.Close()
		var buf bytes.Buffer
		for c.Offset() <= total {
			if _, err := c.WriteTo(ctx, &buf, 100<<10); err != nil {
				errs <- fmt.Errorf("buffer WriteTo at %d: %w", c.Offset(), err)
				return
			}
		}
		check("buffer", buf.Bytes())
	})
	// Read.
	wg.Go(func() {
		c, _ := d.newCursor(1)
		defer c.Close()
		got := make([]byte, 0, total)
		p := make([]byte, 13000)
		for c.Offset() <= total {
			n, err := c.Read(ctx, p)
			if err != nil {
				errs <- fmt.Errorf("Read at %d: %w", c.Offset(), err)
				return
			}
			got = append(got, p[:n]...)
		}
		check("read", got)
	})
	// The writer goes on, a little at a time, so the cursors overtake it.
	rng := rand.New(rand.NewPCG(8, 8))
	for src := ref[half:]; len(src) > 0; {
		n := min(len(src), 1+rng.IntN(4000))
		if err := d.Append(src[:n]); err != nil {
			t.Fatal(err)
		}
		src = src[n:]
		if rng.IntN(20) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDiskConcurrent streams through a small disk backlog with AppendFrom while fast cursors
// (Read and WriteTo) check every byte, slow cursors fall behind and must end in ErrTrimmed
// with only correct bytes, and a Bounds checker watches the published pairs. The writer
// waits for the fast cursors at half the size, as the ring's stress test does.
func TestDiskConcurrent(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	opt.Size = 256 << 10
	opt.SegmentSize = 16 << 10
	opt.RAMTail = 32 << 10
	total := 8 << 20
	if testing.Short() {
		total = 2 << 20
	}
	ref := stream(9, total)
	d := newHistory(t, t.TempDir(), opt, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const fast, slow = 4, 2
	progress := make([]atomic.Int64, fast)
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, fast+slow+2)
	for i := range fast {
		progress[i].Store(1)
		c, _ := d.newCursor(1)
		wg.Go(func() {
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			p := make([]byte, 64<<10)
			var w checkingWriter
			w.ref, w.off = ref, 1
			for c.Offset() <= int64(total) {
				off := c.Offset()
				if i%2 == 0 {
					n, err := c.Read(ctx, p[:1+rng.IntN(len(p))])
					if err != nil {
						errs <- fmt.Errorf("fast cursor %d: Read at %d: %w", i, off, err)
						return
					}
					if !bytes.Equal(p[:n], ref[off-1:off-1+int64(n)]) {
						errs <- fmt.Errorf("fast cursor %d: wrong bytes at %d", i, off)
						return
					}
				} else {
					if _, err := c.WriteTo(ctx, &w, 1+rng.IntN(128<<10)); err != nil {
						errs <- fmt.Errorf("fast cursor %d: WriteTo at %d: %w", i, off, err)
						return
					}
					if w.bad {
						errs <- fmt.Errorf("fast cursor %d: wrong bytes at %d", i, off)
						return
					}
				}
				progress[i].Store(c.Offset())
			}
		})
	}
	for i := range slow {
		c, _ := d.newCursor(1)
		wg.Go(func() {
			defer c.Close()
			p := make([]byte, 4096)
			for {
				off := c.Offset()
				n, err := c.Read(ctx, p)
				if errors.Is(err, ErrTrimmed) {
					return
				}
				if err != nil {
					errs <- fmt.Errorf("slow cursor %d: %w", i, err)
					return
				}
				if !bytes.Equal(p[:n], ref[off-1:off-1+int64(n)]) {
					errs <- fmt.Errorf("slow cursor %d: wrong bytes at %d", i, off)
					return
				}
				if c.Offset() > int64(total) {
					errs <- fmt.Errorf("slow cursor %d was never trimmed", i)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	var checker sync.WaitGroup
	checker.Go(func() {
		for !done.Load() {
			first, end := d.Bounds()
			if first > end+1 || end-first+1 > opt.Size {
				errs <- fmt.Errorf("Bounds() = (%d, %d)", first, end)
				return
			}
			runtime.Gosched()
		}
	})

	src := &chunkReader{src: ref, rng: rand.New(rand.NewPCG(3, 3)), max: 20000}
	for {
		minp := progress[0].Load()
		for i := range progress {
			minp = min(minp, progress[i].Load())
		}
		if d.End()-minp > opt.Size/2 {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		start := d.End() + 1
		b, err := d.AppendFrom(src)
		if len(b) > 0 && !bytes.Equal(b, ref[start-1:start-1+int64(len(b))]) {
			t.Fatalf("AppendFrom returned the wrong bytes at %d", start)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	done.Store(true)
	checker.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d.End() != int64(total) {
		t.Fatalf("End() = %d, want %d", d.End(), total)
	}
}

// checkingWriter compares what it is given with ref from offset off on.
type checkingWriter struct {
	ref []byte
	off int64
	bad bool
}

func (w *checkingWriter) Write(p []byte) (int, error) {
	if !bytes.Equal(p, w.ref[w.off-1:w.off-1+int64(len(p))]) {
		w.bad = true
	}
	w.off += int64(len(p))
	return len(p), nil
}

// injector builds fault hooks for tests.
type injector struct {
	mu   sync.Mutex
	fail map[faultOp]error
	keep int // bytes a failing write writes first
	hits map[faultOp]int
}

func inject(d *disk) *injector {
	in := &injector{fail: map[faultOp]error{}, hits: map[faultOp]int{}}
	f := faultFunc(func(op faultOp, n int) (int, error) {
		in.mu.Lock()
		defer in.mu.Unlock()
		if err := in.fail[op]; err != nil {
			in.hits[op]++
			return min(in.keep, n), err
		}
		return n, nil
	})
	d.faults.Store(&f)
	return in
}

func (in *injector) set(op faultOp, err error, keep int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.fail[op], in.keep = err, keep
}

func (in *injector) clear() {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(in.fail)
}

// TestDiskWriteError injects failing writes (a full disk: part of the bytes written, then
// ENOSPC) into data, index, segment creation and the cleanup itself: every failed append
// leaves End, Synced and the files as they were, Err reports the error, and a later append
// stores the bytes; a restart finds exactly the appended bytes.
func TestDiskWriteError(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	opt.Fsync = FsyncAlways
	dir := t.TempDir()
	d := newHistory(t, dir, opt, 1)
	in := inject(d)
	ref := stream(10, 64<<10)
	var stored []byte
	put := func(p []byte) {
		t.Helper()
		if err := d.Append(p); err != nil {
			t.Fatalf("Append: %v", err)
		}
		stored = append(stored, p...)
	}
	mustFail := func(p []byte, what string) {
		t.Helper()
		end, synced := d.End(), d.Synced()
		path := filepath.Join(dir, "backlog", segName(d.act.start))
		dsize, isize := fileSize(t, path+dataExt), fileSize(t, path+idxExt)
		err := d.Append(p)
		if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s: Append = %v, want ErrStorage and ENOSPC", what, err)
		}
		if d.End() != end || d.Synced() != synced || !errors.Is(d.Err(), syscall.ENOSPC) {
			t.Fatalf("%s: End %d, Synced %d, Err %v; want %d, %d, ENOSPC", what, d.End(), d.Synced(), d.Err(), end, synced)
		}
		if in.fail[opTruncate] == nil {
			if a, b := fileSize(t, path+dataExt), fileSize(t, path+idxExt); a != dsize || b != isize {
				t.Fatalf("%s: files are %d and %d bytes, were %d and %d", what, a, b, dsize, isize)
			}
		}
	}
	put(ref[:3000])

	in.set(opWriteData, syscall.ENOSPC, 700)
	mustFail(ref[3000:5000], "data write")
	in.set(opWriteData, nil, 0)
	in.set(opWriteIndex, syscall.ENOSPC, 3)
	mustFail(ref[3000:5000], "index write")
	// The cleanup fails too: bytes stay past the sizes until a later repair cuts them.
	in.set(opTruncate, syscall.EIO, 0)
	in.set(opWriteIndex, syscall.ENOSPC, 5)
	mustFail(ref[3000:5000], "index write and truncate")
	in.clear()
	if d.Err() == nil {
		t.Fatal("Err() cleared before an append succeeded")
	}
	put(ref[3000:5000])
	if d.Err() != nil || d.Synced() != d.End() {
		t.Fatalf("after a good append: Err %v, Synced %d, End %d", d.Err(), d.Synced(), d.End())
	}

	// Segment creation fails at a rotation: the full segment is unsealed again and goes on.
	for d.w.dataSize < d.segLimit() {
		put(ref[len(stored) : len(stored)+1000])
	}
	in.set(opCreate, syscall.ENOSPC, 0)
	mustFail(ref[len(stored):len(stored)+1000], "segment creation")
	in.clear()
	put(ref[len(stored) : len(stored)+1000])

	// AppendFrom keeps what it read and could not store, and returns it when stored.
	in.set(opWriteData, syscall.ENOSPC, 100)
	src := ref[len(stored) : len(stored)+2500]
	rd := io.MultiReader(bytes.NewReader(src), errReader{io.ErrUnexpectedEOF})
	b, err := d.AppendFrom(rd)
	if b != nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("AppendFrom = %d bytes, %v; want none and ENOSPC", len(b), err)
	}
	b, err = d.AppendFrom(rd)
	if b != nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("AppendFrom retry while failing = %d bytes, %v", len(b), err)
	}
	in.clear()
	b, err = d.AppendFrom(rd)
	if !bytes.Equal(b, src) || err != nil {
		t.Fatalf("AppendFrom after the disk recovered = %d bytes, %v; want the %d pending bytes", len(b), err, len(src))
	}
	stored = append(stored, src...)
	if b, err := d.AppendFrom(rd); len(b) != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("AppendFrom at the reader's end = %d, %v", len(b), err)
	}
	checkDisk(t, d, stored, 1)

	d, rec := reopen(t, d, opt)
	if rec.End != int64(len(stored)) || rec.Dropped != 0 {
		t.Fatalf("Recovery = %+v, want End %d and nothing dropped", rec, len(stored))
	}
	checkDisk(t, d, stored, 1)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestDiskSyncError injects fsync failures. Everysec: Synced stops, Err reports it, and the
// next append (or tick) writes the unsynced bytes again from the RAM tail and syncs them.
// Always: the append fails and nothing moves. When the RAM tail no longer holds the bytes,
// the backlog refuses appends until it is reopened.
func TestDiskSyncError(t *testing.T) {
	l := newTestLog(t)
	t.Run("everysec", func(t *testing.T) {
		opt := testOpts(l)
		opt.Fsync = FsyncEverySec
		opt.RAMTail = 64 << 10
		opt.SegmentSize = 1 << 20 // no seal (which syncs) in the middle of the test
		d := newHistory(t, t.TempDir(), opt, 1)
		in := inject(d)
		ref := stream(11, 30000)
		appendPieces(t, d, ref[:5000], 1, 1000)
		if d.Synced() == d.End() {
			t.Fatal("everysec: Synced caught up without a sync")
		}
		if err := d.syncOnce(); err != nil || d.Synced() != d.End() {
			t.Fatalf("syncOnce = %v, Synced %d, End %d", err, d.Synced(), d.End())
		}
		synced := d.Synced()
		appendPieces(t, d, ref[5000:9000], 2, 1000)
		in.set(opSync, syscall.EIO, 0)
		if err := d.syncOnce(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("syncOnce = %v, want EIO", err)
		}
		if d.Synced() != synced || !errors.Is(d.Err(), syscall.EIO) {
			t.Fatalf("after a failed fsync: Synced %d (want %d), Err %v", d.Synced(), synced, d.Err())
		}
		if err := d.Append(ref[9000:10000]); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Append while fsync fails = %v", err)
		}
		in.clear()
		appendPieces(t, d, ref[9000:20000], 3, 1000)
		if d.Err() != nil || d.Synced() < 9000 {
			t.Fatalf("after the repair: Err %v, Synced %d", d.Err(), d.Synced())
		}
		if l.find("written again and synced") == "" {
			t.Fatal("no log line for the repair")
		}
		if err := d.syncOnce(); err != nil || d.Synced() != d.End() {
			t.Fatalf("syncOnce = %v, Synced %d, End %d", err, d.Synced(), d.End())
		}
		// A quiet stream: the tick repairs without an append.
		appendPieces(t, d, ref[20000:22000], 4, 1000)
		in.set(opSync, syscall.EIO, 0)
		d.syncOnce()
		in.clear()
		if err := d.syncOnce(); err != nil || d.Synced() != d.End() || d.Err() != nil {
			t.Fatalf("repair by the tick: %v, Synced %d, End %d, Err %v", err, d.Synced(), d.End(), d.Err())
		}
		d, rec := reopen(t, d, opt)
		if rec.End != 22000 || rec.Dropped != 0 {
			t.Fatalf("Recovery = %+v", rec)
		}
		checkDisk(t, d, ref[:22000], 1)
	})
	t.Run("always", func(t *testing.T) {
		opt := testOpts(l)
		opt.Fsync = FsyncAlways
		d := newHistory(t, t.TempDir(), opt, 1)
		in := inject(d)
		ref := stream(12, 6000)
		appendPieces(t, d, ref[:3000], 1, 1000)
		in.set(opSync, syscall.EIO, 0)
		if err := d.Append(ref[3000:4000]); !errors.Is(err, syscall.EIO) || d.End() != 3000 || d.Synced() != 3000 {
			t.Fatalf("Append = %v, End %d, Synced %d", err, d.End(), d.Synced())
		}
		in.clear()
		appendPieces(t, d, ref[3000:], 2, 1000)
		if d.Synced() != d.End() || d.End() != 6000 {
			t.Fatalf("Synced %d, End %d", d.Synced(), d.End())
		}
		d, _ = reopen(t, d, opt)
		checkDisk(t, d, ref, 1)
	})
	t.Run("beyond-ram", func(t *testing.T) {
		opt := testOpts(l)
		opt.Fsync = FsyncEverySec
		opt.SegmentSize = 1 << 20
		d := newHistory(t, t.TempDir(), opt, 1)
		in := inject(d)
		ref := stream(13, 6*MinSize)
		appendPieces(t, d, ref[:3*MinSize], 1, 1000)
		in.set(opSync, syscall.EIO, 0)
		d.syncOnce()
		in.clear()
		// Since the last sync more than the RAM tail was appended: it cannot be rewritten.
		if err := d.Append(ref[3*MinSize:]); !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "reopen") {
			t.Fatalf("Append = %v, want the reopen error", err)
		}
		if err := d.Close(); err == nil {
			t.Fatal("Close reported no error")
		}
		d, rec, err := openDir(d.opt.Dir, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if rec.End != 3*MinSize {
			t.Fatalf("Recovery = %+v", rec)
		}
		checkDisk(t, d, ref, 1)
	})
}

func TestDiskSynced(t *testing.T) {
	l := newTestLog(t)
	for _, pol := range []FsyncPolicy{FsyncAlways, FsyncEverySec, FsyncNo} {
		t.Run(pol.String(), func(t *testing.T) {
			opt := testOpts(l)
			opt.Fsync = pol
			opt.tick = 20 * time.Millisecond
			d := newHistory(t, t.TempDir(), opt, 1)
			if d.Synced() != 0 {
				t.Fatalf("Synced() = %d before any append", d.Synced())
			}
			appendPieces(t, d, stream(14, 20000), 1, 3000)
			if pol != FsyncEverySec && d.Synced() != d.End() {
				t.Fatalf("Synced() = %d, End() = %d", d.Synced(), d.End())
			}
			deadline := time.Now().Add(10 * time.Second)
			for d.Synced() != d.End() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if d.Synced() != d.End() {
				t.Fatalf("the background sync did not catch up: Synced() = %d, End() = %d", d.Synced(), d.End())
			}
		})
	}
	if p, err := ParseFsyncPolicy("EverySec"); p != FsyncEverySec || err != nil {
		t.Fatal(p, err)
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Fatal("ParseFsyncPolicy accepted sometimes")
	}
}

// TestDiskState covers the state file and Reset: the state survives restarts, a failed
// write keeps the old one, the epoch changes only with Reset, Reset deletes the old
// history, and segments that do not match the state are deleted at recovery.
func TestDiskState(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	dir := t.TempDir()
	d := newHistory(t, dir, opt, 100)
	if f, e := d.Bounds(); f != 100 || e != 99 {
		t.Fatalf("Bounds() = %d, %d after Reset at 100", f, e)
	}
	ref := stream(15, 30000)
	appendPieces(t, d, ref, 1, 2000)
	st := State{Replid: strings.Repeat("cd", 20), Replid2: testReplid, SecondOff: 10100, Epoch: 1}
	if err := d.SetState(st); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(State{Epoch: 2}); err == nil {
		t.Fatal("SetState changed the epoch")
	}
	in := inject(d)
	in.set(opState, syscall.EIO, 0) // ENOSPC would delete segments to make room (diskfull_test.go)
	if err := d.SetState(State{Replid: "x", Epoch: 1}); !errors.Is(err, syscall.EIO) || d.State() != st {
		t.Fatalf("failed SetState = %v, State() = %+v", err, d.State())
	}
	in.clear()
	old, _ := d.newCursor(100)

	d, rec := reopen(t, d, opt)
	if rec.State != st || !rec.History || rec.EpochReplid != testReplid || rec.First != 100 || rec.End != 30099 {
		t.Fatalf("Recovery = %+v", rec)
	}
	if _, err := old.Read(context.Background(), make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("cursor of a closed disk: %v", err)
	}
	checkDisk(t, d, ref, 100)

	st2 := State{Replid: strings.Repeat("ef", 20), Replid2: strings.Repeat("0", 40), SecondOff: -1, Epoch: 2}
	c, _ := d.newCursor(200)
	d2, err := d.Reset(st2, 5000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Close() })
	if _, err := c.Read(context.Background(), make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("cursor of the reset disk: %v", err)
	}
	if err := d.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append to the reset disk: %v", err)
	}
	if files := segFiles(t, dir); len(files) != 2 || files[0] != segName(5000)+dataExt {
		t.Fatalf("files after Reset: %v", files)
	}
	d2, rec = reopen(t, d2, opt)
	if rec.State != st2 || rec.First != 5000 || rec.End != 4999 || rec.Segments != 1 || !rec.History {
		t.Fatalf("Recovery of an empty history = %+v", rec)
	}
	appendPieces(t, d2, ref, 2, 2000)

	// A state of another epoch (a Reset that crashed after writing the state): the segments
	// cannot be attributed, so they go, and there is no history.
	d2.Close()
	if err := writeState(d2.dir, State{Replid: "z", Epoch: 3}, nil); err != nil {
		t.Fatal(err)
	}
	d3, rec, err := openDir(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer d3.Close()
	if rec.History || rec.Discarded == 0 || !rec.HasState || len(segFiles(t, dir)) != 0 {
		t.Fatalf("Recovery = %+v, files %v", rec, segFiles(t, dir))
	}
}

// TestDiskCursorAPI checks the small methods against cursor's semantics.
func TestDiskCursorAPI(t *testing.T) {
	l := newTestLog(t)
	d := newHistory(t, t.TempDir(), testOpts(l), 1)
	if _, err := d.newCursor(2); !errors.Is(err, ErrFuture) {
		t.Fatalf("newCursor(End+2) = %v", err)
	}
	c, err := d.newCursor(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on an empty backlog = %v", err)
	}
	woke := make(chan error, 1)
	go func() { woke <- c.WaitAt(context.Background(), 3) }()
	time.Sleep(5 * time.Millisecond)
	d.Append([]byte("ab"))
	select {
	case err := <-woke:
		t.Fatalf("WaitAt(3) returned %v at End 2", err)
	case <-time.After(10 * time.Millisecond):
	}
	d.Append([]byte("cd"))
	if err := <-woke; err != nil {
		t.Fatal(err)
	}
	if err := c.Skip(5); !errors.Is(err, ErrFuture) || c.Offset() != 1 {
		t.Fatalf("Skip(5) = %v, Offset %d", err, c.Offset())
	}
	if err := c.Skip(2); err != nil || c.Offset() != 3 || c.End() != 4 || !c.On(d) {
		t.Fatalf("Skip(2) = %v, Offset %d, End %d", err, c.Offset(), c.End())
	}
	p := make([]byte, 10)
	if n, err := c.Read(context.Background(), p); n != 2 || string(p[:2]) != "cd" || err != nil {
		t.Fatalf("Read = %d %q %v", n, p[:n], err)
	}
	if n, err := c.WriteTo(context.Background(), io.Discard, 0); n != 0 || err != nil {
		t.Fatalf("WriteTo(limit 0) = %d, %v", n, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Wait(context.Background()) }()
	time.Sleep(5 * time.Millisecond)
	d.Close()
	if err := <-closed; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across Close = %v", err)
	}
	if _, err := c.Read(context.Background(), p); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
	if _, err := d.newCursor(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("newCursor after Close = %v", err)
	}
	if err := d.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if d.Mem() != 0 || d.End() != 4 {
		t.Fatalf("after Close: Mem %d, End %d", d.Mem(), d.End())
	}
}

// TestDiskAllocs checks the steady state: AppendFrom (within a segment) and WriteTo from the
// RAM tail allocate nothing, and a cursor reading the files through its buffer allocates
// nothing past that one buffer, however much it reads.
func TestDiskAllocs(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	opt.Size, opt.SegmentSize, opt.RAMTail = 512<<20, 64<<20, 1<<20 // no segment is sealed
	d := newHistory(t, t.TempDir(), opt, 1)
	src := bytes.NewReader(nil)
	piece := make([]byte, 16<<10)
	c, _ := d.newCursor(1)
	ctx := context.Background()
	step := func() {
		src.Reset(piece)
		if _, err := d.AppendFrom(src); err != nil {
			t.Fatal(err)
		}
		for c.Offset() <= d.End() {
			if _, err := c.WriteTo(ctx, io.Discard, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 200 {
		step()
	}
	if a := testing.AllocsPerRun(20, func() {
		for range 100 {
			step()
		}
	}); a != 0 {
		t.Errorf("100 AppendFrom and WriteTo steps allocated %v times, want 0", a)
	}

	lag, _ := d.newCursor(1) // 200+ pieces behind: far below the 1 MiB RAM tail
	if _, err := lag.WriteTo(ctx, io.Discard, 64<<10); err != nil || lag.ref.s == nil {
		t.Fatalf("lagging cursor: %v, reading a segment: %v", err, lag.ref.s != nil)
	}
	if a := testing.AllocsPerRun(50, func() {
		if _, err := lag.WriteTo(ctx, io.Discard, 64<<10); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("WriteTo from the files allocated %v times per call, want 0", a)
	}
	lag.Close()
}

// TestStreamCursor reads the same bytes through the common interfaces from a ring and a disk.
func TestStreamCursor(t *testing.T) {
	l := newTestLog(t)
	d := newHistory(t, t.TempDir(), testOpts(l), 1)
	r := newRing(1<<20, 1)
	defer r.Close()
	ref := stream(16, 100<<10)
	appendPieces(t, d, ref, 1, 3000)
	r.Append(ref)
	for _, b := range []Backlog{r, d} {
		if _, err := b.Cursor(b.End() + 2); !errors.Is(err, ErrFuture) {
			t.Fatalf("%T: Cursor(End+2) = %v", b, err)
		}
		c, err := b.Cursor(1)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for c.Offset() <= b.End() {
			if _, err := c.WriteTo(context.Background(), &buf, 7000); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(buf.Bytes(), ref) {
			t.Fatalf("%T: wrong bytes", b)
		}
	}
}
