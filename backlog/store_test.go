package backlog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// publish stores p in b through Stage and Publish, as the upstream link does.
func publish(t *testing.T, b Backlog, p []byte) {
	t.Helper()
	for len(p) > 0 {
		chunk, err := b.Stage(bytes.NewReader(p))
		if err != nil {
			t.Fatalf("Stage: %v", err)
		}
		if _, err := b.Publish(b.End() + b.Staged()); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		p = p[len(chunk):]
	}
}

// readAll reads first..End of b through a cursor.
func readAll(t *testing.T, b Backlog, first int64) []byte {
	t.Helper()
	c, err := b.Cursor(first)
	if err != nil {
		t.Fatalf("Cursor(%d): %v", first, err)
	}
	defer c.Close()
	var out []byte
	buf := make([]byte, 7000)
	for c.Offset() <= b.End() {
		n, err := c.Read(context.Background(), buf)
		if err != nil {
			t.Fatalf("Read at %d: %v", c.Offset(), err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"memory": Memory, "DISK": Disk, "Disk": Disk} {
		if m, err := ParseMode(s); err != nil || m != want || !strings.EqualFold(m.String(), s) {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("ram"); err == nil {
		t.Error("ParseMode(ram) succeeded")
	}
}

func TestOpenBadOptions(t *testing.T) {
	for _, o := range []Options{
		{},                       // no size
		{Size: 1 << 20, Mode: 7}, // no such mode
		{Size: 1 << 20, Mode: Disk},
		{Size: 1 << 20, Mode: Disk, Dir: t.TempDir(), Fsync: 9},
	} {
		if s, _, err := Open(o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

// TestStoreMemory: each Start is a new ring at the offset given, the previous one closed;
// Resize reaches the current ring and the next; SetIDs stores nothing; Close ends it all.
func TestStoreMemory(t *testing.T) {
	s, rec, err := Open(Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Backlog != nil || rec.History || rec.HasState {
		t.Fatalf("memory mode: Recovery = %+v", rec)
	}
	if st := s.Stats(); st.Mode != Memory || st.Active || st.Size != 1<<20 || st.LastErr != nil ||
		st.DiskFullEvents != 0 || st.EffectiveSize != st.Size {
		t.Fatalf("Stats before Start = %+v", st)
	}
	b, err := s.Start("a", 101)
	if err != nil {
		t.Fatal(err)
	}
	ref := stream(1, 300<<10)
	publish(t, b, ref)
	if got := readAll(t, b, 101); !bytes.Equal(got, ref) {
		t.Fatal("wrong bytes read back")
	}
	st := s.Stats()
	if !st.Active || st.First != 101 || st.End != 100+int64(len(ref)) || st.Synced != st.End ||
		st.Bytes != int64(len(ref)) || st.Mem < int64(len(ref)) || st.Segments != 0 || st.OldestAgeOK {
		t.Fatalf("Stats = %+v", st)
	}
	if err := s.SetIDs("b", "a", st.End+1); err != nil {
		t.Fatalf("SetIDs in memory mode: %v", err)
	}

	c, err := b.Cursor(101)
	if err != nil {
		t.Fatal(err)
	}
	s.Resize(64 << 10)
	if b.Size() != 64<<10 || b.First() != b.End()-64<<10+1 {
		t.Fatalf("after Resize: Size %d, Bounds %d-%d", b.Size(), b.First(), b.End())
	}
	b2, err := s.Start("c", 5000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(context.Background(), make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("cursor of the previous history: %v, want ErrClosed", err)
	}
	if _, err := b.Stage(bytes.NewReader([]byte("x"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stage on the previous history: %v, want ErrClosed", err)
	}
	if b2.Size() != 64<<10 || b2.First() != 5000 || b2.End() != 4999 {
		t.Fatalf("new history: Size %d, Bounds %d-%d", b2.Size(), b2.First(), b2.End())
	}
	if c, err := b2.Cursor(5001); c != nil || !errors.Is(err, ErrFuture) {
		t.Fatalf("Cursor(End+2) = %v, %v; want a nil interface and ErrFuture", c, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b2.Cursor(5000); !errors.Is(err, ErrClosed) {
		t.Fatalf("Cursor after Close: %v", err)
	}
	if _, err := s.Start("d", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if err := s.SetIDs("d", "c", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetIDs after Close: %v", err)
	}
}

// storeOpts are small disk-mode options for the Store tests.
func storeOpts(t *testing.T, dir string) Options {
	l := newTestLog(t)
	o := testOpts(l)
	o.Mode, o.Dir = Disk, dir
	return o
}

// TestStoreDisk: Start stores the history with the next epoch, SetIDs makes a failover
// durable, and Open recovers both with the recovered Backlog ready to resume.
func TestStoreDisk(t *testing.T) {
	dir := t.TempDir()
	opt := storeOpts(t, dir)
	s, rec, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Backlog != nil || rec.History {
		t.Fatalf("fresh directory: Recovery = %+v", rec)
	}
	if err := s.SetIDs(testReplid, zeroReplid, 5); err != nil {
		t.Fatalf("SetIDs without a history: %v", err)
	}
	b, err := s.Start(testReplid, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref := stream(2, 100<<10)
	publish(t, b, ref[:60<<10])
	newID := strings.Repeat("cd", 20)
	if err := s.SetIDs(newID, testReplid, 60<<10+1); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ref[60<<10:])
	st := s.Stats()
	if st.Mode != Disk || !st.Active || st.First != 1 || st.End != int64(len(ref)) || st.Synced != st.End ||
		st.Segments != 2 || !st.OldestAgeOK || st.Mem <= 0 || st.LastErr != nil {
		t.Fatalf("Stats = %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, rec, err = Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := State{Replid: newID, Replid2: testReplid, SecondOff: 60<<10 + 1, Epoch: 1}
	if !rec.History || !rec.HasState || rec.State != want || rec.EpochReplid != testReplid || rec.Backlog == nil {
		t.Fatalf("Recovery = %+v, want state %+v", rec, want)
	}
	b = rec.Backlog
	if got := readAll(t, b, 1); !bytes.Equal(got, ref) {
		t.Fatal("recovered bytes differ")
	}
	publish(t, b, []byte("more"))
	if st := s.Stats(); !st.Active || st.End != int64(len(ref))+4 || st.OldestAgeOK {
		t.Fatalf("Stats after recovery = %+v", st)
	}

	// The next Start is the next epoch, with no replid2; the old backlog is closed.
	s.Resize(1 << 20)
	b2, err := s.Start(newID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Cursor(b.End()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Cursor on the previous history: %v, want ErrClosed", err)
	}
	if b2.Size() != 1<<20 || b2.First() != 1000 || b2.End() != 999 {
		t.Fatalf("new history: Size %d, Bounds %d-%d", b2.Size(), b2.First(), b2.End())
	}
	st2, ok, err := readState(dir + "/backlog")
	if want := (State{Replid: newID, Replid2: zeroReplid, SecondOff: -1, Epoch: 2}); err != nil || !ok || st2 != want {
		t.Fatalf("state after Start = %+v, %v, %v; want %+v", st2, ok, err, want)
	}
}

// TestStoreStartAfterFailedStart: a Start that fails leaves no history (Stats says why)
// and no open handle; the next Start reopens the directory itself, in a later epoch. A
// Start with a bad argument changes nothing.
func TestStoreStartAfterFailedStart(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(storeOpts(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := s.Start(testReplid, 1)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, stream(3, 40<<10))
	if _, err := s.Start(strings.Repeat("x", 41), 1); err == nil {
		t.Fatal("Start with a 41-byte replid succeeded")
	}
	if _, err := b.Cursor(1); err != nil {
		t.Fatalf("a bad Start closed the history: %v", err)
	}

	// The new history's first segment cannot be created.
	old := s.dk
	var ff faultFunc = func(op faultOp, n int) (int, error) {
		if op == opCreate {
			return 0, syscall.EIO
		}
		return n, nil
	}
	old.faults.Store(&ff)
	if _, err := s.Start(testReplid, 500); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Start with failing creates = %v, want EIO", err)
	}
	if s.dk != nil || !old.closed.Load() {
		t.Fatal("the store kept a handle after the failed Start")
	}
	select {
	case <-old.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the old disk's goroutine is still running")
	}
	if _, err := b.Cursor(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("old history after a failed Start: %v, want ErrClosed", err)
	}
	if st := s.Stats(); st.Active || !errors.Is(st.LastErr, syscall.EIO) {
		t.Fatalf("Stats after a failed Start = %+v", st)
	}
	if err := s.SetIDs("x", "y", 1); err != nil {
		t.Fatalf("SetIDs without a history: %v", err)
	}

	b, err = s.Start(testReplid, 500)
	if err != nil {
		t.Fatalf("Start after a failed Start: %v", err)
	}
	ref := stream(4, 30<<10)
	publish(t, b, ref)
	if got := readAll(t, b, 500); !bytes.Equal(got, ref) {
		t.Fatal("wrong bytes in the restarted history")
	}
	if st := s.Stats(); !st.Active || st.LastErr != nil || st.First != 500 {
		t.Fatalf("Stats after the restart = %+v", st)
	}
	// The failed Start stored epoch 2 before failing; the next is 3.
	if st := s.dk.State(); st.Epoch != 3 {
		t.Fatalf("epoch after a failed Start = %d, want 3", st.Epoch)
	}
}
