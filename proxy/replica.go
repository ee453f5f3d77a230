package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// Replica states as INFO names them.
const (
	stateWaitBgsave int32 = iota // asked, not answered yet, or answered +FULLRESYNC
	stateSendBulk                // receiving the snapshot
	stateOnline                  // streaming
)

func stateName(st int32) string {
	return [...]string{"wait_bgsave", "send_bulk", "online"}[st]
}

// replica is one downstream connection after PSYNC or SYNC. Its session goroutine writes; a
// second goroutine reads ACKs. Neither ever blocks the upstream link: the stream reaches the
// replica through its own cursor in the shared backlog.
type replica struct {
	id     int64
	addr   string // peer address, for logs
	ip     string // announced or peer IP, for INFO
	port   int    // announced listening port
	conn   *trackedConn
	client *client
	cancel context.CancelFunc
	kickMu sync.Once

	answered bool // got +CONTINUE or +FULLRESYNC; guarded by Proxy.mu
	// heldSince is when the session started holding a PSYNC ahead of the backlog's end
	// (see holdAheadLocked); zero when not holding. Guarded by Proxy.mu.
	heldSince time.Time

	fast fastPath // see fanout.go

	acked chan struct{} // gets a token on each REPLCONF ACK (capacity 1)

	state   atomic.Int32
	ackOff  atomic.Int64
	ackTime atomic.Int64 // unix nanoseconds of the last ACK or newline
}

func (r *replica) kick() {
	r.kickMu.Do(func() {
		r.cancel()
		r.conn.Close()
	})
}

func (p *Proxy) startReplica(conn redcon.Conn, c *client, req syncRequest) {
	host, _, _ := net.SplitHostPort(conn.RemoteAddr())
	r := &replica{
		id:     c.id,
		addr:   conn.RemoteAddr(),
		ip:     host,
		port:   c.listeningPort,
		conn:   c.conn,
		client: c,
		acked:  make(chan struct{}, 1),
	}
	if c.ipAddress != "" {
		r.ip = c.ipAddress
	}
	c.conn.becomeReplica()
	dc := conn.Detach()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		dc.Close()
		p.clients.Add(-1)
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	r.cancel = cancel
	p.replicas[r] = struct{}{}
	p.wg.Add(1) // under mu, so Serve's Wait cannot have started (it sets closing first)
	go func() {
		defer p.wg.Done()
		p.serveReplica(ctx, r, dc, req)
	}()
}

func (p *Proxy) dropReplica(r *replica) {
	r.kick()
	p.mu.Lock()
	p.removeFastLocked(r)
	delete(p.replicas, r)
	p.mu.Unlock()
	p.clients.Add(-1)
}

// serveReplica answers the replica's PSYNC or SYNC and then streams to it until either side ends.
func (p *Proxy) serveReplica(ctx context.Context, r *replica, dc redcon.DetachedConn, req syncRequest) {
	defer p.dropReplica(r)
	// Replies queued for commands pipelined before PSYNC go out first.
	if err := dc.Flush(); err != nil {
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer r.kick()
		p.readReplica(r, dc)
	}()
	defer func() {
		r.kick()
		<-readerDone
	}()
	what := "PSYNC " + req.replid + " " + itoa(req.offset)
	if !req.psync {
		what = "SYNC"
	}
	p.log.Infof("Replica %s asks for synchronization (%s)", r.addr, what)
	err := p.syncReplica(ctx, r, req)
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, backlog.ErrClosed), errors.Is(err, net.ErrClosed):
		p.log.Infof("Connection with replica %s lost.", r.addr)
	default:
		p.log.Warnf("Connection with replica %s lost: %v", r.addr, err)
	}
}

// readReplica consumes what the replica sends: REPLCONF ACK (recorded for INFO) and keep-alive
// newlines (seen by trackedConn). Anything else would make a Redis master reply on the
// replication link, which Redis 7 punishes by closing the replica; so do we.
func (p *Proxy) readReplica(r *replica, dc redcon.DetachedConn) {
	for {
		cmd, err := dc.ReadCommand()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				p.log.Warnf("Disconnecting timedout replica (streaming sync): %s", r.addr)
			}
			return
		}
		r.ackTime.Store(time.Now().UnixNano())
		if len(cmd.Args) >= 3 && strings.EqualFold(string(cmd.Args[0]), "replconf") {
			switch strings.ToLower(string(cmd.Args[1])) {
			case "ack":
				if off, err := strconv.ParseInt(string(cmd.Args[2]), 10, 64); err == nil && off > r.ackOff.Load() {
					r.ackOff.Store(off)
				}
				select {
				case r.acked <- struct{}{}:
				default:
				}
				continue
			case "getack":
				continue
			}
		}
		p.log.Warnf("Closing replica %s: it sent '%s' on the replication link", r.addr, truncate(string(cmd.Args[0]), 64))
		return
	}
}

