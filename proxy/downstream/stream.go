package downstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// stream sends the backlog to the replica from its cursor, byte for byte, until an error.
// The bytes go straight from the backlog's storage to the socket (one writev, up to
// streamWrite bytes), so a lagging replica catches up in large writes. While the session
// waits for more, the master link's goroutine may write new bytes for it (fanout.go); both
// move the cursor under r.fast.mu. A replica that falls behind the backlog's first byte is
// disconnected, never moved forward.
func (r *session) stream(ctx context.Context, cur backlog.StreamCursor) error {
	const streamWrite = 1 << 20
	f := &r.fast
	// Inline writes go to the raw socket, so only plain TCP replicas get them; a TLS
	// replica's bytes all pass through its tls.Conn from this goroutine.
	var recheck *time.Timer // set on the fast path; see waitPoke
	if tcp, ok := r.conn.RawTCP(); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			f.mu.Lock()
			f.cur, f.raw = cur, raw
			f.mu.Unlock()
			r.s.addFast(r)
			recheck = time.NewTimer(pokeRecheck)
			defer recheck.Stop()
		}
	}
	for {
		f.mu.Lock()
		off := cur.Offset()
		if off > cur.End() {
			// Idle: the master link may deliver for us while we wait.
			f.idle = true
			f.mu.Unlock()
			var err error
			if recheck != nil {
				err = waitPoke(ctx, f.poke, recheck)
			} else {
				err = cur.WaitAt(ctx, off)
			}
			f.mu.Lock()
			f.idle = false
			moved := cur.Offset() != off
			f.mu.Unlock()
			// off may have been left behind by inline writes; only the cursor's own
			// offset can be trimmed, and WriteTo checks that.
			if err != nil && !(moved && errors.Is(err, backlog.ErrTrimmed)) {
				return streamErr(cur, err)
			}
			continue
		}
		f.mu.Unlock()
		// Not idle, so the cursor is ours alone until the next wait.
		r.conn.SetWriteDeadline(time.Now().Add(r.timeout()))
		// On plain TCP the cursor writes with writev or sendfile; a *tls.Conn offers
		// neither, so the cursor falls back to Write, which encrypts.
		n, err := cur.WriteTo(ctx, r.conn.Conn, streamWrite)
		r.s.stats.netOut.Add(n)
		if err != nil {
			return streamErr(cur, err)
		}
	}
}

// pokeRecheck bounds how long an idle fast-path session goes without looking at the backlog
// itself. FanOut pokes it after every publish it cannot fully serve, so this is only a
// safety net: were a poke ever missed, the replica would be late by this much, never stalled.
const pokeRecheck = time.Second

// waitPoke waits until FanOut pokes the session, pokeRecheck has passed, or ctx ends (the
// session is disconnected, or its history replaced, which disconnects it too).
func waitPoke(ctx context.Context, poke <-chan struct{}, recheck *time.Timer) error {
	recheck.Reset(pokeRecheck)
	select {
	case <-poke:
		return nil
	case <-recheck.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func streamErr(cur backlog.StreamCursor, err error) error {
	if errors.Is(err, backlog.ErrTrimmed) {
		return fmt.Errorf("it fell behind the backlog at offset %d; it will need a new sync", cur.Offset())
	}
	return err
}
