package upstream

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/resp"
)

// Resync outcomes of a master change, as INFO shows them.
const (
	ResyncPending = "pending" // the new master has not answered PSYNC yet
	ResyncPartial = "partial" // it continued the proxy's history (+CONTINUE)
	ResyncFull    = "full"    // it could not (+FULLRESYNC): a new history from its RDB
)

// switchState records the master changes made by Follow. Guarded by Link.mu.
type switchState struct {
	changes, partial, full int64
	last                   time.Time
	source                 string
	resync                 string // "" before the first change, then a Resync* value
	// syncServing: the new master answered +FULLRESYNC while the proxy holds a history it
	// keeps serving (see Status.SyncServing). Reset when the connection ends.
	syncServing bool
}

// SwitchStatus is what INFO shows of the master changes since the start.
type SwitchStatus struct {
	Changes int64     // Follow calls that changed the master
	Partial int64     // changes whose first answer was +CONTINUE
	Full    int64     // changes whose first answer was +FULLRESYNC
	Last    time.Time // the last change; zero if none
	Source  string    // what asked for the last change ("replicaof", "sentinel", ...)
	Resync  string    // the last change's outcome: "", ResyncPending, ResyncPartial, ResyncFull
}

func (s *switchState) status() SwitchStatus {
	return SwitchStatus{Changes: s.changes, Partial: s.partial, Full: s.full, Last: s.last, Source: s.source, Resync: s.resync}
}

// SameMaster reports whether a and b name the same master: the same port and the same host,
// compared case-insensitively, as Redis's REPLICAOF compares them.
func SameMaster(a, b Master) bool {
	ah, ap, err1 := net.SplitHostPort(a.Addr)
	bh, bp, err2 := net.SplitHostPort(b.Addr)
	if err1 != nil || err2 != nil {
		return a.Addr == b.Addr
	}
	return ap == bp && strings.EqualFold(ah, bh)
}

// Follow makes m the master and reports true, unless m is the master followed now: then it
// does nothing and reports false (Redis: "+OK Already connected to specified master"), so that
// Sentinel's SLAVEOF and the proxy's own Sentinel watcher, both reporting one failover, make
// one switch and never a flap. A switch ends the current attempt at once (a dial, a
// handshake, an RDB transfer or the stream), cuts any backoff short, and the next connection
// goes to m with the history the proxy holds: PSYNC <replid> <offset>, which a promoted
// replica of the same history answers with +CONTINUE <its new ID>. source says who asked
// (INFO master_last_change_source). m must pass Check.
func (l *Link) Follow(m Master, source string) bool {
	l.mu.Lock()
	if SameMaster(l.master, m) {
		l.mu.Unlock()
		return false
	}
	l.master = m
	l.sw.changes++
	l.sw.last, l.sw.source, l.sw.resync = time.Now(), source, ResyncPending
	if l.cancel != nil {
		l.cancel()
	}
	l.mu.Unlock()
	select {
	case l.follow <- struct{}{}:
	default:
	}
	return true
}

// awaitMaster waits for a first Follow when the link starts without a master (Sentinel mode,
// no Sentinel answered yet). It reports false when ctx ends first.
func (l *Link) awaitMaster(ctx context.Context) bool {
	l.log.Info("No master to replicate yet: waiting for Sentinel or REPLICAOF to name one")
	for l.Master().Addr == "" {
		select {
		case <-ctx.Done():
			return false
		case <-l.follow:
		}
	}
	return true
}

// moved reports whether the attempt that was following m ended because Follow named another
// master, and logs it.
func (l *Link) moved(m Master, err error) bool {
	now := l.Master()
	if now == m {
		return false
	}
	l.log.Infof("Leaving MASTER %s to follow %s (%v)", m.Addr, now.Addr, err)
	// The token Follow left would only cut the next backoff short.
	select {
	case <-l.follow:
	default:
	}
	return true
}

// noteAnswer records the first answer to PSYNC after a master change: whether the new
// master continued the history. hadHistory says whether the proxy held one to serve while
// a full resync's RDB arrives.
func (l *Link) noteAnswer(full, hadHistory bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sw.resync != ResyncPending {
		return
	}
	addr := l.master.Addr
	if full {
		l.sw.full++
		l.sw.resync = ResyncFull
		l.sw.syncServing = hadHistory
		l.log.Warnf("MASTER %s cannot continue the proxy's history (it is not of the same history, or the proxy holds bytes it never had): full resync; replicas will full-sync from the new snapshot", addr)
		return
	}
	l.sw.partial++
	l.sw.resync = ResyncPartial
	l.log.Infof("MASTER %s continued the proxy's history: partial resynchronization after the master change", addr)
}

// dropUnfinished drops the start of a command the proxy staged but never published, before
// the first PSYNC to a new master. The old master can send the rest of it, byte-wise; a
// promoted replica cannot: its offset, and so the point where its history branched, only
// ever moves at whole commands (Redis's commandProcessed), so asking it for the byte after a
// partial command would look like bytes it never had and cost a full resync. The command is
// asked for again from its first byte. Nothing is dropped once a command was published
// before its end (longer than the backlog can hold back): then the boundary is gone.
func (l *Link) dropUnfinished(bl backlog.Backlog) {
	l.mu.Lock()
	pending := l.sw.resync == ResyncPending
	l.mu.Unlock()
	if !pending || l.scanErr != nil || l.scan == nil || l.scan.Boundary() != bl.End() {
		return
	}
	n := bl.Staged()
	if n == 0 {
		return
	}
	bl.DropStaged()
	l.scan = resp.NewScanner(bl.End()+1, streamLimits())
	l.log.Infof("Dropped the %d bytes of an unfinished command after offset %d: the new master is asked for it from its first byte", n, bl.End())
}