// syncPlan is the answer to one PSYNC: a partial resync from cur, or a full one from snap.
type syncPlan struct {
	replid   string
	cur      backlog.StreamCursor // closed by syncReplica when the session ends
	snap     *snapshot
	transfer *transfer // a snapshot still arriving, served as it comes (with file)
	file     *os.File  // open snapshot for a full sync
}

// syncReplica waits until the proxy can answer, keeping the replica alive with newlines as a
// master does while it prepares an RDB, then answers and streams.
func (p *Proxy) syncReplica(ctx context.Context, r *replica, req syncRequest) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// An rdb-only client wants the snapshot and nothing after it, so never a partial resync.
	triedPartial := !req.psync || r.client.rdbOnly
	turn := &fullSyncTurn{a: p.admit}
	defer turn.done()
	var plan *syncPlan
	for {
		var wait <-chan struct{}
		plan, wait = p.planSync(r, req, &triedPartial, turn)
		if plan != nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		case <-tick.C:
			// A newline is allowed only before the reply and payload (design invariant 8).
			if err := p.write(r, []byte("\n")); err != nil {
				return err
			}
		}
	}
	if plan.cur != nil {
		defer plan.cur.Close()
	}
	if plan.file != nil {
		defer plan.file.Close()
		if plan.transfer != nil {
			return p.passThrough(ctx, r, req, plan, turn)
		}
		return p.fullSync(ctx, r, req, plan, turn)
	}
	reply := "+CONTINUE\r\n"
	if r.client.capaPsync2 {
		reply = "+CONTINUE " + plan.replid + "\r\n"
	}
	if err := p.write(r, []byte(reply)); err != nil {
		return err
	}
	p.goOnline(r, req)
	return p.stream(ctx, r, plan.cur)
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

// planSync decides a PSYNC exactly as Redis's masterTryPartialResynchronization does, against
// the replication IDs and the backlog held now. It returns a plan, or a channel that is closed
// when something it waits for changes (no snapshot yet, a snapshot the backlog no longer
// reaches, or no turn yet under --max-concurrent-full-syncs).
func (p *Proxy) planSync(r *replica, req syncRequest, triedPartial *bool, turn *fullSyncTurn) (*syncPlan, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.replid == "" {
		// Before the first snapshot, nothing to offer but that snapshot as it arrives: a
		// replica can take it when its length is known or it accepts an EOF-marked payload.
		t := p.transfer
		if t == nil || (t.size < 0 && !(req.psync && r.client.capaEOF)) {
			return nil, p.changed
		}
		if ok, wait := turn.ready(); !ok {
			return nil, wait
		}
		f, err := os.Open(t.path)
		if err != nil {
			p.log.Errorf("Cannot serve the arriving snapshot to replica %s: %v", r.addr, err)
			return nil, p.changed
		}
		p.stats.syncFull.Add(1)
		return &syncPlan{replid: t.replid, transfer: t, file: f}, nil
	}
	if !*triedPartial {
		if p.holdAheadLocked(r, req) {
			return nil, p.changed // re-examined on every change and every keep-alive tick
		}
		*triedPartial = true
		if cur, ok := p.tryPartialLocked(r, req); ok {
			r.answered = true
			p.stats.syncPartialOK.Add(1)
			return &syncPlan{replid: p.replid, cur: cur}, nil
		}
		if !strings.HasPrefix(req.replid, "?") {
			p.stats.syncPartialErr.Add(1)
		}
		p.log.Infof("Full resync requested by replica %s", r.addr)
	}
	if p.snap == nil {
		p.requestRefreshLocked("a replica needs a full sync and there is no valid snapshot")
		return nil, p.changed
	}
	if ok, wait := turn.ready(); !ok {
		return nil, wait
	}
	cur, err := backlog.NewStreamCursor(p.ring, p.snap.Offset+1)
	if err != nil {
		// The backlog has moved past the byte after the snapshot: the pair cannot make a
		// consistent full sync. Never send it; fetch a new snapshot instead.
		p.requestRefreshLocked(fmt.Sprintf("the backlog no longer reaches the snapshot (offset %d, first byte %d)", p.snap.Offset, p.ring.First()))
		return nil, p.changed
	}
	f, err := p.snap.open()
	if err != nil {
		p.log.Errorf("Cannot serve the snapshot to replica %s: %v", r.addr, err)
		return nil, p.changed
	}
	r.answered = true
	p.stats.syncFull.Add(1)
	return &syncPlan{replid: p.replid, cur: cur, snap: p.snap, file: f}, nil
}

