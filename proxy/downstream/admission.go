package downstream

import (
	"slices"
	"sync"
)

// admission bounds how many full syncs send their snapshot at once
// (--max-concurrent-full-syncs). The others wait in order of arrival: a waiter keeps its
// place while its session goes off to send keep-alive newlines.
type admission struct {
	mu    sync.Mutex
	free  int
	queue []chan struct{} // waiters, oldest first; a waiter's channel is closed when admitted
}

func newAdmission(n int) *admission { return &admission{free: n} }

// enter admits the caller at once (nil) or returns a channel that is closed when its turn
// comes. Either way the caller must end with leave once admitted, or cancel the ticket.
func (a *admission) enter() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.free > 0 && len(a.queue) == 0 {
		a.free--
		return nil
	}
	t := make(chan struct{})
	a.queue = append(a.queue, t)
	return t
}

// leave hands the caller's place to the oldest waiter, or frees it.
func (a *admission) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) > 0 {
		close(a.queue[0])
		a.queue = slices.Delete(a.queue, 0, 1)
		return
	}
	a.free++
}

// cancel withdraws a waiter that gives up. If its turn had already come, the place passes on.
func (a *admission) cancel(t chan struct{}) {
	a.mu.Lock()
	if i := slices.Index(a.queue, t); i >= 0 {
		a.queue = slices.Delete(a.queue, i, i+1)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.leave()
}

// waiting returns how many full syncs wait for their turn.
func (a *admission) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}

// fullSyncTurn is one session's place in the admission queue (nil a: no bound).
type fullSyncTurn struct {
	a        *admission
	ticket   chan struct{} // waiting for a turn; nil before asking or once admitted
	admitted bool
}

// ready reports whether the session may send a snapshot now, joining the queue on the first
// call. When it must wait, the returned channel is closed when its turn comes.
func (t *fullSyncTurn) ready() (bool, <-chan struct{}) {
	if t.a == nil || t.admitted {
		return true, nil
	}
	if t.ticket == nil {
		if t.ticket = t.a.enter(); t.ticket == nil {
			t.admitted = true
			return true, nil
		}
	}
	select {
	case <-t.ticket:
		t.ticket, t.admitted = nil, true
		return true, nil
	default:
		return false, t.ticket
	}
}

// done gives the turn back (after the snapshot is sent, or when the session ends). Idempotent.
func (t *fullSyncTurn) done() {
	switch {
	case t.a == nil:
	case t.admitted:
		t.admitted = false
		t.a.leave()
	case t.ticket != nil:
		t.a.cancel(t.ticket)
		t.ticket = nil
	}
}
