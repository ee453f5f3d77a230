package downstream

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/internal/randhex"
	"github.com/psync-proxy/psync-proxy/resp"
)

// fullSync sends +FULLRESYNC, the cached snapshot with length framing (every replica
// understands it and needs no ACK before the stream), then the stream from its offset + 1.
func (r *session) fullSync(ctx context.Context, p history.Pending, g history.Grant, turn *fullSyncTurn) error {
	snap := g.Snapshot
	if err := snap.Verify(g.File); err != nil {
		if r.s.h.DiscardSnapshot(snap, err) {
			r.s.cfg.Refresh("the snapshot was discarded")
		}
		return fmt.Errorf("the snapshot fails its check, not sent: %w", err)
	}
	r.s.log.Infof("Starting full resync of replica %s from snapshot %s:%d (%d bytes)", r.addr, p.Replid, snap.Offset, snap.Size)
	if w := snap.NewerFormat(); w != "" {
		r.s.log.Warnf("Full resync of replica %s: %s", r.addr, w)
	}
	if err := r.write(r.fullResyncHead(p.Replid, snap.Offset, resp.PayloadHeader{Len: snap.Size})); err != nil {
		return err
	}
	err := r.sendingSnapshot(turn, func() error { return r.sendSnapshot(ctx, g, snap.Size) })
	if err != nil {
		return err
	}
	return r.afterSnapshot(ctx, g.Cursor)
}

// fullResyncHead is what precedes the snapshot: +FULLRESYNC for PSYNC (SYNC has none), then
// the payload's header.
func (r *session) fullResyncHead(replid string, off int64, hdr resp.PayloadHeader) []byte {
	var head []byte
	if r.req.PSync {
		head = fmt.Appendf(head, "+FULLRESYNC %s %d\r\n", replid, off)
	}
	return resp.AppendPayloadHeader(head, hdr)
}

// sendingSnapshot runs send in state send_bulk, counted as a full sync in progress, and gives
// the turn back when it is done.
func (r *session) sendingSnapshot(turn *fullSyncTurn, send func() error) error {
	r.state.Store(stateSendBulk)
	r.s.stats.fullActive.Add(1)
	err := send()
	r.s.stats.fullActive.Add(-1)
	turn.done()
	return err
}

// afterSnapshot ends a full sync: an rdb-only client is done; a replica goes online and gets
// the stream from cur, the byte after the snapshot.
func (r *session) afterSnapshot(ctx context.Context, cur backlog.StreamCursor) error {
	if r.RDBOnly {
		r.s.log.Infof("Snapshot sent to rdb-only replica %s", r.addr)
		return nil
	}
	r.s.log.Infof("Synchronization with replica %s succeeded", r.addr)
	r.goOnline()
	return r.stream(ctx, cur)
}

// sendSnapshot copies the snapshot file to the replica in pieces, each a sendfile with its
// own write deadline, paced to --full-sync-rate-limit when set.
func (r *session) sendSnapshot(ctx context.Context, g history.Grant, size int64) error {
	rate := r.s.cfg.FullSyncRateLimit
	piece := int64(4 << 20)
	if rate > 0 {
		piece = min(piece, max(rate/10, 64<<10)) // about ten pieces a second
	}
	start := time.Now()
	for sent := int64(0); sent < size; {
		r.conn.SetWriteDeadline(time.Now().Add(r.timeout()))
		n, err := io.CopyN(r.conn, g.File, min(piece, size-sent))
		sent += n
		r.s.stats.netOut.Add(n)
		if err != nil {
			return fmt.Errorf("sending snapshot (%d of %d bytes): %w", sent, size, err)
		}
		if rate > 0 {
			due := time.Duration(float64(sent) / float64(rate) * float64(time.Second))
			if d := due - time.Since(start); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// rdbTrailer is the RDB's CRC64: held back from pass-through replicas until the whole
// snapshot has passed its check, so that a bad one never reaches them whole.
const rdbTrailer = 8

// passThrough sends a replica the snapshot the master is still sending, then the stream after
// it. The payload is framed as the master framed it ($<len>, or $EOF:<mark> with a mark of
// the proxy's own), sent with sendfile from the file as it grows.
func (r *session) passThrough(ctx context.Context, g history.Grant, turn *fullSyncTurn) error {
	a := g.Arriving
	hdr := resp.PayloadHeader{Len: a.Size}
	if a.Size < 0 {
		hdr.Mark = randhex.String(40)
	}
	r.s.log.Infof("Starting full resync of replica %s from snapshot %s:%d while it arrives from the master", r.addr, a.Replid, a.Offset)
	if err := r.write(r.fullResyncHead(a.Replid, a.Offset, hdr)); err != nil {
		return err
	}
	if err := r.sendingSnapshot(turn, func() error { return r.follow(ctx, g) }); err != nil {
		return err
	}
	if hdr.Marked() {
		if err := r.endMarked(ctx, hdr.Mark); err != nil {
			return err
		}
	}
	if r.RDBOnly {
		return r.afterSnapshot(ctx, nil)
	}
	cur, gen, err := r.s.h.CursorAfter(a.Replid, a.Offset)
	if err != nil {
		return fmt.Errorf("cannot stream after the snapshot: %w", err)
	}
	defer cur.Close()
	if !r.s.answered(r, gen) {
		return history.ErrChanged
	}
	return r.afterSnapshot(ctx, cur)
}

// endMarked sends the EOF mark. A replica finds the mark only at the end of one of its reads,
// so nothing may follow it until the replica has loaded the RDB and says so with its first
// REPLCONF ACK, as a master waits (protocol.md §2.4).
func (r *session) endMarked(ctx context.Context, mark string) error {
	select {
	case <-r.acked: // an ACK from before the mark does not count
	default:
	}
	if err := r.write([]byte(mark)); err != nil {
		return err
	}
	if r.RDBOnly {
		return nil
	}
	// A replica loading a large RDB sends only newlines until it is done, and they count as
	// traffic, as for Redis: the reader drops it (ending ctx) only after repl-timeout of
	// silence, however long the load takes.
	r.conn.SetIdleTimeout(r.timeout())
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.acked:
		return nil
	}
}

// follow copies the growing file to the replica until the transfer has ended well and every
// byte is sent.
func (r *session) follow(ctx context.Context, g history.Grant) error {
	sent := int64(0)
	for {
		st := g.Arriving.Status()
		if st.Done && st.Err != nil {
			return fmt.Errorf("the snapshot from the master failed; the replica never gets it whole: %w", st.Err)
		}
		limit := st.Written
		if !st.Done {
			limit -= rdbTrailer
		}
		if limit > sent {
			r.conn.SetWriteDeadline(time.Now().Add(r.timeout()))
			n, err := io.CopyN(r.conn, g.File, limit-sent)
			sent += n
			r.s.stats.netOut.Add(n)
			if err != nil {
				return fmt.Errorf("sending snapshot (%d bytes sent): %w", sent, err)
			}
			continue
		}
		if st.Done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-st.Changed:
		}
	}
}