// holdAheadLocked reports whether a PSYNC should wait instead of being answered: the replica
// follows the proxy's history but asks for an offset past the backlog's end, which happens
// when the proxy lost bytes it had already forwarded (a crash with --backlog-fsync everysec
// or no). The master still has them, so the proxy holds the PSYNC with keep-alive newlines
// until its link has re-delivered up to that offset, then answers +CONTINUE. It gives up (and
// the replica gets a full sync, as from Redis) after repl-timeout, for an offset further
// ahead than the backlog could hold, or when the history changes. Caller holds mu.
func (p *Proxy) holdAheadLocked(r *replica, req syncRequest) bool {
	if !req.psync || p.ring == nil || !strings.EqualFold(req.replid, p.replid) {
		return false
	}
	next := p.ring.End() + 1
	if req.offset <= next || req.offset-next > p.backlogSize.Load() {
		if !r.heldSince.IsZero() {
			p.log.Infof("Replica %s: the backlog now reaches offset %d, answering its PSYNC", r.addr, req.offset)
		}
		return false
	}
	if r.heldSince.IsZero() {
		r.heldSince = time.Now()
		p.log.Infof("Replica %s asks for offset %d, %d bytes past the backlog's end: holding its PSYNC until the master re-delivers them",
			r.addr, req.offset, req.offset-next)
		return true
	}
	if time.Since(r.heldSince) > p.timeout() {
		p.log.Warnf("Replica %s: the master did not re-deliver up to offset %d within repl-timeout (backlog ends at %d); full sync",
			r.addr, req.offset, next-1)
		return false
	}
	return true
}

// tryPartialLocked is Redis's acceptance test: the ID is ours, or our previous one and the
// offset is within its history; and every byte from the offset on is in the backlog.
func (p *Proxy) tryPartialLocked(r *replica, req syncRequest) (backlog.StreamCursor, bool) {
	if !strings.EqualFold(req.replid, p.replid) &&
		(!strings.EqualFold(req.replid, p.replid2) || req.offset > p.secondOff) {
		if strings.EqualFold(req.replid, p.replid2) {
			p.log.Infof("Partial resynchronization not accepted: Requested offset for second ID was %d, but I can reply up to %d",
				req.offset, p.secondOff)
		} else if req.replid != "?" {
			p.log.Infof("Partial resynchronization not accepted: Replication ID mismatch (Replica asked for '%s', my replication IDs are '%s' and '%s')",
				req.replid, p.replid, p.replid2)
		}
		return nil, false
	}
	cur, err := backlog.NewStreamCursor(p.ring, req.offset)
	if err != nil {
		first, end := p.ring.Bounds()
		p.log.Infof("Unable to partial resync with replica %s for lack of backlog (Replica request was: %d, backlog holds %d to %d).",
			r.addr, req.offset, first, end)
		return nil, false
	}
	p.log.Infof("Partial resynchronization request from %s accepted. Sending %d bytes of backlog starting from offset %d.",
		r.addr, p.ring.End()-req.offset+1, req.offset)
	return cur, true
}

// fullSync sends +FULLRESYNC, the snapshot with length framing (every replica understands it
// and needs no ACK before the stream), then the stream from the snapshot's offset + 1.
func (p *Proxy) fullSync(ctx context.Context, r *replica, req syncRequest, plan *syncPlan, turn *fullSyncTurn) error {
	if err := plan.snap.verify(plan.file); err != nil {
		p.mu.Lock()
		p.discardSnapshotLocked(plan.snap, err)
		p.mu.Unlock()
		return fmt.Errorf("the snapshot fails its check, not sent: %w", err)
	}
	var head []byte
	if req.psync {
		head = fmt.Appendf(head, "+FULLRESYNC %s %d\r\n", plan.replid, plan.snap.Offset)
	}
	head = fmt.Appendf(head, "$%d\r\n", plan.snap.Size)
	p.log.Infof("Starting full resync of replica %s from snapshot %s:%d (%d bytes)",
		r.addr, plan.replid, plan.snap.Offset, plan.snap.Size)
	if err := p.write(r, head); err != nil {
		return err
	}
	r.state.Store(stateSendBulk)
	p.stats.fullSyncsActive.Add(1)
	err := p.sendSnapshot(ctx, r, plan)
	p.stats.fullSyncsActive.Add(-1)
	turn.done()
	if err != nil {
		return err
	}
	if r.client.rdbOnly {
		p.log.Infof("Snapshot sent to rdb-only replica %s", r.addr)
		return nil
	}
	p.log.Infof("Synchronization with replica %s succeeded", r.addr)
	p.goOnline(r, req)
	return p.stream(ctx, r, plan.cur)
}

