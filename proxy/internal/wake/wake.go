// Package wake has the one way psync-proxy tells waiters that something changed: a channel
// closed on the change and replaced by a new one for the next.
package wake

// Broadcast wakes every waiter at once. The zero value is ready to use. It is not safe for
// concurrent use: the lock of the state it announces changes of guards it, so a waiter reads
// the state and takes the channel in one critical section and never misses a change.
type Broadcast struct {
	ch chan struct{}
}

// Wait returns a channel that the next Notify closes.
func (b *Broadcast) Wait() <-chan struct{} {
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify wakes everyone waiting on a channel from Wait. It costs nothing while nobody waits.
func (b *Broadcast) Notify() {
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
