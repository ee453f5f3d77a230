package downstream

import (
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// TestFanOut checks the inline write's conditions: only an idle replica whose cursor is on
// this ring at exactly the appended bytes' offset gets them, and its cursor moves past them;
// every other replica on the list is poked to send them itself, the served one is not.
func TestFanOut(t *testing.T) {
	s := &Sessions{}
	ring, other := memoryBacklog(t), memoryBacklog(t)
	appendBytes(t, ring, "hello")
	appendBytes(t, other, "hello")

	mk := func(rg backlog.Backlog, off int64, idle bool) (*session, net.Conn) {
		a, b := redistest.TCPPair(t)
		raw, err := a.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		cur, err := rg.Cursor(off)
		if err != nil {
			t.Fatal(err)
		}
		r := &session{}
		r.fast.poke = make(chan struct{}, 1)
		r.fast.cur, r.fast.raw, r.fast.idle = cur, raw, idle
		s.addFast(r)
		return r, b
	}
	ready, readyPeer := mk(ring, 6, true)
	busy, _ := mk(ring, 6, false)
	behind, _ := mk(ring, 3, true)
	elsewhere, _ := mk(other, 6, true)

	appendBytes(t, ring, " world")
	s.FanOut(ring, 6, []byte(" world"))

	got := make([]byte, 6)
	if _, err := io.ReadFull(readyPeer, got); err != nil || string(got) != " world" {
		t.Fatalf("idle replica at the offset got %q, %v", got, err)
	}
	for name, c := range map[string]struct {
		r    *session
		want int64
	}{"ready": {ready, 12}, "busy": {busy, 6}, "behind": {behind, 3}, "other ring": {elsewhere, 6}} {
		if off := c.r.fast.cur.Offset(); off != c.want {
			t.Errorf("%s: cursor at %d, want %d", name, off, c.want)
		}
		poked := len(c.r.fast.poke) == 1
		if want := c.r != ready; poked != want {
			t.Errorf("%s: poked %v, want %v", name, poked, want)
		}
	}
	// Bytes that are not one slice are never written inline: everyone is poked.
	<-busy.fast.poke
	appendBytes(t, ring, "!")
	s.FanOut(ring, 12, nil)
	if len(ready.fast.poke) != 1 || len(busy.fast.poke) != 1 || ready.fast.cur.Offset() != 12 {
		t.Fatalf("FanOut(nil): ready poked %d at %d, busy poked %d", len(ready.fast.poke), ready.fast.cur.Offset(), len(busy.fast.poke))
	}
	s.removeFastLocked(ready)
	if n := len(*s.fast.Load()); n != 3 {
		t.Fatalf("%d replicas left on the list, want 3", n)
	}
}

// TestCursorSkipBounds checks that an inline write can never move a cursor past End()+1.
func TestCursorSkipBounds(t *testing.T) {
	ring := memoryBacklog(t)
	appendBytes(t, ring, "abc")
	cur, _ := ring.Cursor(2)
	if err := cur.Skip(3); err == nil {
		t.Fatal("Skip past End()+1 succeeded")
	}
	if err := cur.Skip(2); err != nil || cur.Offset() != 4 {
		t.Fatalf("Skip(2) = %v, offset %d", err, cur.Offset())
	}
}

// memoryBacklog is a RAM backlog starting at offset 1.
func memoryBacklog(t *testing.T) backlog.Backlog {
	t.Helper()
	st, _, err := backlog.Open(backlog.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := st.Start("", 1)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendBytes stores s and publishes it, as the master link does.
func appendBytes(t *testing.T, b backlog.Backlog, s string) {
	t.Helper()
	if _, err := b.Stage(strings.NewReader(s)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(b.End() + b.Staged()); err != nil {
		t.Fatal(err)
	}
}
