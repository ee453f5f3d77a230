package downstream

import (
	"context"
	"errors"
	"time"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/history"
)

// sync waits until the history can answer, keeping the replica alive with newlines as a
// master does while it prepares an RDB, then answers and streams. The decision is the
// history's (history.Decide); what follows from it is done here: the log lines and counters,
// a request for a new snapshot, the turn under --max-concurrent-full-syncs.
func (r *session) sync(ctx context.Context) error {
	h, log := r.s.h, r.s.log
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// An rdb-only client wants the snapshot and nothing after it, so never a partial resync.
	req := history.Request{PSync: r.req.PSync, Replid: r.req.Replid, Offset: r.req.Offset,
		CapaEOF: r.CapaEOF, TryPartial: r.req.PSync && !r.RDBOnly}
	turn := &fullSyncTurn{a: r.s.admit}
	defer turn.done()
	for {
		p := h.Decide(req, time.Now(), r.timeout())
		r.noteDecision(&req, p)
		wait := p.Changed
		switch p.Kind {
		case history.NeedSnapshot:
			r.s.cfg.Refresh(p.Why)
		case history.FullSync, history.PassThrough, history.Continue:
			if p.Kind != history.Continue {
				ok, w := turn.ready()
				if !ok {
					wait = w
					break
				}
			}
			g, err := h.Grant(p)
			switch {
			case err == nil:
				return r.answer(ctx, p, g, turn)
			case errors.Is(err, history.ErrChanged), errors.Is(err, backlog.ErrTrimmed):
				continue // decide again against what changed
			default:
				log.Errorf("Cannot serve the snapshot to replica %s: %v", r.addr, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		case <-tick.C:
			// A newline is allowed only before the reply and payload (design invariant 8).
			if err := r.write([]byte("\n")); err != nil {
				return err
			}
		}
	}
}

// noteDecision logs a decision in Redis's words and counts it, and updates req for the next.
func (r *session) noteDecision(req *history.Request, p history.Pending) {
	log := r.s.log
	switch p.HoldEnded {
	case history.HoldReached:
		log.Infof("Replica %s: the backlog now reaches offset %d, answering its PSYNC", r.addr, req.Offset)
	case history.HoldTimedOut:
		log.Warnf("Replica %s: the master did not re-deliver up to offset %d within repl-timeout (backlog ends at %d); full sync",
			r.addr, req.Offset, p.View.End)
	}
	if p.Kind == history.Hold {
		if req.HeldSince.IsZero() {
			req.HeldSince = time.Now()
			log.Infof("Replica %s asks for offset %d, %d bytes past the backlog's end: holding its PSYNC until the master re-delivers them",
				r.addr, req.Offset, req.Offset-p.View.End-1)
		}
		return
	}
	req.HeldSince = time.Time{}
	if p.Refused == history.RefusedNone {
		return
	}
	// Considered once: from now on the request is for a full sync.
	req.TryPartial = false
	if msg := p.Refused.Message(p.View, *req, r.addr); msg != "" {
		log.Info(msg)
	}
	if p.Refused.Counted() {
		r.s.stats.partialErr.Add(1)
	}
	log.Infof("Full resync requested by replica %s", r.addr)
}

// answer serves a granted decision.
func (r *session) answer(ctx context.Context, p history.Pending, g history.Grant, turn *fullSyncTurn) error {
	if g.Cursor != nil {
		defer g.Cursor.Close()
	}
	if g.File != nil {
		defer g.File.Close()
	}
	switch p.Kind {
	case history.PassThrough:
		r.s.stats.syncFull.Add(1)
		return r.passThrough(ctx, g, turn)
	case history.FullSync:
		r.s.stats.syncFull.Add(1)
		if !r.s.answered(r, g.Gen) {
			return history.ErrChanged
		}
		return r.fullSync(ctx, p, g, turn)
	}
	if !r.s.answered(r, g.Gen) {
		return history.ErrChanged
	}
	r.s.stats.partialOK.Add(1)
	r.s.log.Infof("Partial resynchronization request from %s accepted. Sending %d bytes of backlog starting from offset %d.",
		r.addr, g.Cursor.End()-p.From+1, p.From)
	reply := "+CONTINUE\r\n"
	if r.CapaPsync2 {
		reply = "+CONTINUE " + p.Replid + "\r\n"
	}
	if err := r.write([]byte(reply)); err != nil {
		return err
	}
	r.goOnline()
	return r.stream(ctx, g.Cursor)
}
