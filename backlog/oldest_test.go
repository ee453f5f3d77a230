package backlog

import (
	"testing"
	"time"
)

// TestDiskOldestAge: segments written in this run know when they began; after a reopen the
// oldest recovered segment's start is unknown, and the ones after it began when their
// predecessor was sealed.
func TestDiskOldestAge(t *testing.T) {
	l := newTestLog(t)
	opt := testOpts(l)
	d := newHistory(t, t.TempDir(), opt, 1)
	before := time.Now()
	appendPieces(t, d, stream(70, 64<<10), 70, 4<<10) // 8 segments of 8 KiB
	age, ok := d.OldestAge()
	if !ok || age < 0 || age > time.Since(before)+time.Second {
		t.Fatalf("OldestAge = %v, %v just after writing", age, ok)
	}
	d, _ = reopen(t, d, opt)
	if _, ok := d.OldestAge(); ok {
		t.Fatal("OldestAge known for a segment recovered from disk")
	}
	d.Resize(MinSize) // drops the oldest segments; the new oldest began when its predecessor sealed
	if age, ok := d.OldestAge(); !ok || age > time.Since(before)+time.Second {
		t.Fatalf("OldestAge = %v, %v after dropping the oldest recovered segment", age, ok)
	}
}
