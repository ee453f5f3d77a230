package proxy

import (
	"slices"
	"sync"
	"syscall"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// The stream normally reaches a replica through its session goroutine, woken when the backlog
// grows. On this kind of machine each goroutine wake-up through the Go scheduler costs
// microseconds that a C relay does not pay, and they add up to most of the proxy's added
// latency. So the upstream goroutine, right after appending, also writes the new bytes itself
// to every replica that is idle at exactly that offset, with one non-blocking write. Whatever
// the socket does not take at once is left to the session as before. Either path moves the
// same cursor, under the replica's fast lock, so no byte is sent twice or skipped.

// fastPath is a streaming replica's state shared with the upstream goroutine.
type fastPath struct {
	mu   sync.Mutex
	idle bool                 // the session waits for bytes beyond cur; the upstream may write for it
	cur  backlog.StreamCursor // the replica's cursor; moved under mu by whoever writes
	raw  syscall.RawConn
}

// addFast makes r eligible for inline writes. Caller holds mu.
func (p *Proxy) addFastLocked(r *replica) {
	old := p.fast.Load()
	var list []*replica
	if old != nil {
		list = slices.Clone(*old)
	}
	list = append(list, r)
	p.fast.Store(&list)
}

// removeFastLocked takes r off the inline-write list. Caller holds mu.
func (p *Proxy) removeFastLocked(r *replica) {
	old := p.fast.Load()
	if old == nil || !slices.Contains(*old, r) {
		return
	}
	list := slices.DeleteFunc(slices.Clone(*old), func(x *replica) bool { return x == r })
	p.fast.Store(&list)
}

// fanOut writes b, the bytes just appended to ring from offset start, to every replica idle at
// start. It never waits: a replica whose lock is busy, or whose socket takes nothing, is left
// to its session.
func (p *Proxy) fanOut(ring backlog.Backlog, start int64, b []byte) {
	list := p.fast.Load()
	if list == nil {
		return
	}
	for _, r := range *list {
		f := &r.fast
		if !f.mu.TryLock() {
			continue
		}
		if f.idle && f.cur != nil && f.cur.On(ring) && f.cur.Offset() == start {
			if n := tryWrite(f.raw, b); n > 0 && f.cur.Skip(int64(n)) == nil {
				p.stats.netReplOut.Add(int64(n))
			}
		}
		f.mu.Unlock()
	}
}

// tryWrite makes one non-blocking write of b and returns how many bytes the socket took.
func tryWrite(raw syscall.RawConn, b []byte) int {
	var n int
	err := raw.Write(func(fd uintptr) bool {
		k, err := syscall.Write(int(fd), b)
		if err == nil {
			n = k
		}
		return true // one attempt only, never wait for the poller
	})
	if err != nil {
		return 0
	}
	return n
}
