package history

import (
	"fmt"
	"strings"
	"time"
)

// ZeroReplid is Redis's "no ID" value for master_replid2.
const ZeroReplid = "0000000000000000000000000000000000000000"

// Request is one PSYNC or SYNC as the decision sees it.
type Request struct {
	PSync   bool   // false for SYNC: never a partial resync
	Replid  string // as asked; "?" for a fresh replica
	Offset  int64  // the first byte wanted
	CapaEOF bool   // the replica takes an EOF-marked payload
	// TryPartial is whether a partial resync may still be considered: false for SYNC, for
	// rdb-only clients (they want the snapshot and nothing after it), and once one was
	// refused for this request.
	TryPartial bool
	// HeldSince is when this request started being held ahead of the backlog's end (Hold);
	// zero when it is not held.
	HeldSince time.Time
}

// View is the replication history at one moment, as the decision needs it.
type View struct {
	Replid, Replid2 string // Replid "" before the first snapshot or full sync
	SecondOff       int64  // the first offset that does not belong to Replid2; -1: none
	// Backlog is whether the current history has a backlog; First and End are its bounds
	// (First == End+1 when empty) and Size its retention.
	Backlog          bool
	First, End, Size int64
	// Epoch numbers the backlogs the history has had: offsets are contiguous only within
	// one epoch (a full resync upstream starts a new one, a new replication ID does not).
	Epoch              uint64
	Snapshot           bool  // a checked snapshot of this history is cached
	SnapshotOffset     int64 // its offset S: it needs the stream from S+1
	Arriving           bool  // a first snapshot is arriving on the master link
	ArrivingSized      bool  // its length is known ($<len>, not EOF-marked)
	ArrivingReplid     string
	ArrivingSnapOffset int64
}

// Kind is what to do with a request.
type Kind uint8

const (
	// Wait: nothing can be offered yet (no snapshot, or one the replica cannot take as it
	// arrives); wait for the history to change, with keep-alive newlines.
	Wait Kind = iota
	// Hold: the replica follows this history but asks for bytes past the backlog's end; hold
	// the PSYNC until the master link re-delivers them, then decide again.
	Hold
	// Continue: +CONTINUE, then the stream from the requested offset.
	Continue
	// FullSync: +FULLRESYNC from the cached snapshot, then the stream from its offset+1.
	FullSync
	// PassThrough: +FULLRESYNC from the snapshot still arriving on the master link.
	PassThrough
	// NeedSnapshot: a full sync is needed and no snapshot can serve it: ask for a new one
	// and wait.
	NeedSnapshot
)

func (k Kind) String() string {
	return [...]string{"wait", "hold", "continue", "full sync", "pass-through", "need snapshot"}[k]
}

// Decision is the answer to a Request against a View.
type Decision struct {
	Kind   Kind
	Replid string // the ID to answer with (+CONTINUE <id>, +FULLRESYNC <id> <off>)
	From   int64  // Continue, FullSync: the first stream byte the replica gets
	// Refused says why a partial resync was considered and refused, in Redis's words
	// (Refusal.Message); RefusedNone when none was.
	Refused Refusal
	// HoldEnded is set when a request held before is held no longer, and why.
	HoldEnded HoldEnd
	// Why says, for NeedSnapshot, what the snapshot lacks.
	Why string
}

// Refusal is why a partial resynchronization was refused.
type Refusal uint8

const (
	RefusedNone       Refusal = iota
	RefusedFresh              // PSYNC ? -1: a replica with no history asked for a full sync
	RefusedIDMismatch         // neither of the proxy's replication IDs
	RefusedSecondID           // the previous ID, past the point where the history forked
	RefusedNoBacklog          // the bytes from the offset on are not all in the backlog
)

// Counted reports whether Redis counts the refusal in sync_partial_err: every refused
// PSYNC that named a history.
func (r Refusal) Counted() bool { return r != RefusedNone && r != RefusedFresh }

// Message is Redis's log line for the refusal of req (masterTryPartialResynchronization);
// "" when Redis logs none.
func (r Refusal) Message(v View, req Request, addr string) string {
	switch r {
	case RefusedSecondID:
		return fmt.Sprintf("Partial resynchronization not accepted: Requested offset for second ID was %d, but I can reply up to %d",
			req.Offset, v.SecondOff)
	case RefusedIDMismatch:
		return fmt.Sprintf("Partial resynchronization not accepted: Replication ID mismatch (Replica asked for '%s', my replication IDs are '%s' and '%s')",
			req.Replid, v.Replid, v.Replid2)
	case RefusedNoBacklog:
		return fmt.Sprintf("Unable to partial resync with replica %s for lack of backlog (Replica request was: %d, backlog holds %d to %d).",
			addr, req.Offset, v.First, v.End)
	}
	return ""
}

