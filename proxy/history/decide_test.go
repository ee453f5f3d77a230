package history

import (
	"strings"
	"testing"
	"time"
)

// The decision must be Redis's masterTryPartialResynchronization, case for case, plus the
// proxy's own cases: a first snapshot still arriving, and a PSYNC ahead of the backlog.
func TestDecide(t *testing.T) {
	id, id2, other := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
	now := time.Unix(1000, 0)
	const timeout = time.Minute
	// The backlog holds 101..200; the history forked from id2 at 151; the snapshot is at 120.
	base := View{Replid: id, Replid2: id2, SecondOff: 151, Backlog: true, First: 101, End: 200, Size: 1000,
		Snapshot: true, SnapshotOffset: 120}
	psync := func(replid string, off int64) Request {
		return Request{PSync: true, Replid: replid, Offset: off, TryPartial: true}
	}
	with := func(f func(*View)) View { v := base; f(&v); return v }
	for _, tc := range []struct {
		name    string
		v       View
		req     Request
		kind    Kind
		from    int64
		refused Refusal
		ended   HoldEnd
	}{
		{"first byte held", base, psync(id, 101), Continue, 101, RefusedNone, HoldGoesOn},
		{"middle", base, psync(id, 150), Continue, 150, RefusedNone, HoldGoesOn},
		{"end+1: nothing to send, still partial", base, psync(id, 201), Continue, 201, RefusedNone, HoldGoesOn},
		{"IDs compare case-insensitively", base, psync(strings.ToUpper(id), 150), Continue, 150, RefusedNone, HoldGoesOn},
		{"before the backlog", base, psync(id, 100), FullSync, 121, RefusedNoBacklog, HoldGoesOn},
		{"previous ID up to the fork point", base, psync(id2, 151), Continue, 151, RefusedNone, HoldGoesOn},
		{"previous ID past the fork point", base, psync(id2, 152), FullSync, 121, RefusedSecondID, HoldGoesOn},
		{"previous ID, not in the backlog", base, psync(id2, 100), FullSync, 121, RefusedNoBacklog, HoldGoesOn},
		{"a fresh replica", base, psync("?", -1), FullSync, 121, RefusedFresh, HoldGoesOn},
		{"unknown ID", base, psync(other, 150), FullSync, 121, RefusedIDMismatch, HoldGoesOn},
		{"zero ID never matches an unset replid2", with(func(v *View) { v.Replid2, v.SecondOff = ZeroReplid, -1 }),
			psync(ZeroReplid, 150), FullSync, 121, RefusedSecondID, HoldGoesOn},
		{"SYNC is always full", base, Request{Replid: "?", Offset: -1}, FullSync, 121, RefusedNone, HoldGoesOn},
		{"partial already refused", base, Request{PSync: true, Replid: id, Offset: 150}, FullSync, 121, RefusedNone, HoldGoesOn},

		// Ahead of the end: held while the backlog could still reach it.
		{"ahead: held", base, psync(id, 250), Hold, 0, RefusedNone, HoldGoesOn},
		{"ahead, held a while: still held", base, Request{PSync: true, Replid: id, Offset: 250, TryPartial: true,
			HeldSince: now.Add(-timeout / 2)}, Hold, 0, RefusedNone, HoldGoesOn},
		{"ahead, held past the timeout: full", base, Request{PSync: true, Replid: id, Offset: 250, TryPartial: true,
			HeldSince: now.Add(-2 * timeout)}, FullSync, 121, RefusedNoBacklog, HoldTimedOut},
		{"held, now reached: partial", base, Request{PSync: true, Replid: id, Offset: 190, TryPartial: true,
			HeldSince: now.Add(-time.Second)}, Continue, 190, RefusedNone, HoldReached},
		{"further ahead than the backlog holds: full at once", base, psync(id, 1300), FullSync, 121, RefusedNoBacklog, HoldGoesOn},
		{"ahead under the previous ID: not held", base, psync(id2, 250), FullSync, 121, RefusedSecondID, HoldGoesOn},

		// Full syncs need a snapshot whose next byte the backlog holds.
		{"no snapshot", with(func(v *View) { v.Snapshot = false }), psync(other, 150), NeedSnapshot, 0, RefusedIDMismatch, HoldGoesOn},
		{"the backlog moved past S+1", with(func(v *View) { v.SnapshotOffset = 50 }), psync("?", -1), NeedSnapshot, 0, RefusedFresh, HoldGoesOn},
		{"snapshot ahead of the backlog", with(func(v *View) { v.SnapshotOffset = 300 }), psync("?", -1), NeedSnapshot, 0, RefusedFresh, HoldGoesOn},
		{"snapshot at the end", with(func(v *View) { v.SnapshotOffset = 200 }), psync("?", -1), FullSync, 201, RefusedFresh, HoldGoesOn},

		// Before the first snapshot, only the one arriving.
		{"nothing yet", View{}, psync("?", -1), Wait, 0, RefusedNone, HoldGoesOn},
		{"arriving, sized", View{Arriving: true, ArrivingSized: true, ArrivingReplid: id, ArrivingSnapOffset: 7},
			Request{Replid: "?", Offset: -1}, PassThrough, 8, RefusedNone, HoldGoesOn},
		{"arriving EOF-marked, replica without capa eof", View{Arriving: true, ArrivingReplid: id},
			psync("?", -1), Wait, 0, RefusedNone, HoldGoesOn},
		{"arriving EOF-marked, replica with capa eof", View{Arriving: true, ArrivingReplid: id},
			Request{PSync: true, Replid: "?", Offset: -1, CapaEOF: true, TryPartial: true}, PassThrough, 1, RefusedNone, HoldGoesOn},
		{"arriving EOF-marked, SYNC", View{Arriving: true, ArrivingReplid: id},
			Request{Replid: "?", Offset: -1, CapaEOF: true}, Wait, 0, RefusedNone, HoldGoesOn},
	} {
		d := Decide(tc.v, tc.req, now, timeout)
		if d.Kind != tc.kind || d.Refused != tc.refused || d.HoldEnded != tc.ended ||
			(tc.kind == Continue || tc.kind == FullSync || tc.kind == PassThrough) && d.From != tc.from {
			t.Errorf("%s: got %v from %d (refused %d, hold %d), want %v from %d (refused %d, hold %d)",
				tc.name, d.Kind, d.From, d.Refused, d.HoldEnded, tc.kind, tc.from, tc.refused, tc.ended)
		}
		if d.Kind == Continue && d.Replid != tc.v.Replid {
			t.Errorf("%s: +CONTINUE %s, want the current ID", tc.name, d.Replid)
		}
	}
}

func TestRefusalCounted(t *testing.T) {
	for r, want := range map[Refusal]bool{RefusedNone: false, RefusedFresh: false, RefusedIDMismatch: true,
		RefusedSecondID: true, RefusedNoBacklog: true} {
		if r.Counted() != want {
			t.Errorf("refusal %d counted %v, want %v", r, r.Counted(), want)
		}
	}
}
