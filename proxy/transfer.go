package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// transfer is an RDB the main link is receiving from the master (the first snapshot, or a
// new history's). Replicas waiting for a first snapshot are served from it as it arrives, so
// their full sync takes about as long as a direct one instead of waiting for the whole file.
type transfer struct {
	replid string
	off    int64
	size   int64  // payload length, -1 while unknown (EOF-marked transfer)
	path   string // the temporary file being written

	mu      sync.Mutex
	written int64
	done    bool
	err     error         // why the transfer failed, once done
	wake    chan struct{} // closed and replaced at each change
}

func newTransfer(replid string, off, size int64, path string) *transfer {
	return &transfer{replid: replid, off: off, size: size, path: path, wake: make(chan struct{})}
}

// advance records n more bytes written to the file.
func (t *transfer) advance(n int64) {
	t.mu.Lock()
	t.written += n
	close(t.wake)
	t.wake = make(chan struct{})
	t.mu.Unlock()
}

// end records the outcome: nil once the snapshot is checked and installed.
func (t *transfer) end(err error) {
	t.mu.Lock()
	if !t.done {
		t.done, t.err = true, err
		close(t.wake)
		t.wake = make(chan struct{})
	}
	t.mu.Unlock()
}

// transferStatus is a transfer's progress at one moment.
type transferStatus struct {
	written int64
	done    bool
	err     error
	wake    <-chan struct{} // closed at the next change
}

func (t *transfer) status() transferStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return transferStatus{t.written, t.done, t.err, t.wake}
}

// rdbTrailer is the RDB's CRC64: held back from pass-through replicas until the whole
// snapshot has passed its check, so that a bad one never reaches them whole.
const rdbTrailer = 8

// passThrough sends a replica the snapshot the master is still sending, then the stream after
// it. The payload is framed as the master framed it ($<len>, or $EOF:<mark> with a mark of
// the proxy's own), sent with sendfile from the file as it grows.
func (p *Proxy) passThrough(ctx context.Context, r *replica, req syncRequest, plan *syncPlan, turn *fullSyncTurn) error {
	t := plan.transfer
	var head []byte
	if req.psync {
		head = fmt.Appendf(head, "+FULLRESYNC %s %d\r\n", t.replid, t.off)
	}
	var mark string
	if t.size >= 0 {
		head = fmt.Appendf(head, "$%d\r\n", t.size)
	} else {
		mark = randomHex(40)
		head = fmt.Appendf(head, "$EOF:%s\r\n", mark)
	}
	p.log.Infof("Starting full resync of replica %s from snapshot %s:%d while it arrives from the master", r.addr, t.replid, t.off)
	if err := p.write(r, head); err != nil {
		return err
	}
	r.state.Store(stateSendBulk)
	p.stats.fullSyncsActive.Add(1)
	err := p.followTransfer(ctx, r, plan)
	p.stats.fullSyncsActive.Add(-1)
	turn.done()
	if err != nil {
		return err
	}
	if mark != "" {
		// A replica finds the mark only at the end of one of its reads, so nothing may follow
		// it until the replica has loaded the RDB and says so with its first REPLCONF ACK, as
		// a master waits (protocol.md §2.4).
		select {
		case <-r.acked: // an ACK from before the mark does not count
		default:
		}
		if err := p.write(r, []byte(mark)); err != nil {
			return err
		}
		if !r.client.rdbOnly {
			// A replica loading a large RDB sends only newlines until it is done, and they
			// count as traffic, as for Redis: the reader drops it (ending ctx) only after
			// repl-timeout of silence, however long the load takes.
			r.conn.setIdleTimeout(p.timeout())
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-r.acked:
			}
		}
	}
	if r.client.rdbOnly {
		p.log.Infof("Snapshot sent to rdb-only replica %s", r.addr)
		return nil
	}
	p.mu.Lock()
	var cur backlog.StreamCursor
	err = errors.New("the replication history changed")
	if strings.EqualFold(p.replid, t.replid) && p.ring != nil {
		cur, err = backlog.NewStreamCursor(p.ring, t.off+1)
	}
	if err == nil {
		r.answered = true
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("cannot stream after the snapshot: %w", err)
	}
	defer cur.Close()
	p.log.Infof("Synchronization with replica %s succeeded", r.addr)
	p.goOnline(r, req)
	return p.stream(ctx, r, cur)
}

// followTransfer copies the growing file to the replica until the transfer has ended well and
// every byte is sent.
func (p *Proxy) followTransfer(ctx context.Context, r *replica, plan *syncPlan) error {
	t := plan.transfer
	sent := int64(0)
	for {
		st := t.status()
		if st.done && st.err != nil {
			return fmt.Errorf("the snapshot from the master failed; the replica never gets it whole: %w", st.err)
		}
		limit := st.written
		if !st.done {
			limit -= rdbTrailer
		}
		if limit > sent {
			r.conn.SetWriteDeadline(time.Now().Add(p.timeout()))
			n, err := io.CopyN(r.conn, plan.file, limit-sent)
			sent += n
			p.stats.netReplOut.Add(n)
			if err != nil {
				return fmt.Errorf("sending snapshot (%d bytes sent): %w", sent, err)
			}
			continue
		}
		if st.done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-st.wake:
		}
	}
}