// sendSnapshot copies the snapshot file to the replica in pieces, each a sendfile with its
// own write deadline, paced to --full-sync-rate-limit when set.
func (p *Proxy) sendSnapshot(ctx context.Context, r *replica, plan *syncPlan) error {
	rate := p.cfg.FullSyncRateLimit
	piece := int64(4 << 20)
	if rate > 0 {
		piece = min(piece, max(rate/10, 64<<10)) // about ten pieces a second
	}
	start := time.Now()
	for sent := int64(0); sent < plan.snap.Size; {
		r.conn.SetWriteDeadline(time.Now().Add(p.timeout()))
		n, err := io.CopyN(r.conn, plan.file, min(piece, plan.snap.Size-sent))
		sent += n
		p.stats.netReplOut.Add(n)
		if err != nil {
			return fmt.Errorf("sending snapshot (%d of %d bytes): %w", sent, plan.snap.Size, err)
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

func (p *Proxy) goOnline(r *replica, req syncRequest) {
	r.ackTime.Store(time.Now().UnixNano())
	r.state.Store(stateOnline)
	if req.psync {
		// Redis drops an online replica silent for repl-timeout; a loading replica's newlines
		// count as traffic. SYNC clients never ACK and are never timed out.
		r.conn.setIdleTimeout(p.timeout())
	}
}

// stream sends the backlog to the replica from its cursor, byte for byte, until an error.
// The bytes go straight from the backlog's storage to the socket (one writev, up to
// streamWrite bytes), so a lagging replica catches up in large writes. While the session
// waits for more, the upstream goroutine may write new bytes for it (fanout.go); both move
// the cursor under r.fast.mu. A replica that falls behind the backlog's first byte is
// disconnected, never moved forward.
func (p *Proxy) stream(ctx context.Context, r *replica, cur backlog.StreamCursor) error {
	const streamWrite = 1 << 20
	f := &r.fast
	// Inline writes go to the raw socket, so only plain TCP replicas get them; a TLS
	// replica's bytes all pass through its tls.Conn from this goroutine.
	if tcp, ok := r.conn.rawTCP(); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			f.mu.Lock()
			f.cur, f.raw = cur, raw
			f.mu.Unlock()
			p.mu.Lock()
			p.addFastLocked(r)
			p.mu.Unlock()
		}
	}
	for {
		f.mu.Lock()
		off := cur.Offset()
		if off > cur.End() {
			// Idle: the upstream may deliver for us while we wait.
			f.idle = true
			f.mu.Unlock()
			err := cur.WaitAt(ctx, off)
			f.mu.Lock()
			f.idle = false
			moved := cur.Offset() != off
			f.mu.Unlock()
			// off may have been left behind by inline writes; only the cursor's own
			// offset can be trimmed, and WriteTo checks that.
			if err != nil && !(moved && errors.Is(err, backlog.ErrTrimmed)) {
				return p.streamErr(cur, err)
			}
			continue
		}
		f.mu.Unlock()
		// Not idle, so the cursor is ours alone until the next wait.
		r.conn.SetWriteDeadline(time.Now().Add(p.timeout()))
		// On plain TCP the cursor writes with writev or sendfile; a *tls.Conn offers
		// neither, so the cursor falls back to Write, which encrypts.
		n, err := cur.WriteTo(ctx, r.conn.Conn, streamWrite)
		p.stats.netReplOut.Add(n)
		if err != nil {
			return p.streamErr(cur, err)
		}
	}
}

func (p *Proxy) streamErr(cur backlog.StreamCursor, err error) error {
	if errors.Is(err, backlog.ErrTrimmed) {
		return fmt.Errorf("it fell behind the backlog at offset %d; it will need a new sync", cur.Offset())
	}
	return err
}

// write sends b with a write deadline of repl-timeout, so a replica that stops reading is
// dropped instead of holding its session forever.
func (p *Proxy) write(r *replica, b []byte) error {
	r.conn.SetWriteDeadline(time.Now().Add(p.timeout()))
	_, err := r.conn.Write(b)
	return err
}