// HoldEnd is why a held request stopped being held.
type HoldEnd uint8

const (
	HoldGoesOn   HoldEnd = iota
	HoldReached          // the backlog now reaches the offset
	HoldTimedOut         // the master did not re-deliver within repl-timeout
)

// Decide answers a PSYNC exactly as Redis's masterTryPartialResynchronization does, against
// the history v: a partial resync only when the ID is the current one, or the previous one
// below the fork point, and every byte from the offset on is in the backlog; otherwise a full
// sync from a snapshot whose next byte the backlog still holds. Two cases are the proxy's own:
// before its first snapshot it can only pass on the one arriving, and a replica ahead of the
// backlog's end (the proxy lost bytes it had forwarded, in a crash) is held until the master
// re-delivers them, for at most timeout after now. It has no side effects.
func Decide(v View, req Request, now time.Time, timeout time.Duration) Decision {
	if v.Replid == "" {
		// Only the snapshot arriving can be offered, to a replica that can take it now.
		if !v.Arriving || (!v.ArrivingSized && !(req.PSync && req.CapaEOF)) {
			return Decision{Kind: Wait}
		}
		return Decision{Kind: PassThrough, Replid: v.ArrivingReplid, From: v.ArrivingSnapOffset + 1}
	}
	var d Decision
	if req.TryPartial {
		hold, ended := holdAhead(v, req, now, timeout)
		if hold {
			return Decision{Kind: Hold}
		}
		d.HoldEnded = ended
		if d.Refused = partial(v, req); d.Refused == RefusedNone {
			d.Kind, d.Replid, d.From = Continue, v.Replid, req.Offset
			return d
		}
	}
	d.Replid = v.Replid
	switch s := v.SnapshotOffset; {
	case !v.Snapshot:
		d.Kind, d.Why = NeedSnapshot, "a replica needs a full sync and there is no valid snapshot"
	case !v.Backlog || s+1 < v.First || s+1 > v.End+1:
		// The backlog has moved past the byte after the snapshot: the pair cannot make a
		// consistent full sync. Never send it; fetch a new snapshot instead.
		d.Kind, d.Why = NeedSnapshot, fmt.Sprintf("the backlog no longer reaches the snapshot (offset %d, first byte %d)", s, v.First)
	default:
		d.Kind, d.From = FullSync, s+1
	}
	return d
}

// partial is Redis's acceptance test: the ID is the current one, or the previous one and the
// offset is within its history; and every byte from the offset on is in the backlog.
func partial(v View, req Request) Refusal {
	if !req.PSync || strings.HasPrefix(req.Replid, "?") {
		return RefusedFresh
	}
	mine := strings.EqualFold(req.Replid, v.Replid)
	// An unset replid2 is all zeros with second offset -1, so it never lets a PSYNC through.
	second := strings.EqualFold(req.Replid, v.Replid2)
	switch {
	case !mine && second && req.Offset > v.SecondOff:
		return RefusedSecondID
	case !mine && !second:
		return RefusedIDMismatch
	case !v.Backlog || req.Offset < v.First || req.Offset > v.End+1:
		return RefusedNoBacklog
	}
	return RefusedNone
}

// holdAhead reports whether a PSYNC should wait instead of being answered: the replica
// follows this history but asks for an offset past the backlog's end, which happens when
// the proxy lost bytes it had already forwarded (a crash with --backlog-fsync everysec or
// no). The master still has them, so the PSYNC is held until the master link has
// re-delivered up to that offset. It gives up (and the replica gets a full sync, as from
// Redis) after timeout, for an offset further ahead than the backlog could hold, or when the
// history changes.
func holdAhead(v View, req Request, now time.Time, timeout time.Duration) (bool, HoldEnd) {
	held := !req.HeldSince.IsZero()
	if !req.PSync || !v.Backlog || !strings.EqualFold(req.Replid, v.Replid) {
		return false, HoldGoesOn
	}
	next := v.End + 1
	if req.Offset <= next || req.Offset-next > v.Size {
		if held {
			return false, HoldReached
		}
		return false, HoldGoesOn
	}
	if held && now.Sub(req.HeldSince) > timeout {
		return false, HoldTimedOut
	}
	return true, HoldGoesOn
}
