package history

import (
	"sync"

	"github.com/psync-proxy/psync-proxy/proxy/internal/wake"
)

// Arriving is an RDB the master link is receiving (the first snapshot, or a new history's).
// Replicas waiting for a first snapshot are served from its file as it grows, so their full
// sync takes about as long as a direct one instead of waiting for the whole file.
type Arriving struct {
	Replid string
	Offset int64
	Size   int64  // payload length, -1 while unknown (EOF-marked transfer)
	Path   string // the temporary file being written

	mu      sync.Mutex
	written int64
	done    bool
	err     error // why the transfer failed, once done
	changed wake.Broadcast
}

// ArrivingStatus is an arriving snapshot's progress at one moment.
type ArrivingStatus struct {
	Written int64
	Done    bool
	Err     error           // why it failed; nil once checked and installed
	Changed <-chan struct{} // closed at the next change
}

// advance records n more bytes written to the file.
func (a *Arriving) advance(n int64) {
	a.mu.Lock()
	a.written += n
	a.changed.Notify()
	a.mu.Unlock()
}

// End records the outcome: nil once the snapshot is checked and installed.
func (a *Arriving) End(err error) {
	a.mu.Lock()
	if !a.done {
		a.done, a.err = true, err
		a.changed.Notify()
	}
	a.mu.Unlock()
}

// Status returns the progress now and a channel closed at the next change.
func (a *Arriving) Status() ArrivingStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ArrivingStatus{a.written, a.done, a.err, a.changed.Wait()}
}
