package upstream

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/internal/backoff"
)

// Every request for an RDB costs the master a fork (or, diskless, a fork per transfer), so
// the proxy must never ask faster than a failing transfer fails (design invariant 9). The
// master link and the refresher share one gate: an RDB may be asked for only once the gate's
// next-attempt time has passed; a failed attempt (a transfer cut, an RDB that fails its
// check, a full disk, a refused PSYNC) closes it for a delay that doubles from
// SyncRetryMin up to the refresher's min-interval; a snapshot installed opens it again.
//
// What the gate does not hold back:
//   - a partial resync: after a link that streamed is lost the link asks PSYNC <replid>
//     <offset> at once, as Redis does. If the master answers +FULLRESYNC that is one RDB
//     request without the gate, but only right after a link that streamed, so never twice
//     in a row;
//   - a connection that fails before PSYNC (refused, handshake, AUTH): the link's own
//     reconnect backoff (100 ms to 5 s) paces it, and the master forks for none of them;
//   - -LOADING and -NOMASTERLINK, which Redis retries every second: the master forks for
//     neither;
//   - a new master (Follow): the failures were another server's.
//
// The refresher also keeps its own min-interval between two of its requests, failed or not,
// so its requests never come faster than before the gate; the gate adds that a failed
// refresh holds the main link's next full sync back, and a failed full sync on the main link
// holds the refresher back.

// SyncRetryMin is the gate's first delay after a failed attempt to get an RDB.
const SyncRetryMin = time.Second

// syncGate paces the requests for an RDB from the master (see above). Safe for concurrent use.
type syncGate struct {
	now func() time.Time

	mu       sync.Mutex
	wait     backoff.Backoff
	next     time.Time // no RDB request before this; zero: open
	failures int64     // failed attempts since start
	lastErr  string    // why the last attempt failed; "" after a success
}

// newSyncGate makes a gate whose delays double from SyncRetryMin up to ceiling.
func newSyncGate(ceiling time.Duration) *syncGate {
	return &syncGate{now: time.Now, wait: backoff.Backoff{Min: SyncRetryMin, Max: max(ceiling, SyncRetryMin)}}
}

// until is how long an RDB request must wait now; 0 when the gate is open.
func (g *syncGate) until() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.next.Sub(g.now()), 0)
}

// failed records a failed attempt and closes the gate for the next delay, which it returns.
func (g *syncGate) failed(err error) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.wait.Next()
	g.next = g.now().Add(d)
	g.failures++
	g.lastErr = oneLine(err.Error())
	return d
}

// succeeded opens the gate and starts the delays over: an RDB arrived and was installed.
func (g *syncGate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wait.Reset()
	g.next, g.lastErr = time.Time{}, ""
}

// SyncStatus is the gate as INFO shows it.
type SyncStatus struct {
	Failures  int64         // failed attempts to get an RDB from the master, since start
	LastErr   string        // why the last one failed; "" once an RDB was installed since
	NextIn    time.Duration // how long until the next RDB request may start; 0: now
	LastDelay time.Duration // the delay the last failure set; 0 after a success
}

func (g *syncGate) status() SyncStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return SyncStatus{Failures: g.failures, LastErr: g.lastErr, NextIn: max(g.next.Sub(g.now()), 0),
		LastDelay: g.wait.Current()}
}

// oneLine keeps an error on one INFO line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// syncFailure marks an error of the master link as a failed attempt to get an RDB, which the
// gate paces (see isSyncFailure).
type syncFailure struct{ err error }

func (e *syncFailure) Error() string { return e.err.Error() }
func (e *syncFailure) Unwrap() error { return e.err }

// failedSync marks err as a failed attempt to get an RDB; nil stays nil.
func failedSync(err error) error {
	if err == nil {
		return nil
	}
	var sf *syncFailure
	if errors.As(err, &sf) {
		return err
	}
	return &syncFailure{err}
}

func isSyncFailure(err error) bool {
	var sf *syncFailure
	return errors.As(err, &sf)
}

// syncDelay is how long the link's next attempt must wait for the gate, given how the last
// one ended: after a failed attempt to get an RDB, the delay that failure sets; while the
// proxy holds no history (so its next PSYNC asks for an RDB), what is left of the gate's
// delay; otherwise nothing (a partial resync is retried at once).
func (l *Link) syncDelay(err error) time.Duration {
	if isSyncFailure(err) {
		return l.gate.failed(err)
	}
	if replid, _ := l.h.Current(); replid == "" {
		return l.gate.until()
	}
	return 0
}

// SyncStatus returns the gate of RDB requests to the master.
func (l *Link) SyncStatus() SyncStatus { return l.gate.status() }
