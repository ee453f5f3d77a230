package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
	tresp "github.com/tidwall/resp"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/resp"
)

// streamLimits bound the stream scanner. Redis exempts its master from proto-max-bulk-len and
// from argument counts, so these only stop absurd lengths.
func streamLimits() resp.Limits {
	return resp.Limits{MaxBulkLen: 1 << 40, MaxArrayLen: 1 << 32, MaxLineLen: 64 << 10}
}

// errMasterProtocol marks a stream that broke RESP framing: the link is dropped and retried
// with backoff, like a sync that failed, rather than at once like a link that was lost.
var errMasterProtocol = errors.New("protocol error in the master's stream")

// upstream is the replica side of the proxy. One goroutine owns it (runUpstream); scan follows
// command boundaries for the whole epoch, across reconnections, because the bytes stay contiguous.
//
// The stream is staged in the backlog and published up to the last whole command only
// (backlog.Stage, Publish), so replicas never receive a command's start before its end. A
// stream that breaks framing is then cut at the last whole command without anyone having
// seen a byte past it, and asked for again from there, as a Redis replica does after a
// protocol error from its master (its offset only advances at command boundaries).
type upstream struct {
	p    *Proxy
	scan *resp.Scanner
	// scanErr is set while command boundaries are unknown (after a disk recovery that could
	// not rebuild them, or a protocol error inside an over-long command): everything read
	// is then published at once, and ACKs report the stored end.
	scanErr error
}

// runUpstream keeps the link to the master up until ctx ends, reconnecting with backoff.
func (p *Proxy) runUpstream(ctx context.Context) {
	u := &upstream{p: p}
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		streamed, err := u.syncOnce(ctx)
		p.linkDown()
		if ctx.Err() != nil {
			return
		}
		if streamed && !errors.Is(err, errMasterProtocol) {
			backoff = 0 // Redis reconnects at once after losing an established link
		} else if backoff = backoff * 2; backoff < minBackoff {
			backoff = minBackoff
		} else if backoff > maxBackoff {
			backoff = maxBackoff
		}
		if streamed {
			p.log.Warnf("Connection with master lost: %v", err)
		} else {
			p.log.Warnf("MASTER <-> REPLICA sync failed, next attempt in %v: %v", backoff, err)
		}
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

func (p *Proxy) setLinkState(state string) {
	p.mu.Lock()
	p.link.state = state
	p.mu.Unlock()
}

func (p *Proxy) linkDown() {
	p.mu.Lock()
	if p.link.state == "connected" {
		p.link.downSince = time.Now()
	}
	p.link.state = "connect"
	p.upConn = nil
	p.mu.Unlock()
}

// syncOnce runs one connection: handshake, PSYNC, an optional RDB transfer, then the stream
// until the link fails. streamed reports whether the link got as far as streaming.
func (u *upstream) syncOnce(ctx context.Context) (streamed bool, err error) {
	p := u.p
	p.setLinkState("connecting")
	p.log.Infof("Connecting to MASTER %s", p.cfg.MasterAddr)
	raw, err := p.dialMaster(ctx)
	if err != nil {
		return false, err
	}
	conn := newTrackedConn(raw)
	conn.lastIO = &p.link.lastIO
	conn.setIdleTimeout(p.timeout())
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		conn.Close()
		return false, ctx.Err()
	}
	p.upConn = conn
	p.link.state = "handshake"
	p.mu.Unlock()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	p.log.Info("MASTER <-> REPLICA sync started")

	br := bufio.NewReaderSize(conn, 64<<10)
	if err := u.handshake(conn, br); err != nil {
		return false, err
	}
	ring, err := u.psync(conn, br)
	if err != nil {
		return false, err
	}
	return true, u.stream(conn, br, ring)
}

// handshake sends PING, then AUTH, REPLCONF listening-port and REPLCONF capa in one write, and
// reads every reply before PSYNC (a master refuses PSYNC with replies still pending).
func (u *upstream) handshake(conn net.Conn, br *bufio.Reader) error {
	p := u.p
	if err := writeCommand(conn, "PING"); err != nil {
		return err
	}
	v, err := u.reply(br)
	if err != nil {
		return fmt.Errorf("reading PING reply: %w", err)
	}
	if v.Type() == tresp.Error {
		msg := v.Error().Error()
		if !strings.HasPrefix(msg, "NOAUTH") && !strings.HasPrefix(msg, "NOPERM") &&
			!strings.HasPrefix(msg, "ERR operation not permitted") {
			p.log.Warnf("Error reply to PING from master: '%s'", replyLine(v))
			return fmt.Errorf("error reply to PING from master: '%s'", replyLine(v))
		}
	}
	p.log.Info("Master replied to PING, replication can continue...")

	var b []byte
	sentAuth := p.cfg.MasterAuth != ""
	if sentAuth {
		if p.cfg.MasterUser != "" {
			b = appendCommand(b, "AUTH", p.cfg.MasterUser, p.cfg.MasterAuth)
		} else {
			b = appendCommand(b, "AUTH", p.cfg.MasterAuth)
		}
	}
	b = appendCommand(b, "REPLCONF", "listening-port", strconv.Itoa(p.cfg.AnnouncePort))
	b = appendCommand(b, "REPLCONF", "capa", "eof", "capa", "psync2")
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	if sentAuth {
		v, err := u.reply(br)
		if err != nil {
			return fmt.Errorf("reading AUTH reply: %w", err)
		}
		if v.Type() == tresp.Error {
			p.log.Warnf("Unable to AUTH to MASTER: %s", replyLine(v))
			return fmt.Errorf("unable to AUTH to MASTER: %s", replyLine(v))
		}
	}
	for _, what := range []string{"listening-port", "capa"} {
		v, err := u.reply(br)
		if err != nil {
			return fmt.Errorf("reading REPLCONF %s reply: %w", what, err)
		}
		if v.Type() == tresp.Error {
			p.log.Infof("(Non critical) Master does not understand REPLCONF %s: %s", what, replyLine(v))
		}
	}
	return nil
}

// replyLine is a reply as its line reads on the wire, "-ERR ..." or "+OK", for logs.
func replyLine(v tresp.Value) string {
	if v.Type() == tresp.Error {
		return "-" + v.Error().Error()
	}
	return "+" + v.String()
}

// reply reads one handshake reply, bounded by the proxy's limits.
func (u *upstream) reply(br *bufio.Reader) (tresp.Value, error) {
	v, err := resp.ReadValue(br, u.p.lim)
	if err == nil && v.Type() != tresp.SimpleString && v.Type() != tresp.Error {
		err = fmt.Errorf("unexpected %s reply from master", v.Type())
	}
	return v, err
}

// psync asks for the stream after what the proxy holds and handles the answer: a full resync
// receives the RDB into a new snapshot and starts a new epoch. It returns the ring to append to.
func (u *upstream) psync(conn *trackedConn, br *bufio.Reader) (backlog.Backlog, error) {
	p := u.p
	p.mu.Lock()
	replid, ring, full := p.replid, p.ring, p.replid == ""
	if rs := p.resumeScan; rs != nil && u.scan == nil {
		// A disk recovery rebuilt the scanner up to the recovered end (see rescan).
		u.scan, u.scanErr = rs, nil
	} else if p.resumeBlind && u.scan == nil {
		u.scan = resp.NewScanner(ring.End()+1, streamLimits())
		u.scanErr = errors.New("command boundaries unknown after a disk recovery")
		p.log.Warnf("Cannot follow command boundaries after the disk recovery (the snapshot is older than the backlog); ACKs report bytes stored until the next full sync")
	}
	p.resumeScan, p.resumeBlind = nil, false
	p.mu.Unlock()
	if full {
		replid = "?"
		p.log.Info("Partial resynchronization not possible (no cached master)")
		if err := writeCommand(conn, "PSYNC", "?", "-1"); err != nil {
			return nil, err
		}
	} else {
		// Bytes staged past the last whole command are good as far as they go: the master
		// continues after them, byte-wise.
		next := ring.End() + ring.Staged() + 1
		p.log.Infof("Trying a partial resynchronization (request %s:%d).", replid, next)
		if err := writeCommand(conn, "PSYNC", replid, strconv.FormatInt(next, 10)); err != nil {
			return nil, err
		}
	}
	v, err := u.psyncReply(br)
	if err != nil {
		return nil, err
	}
	ans, err := parsePsyncReply(v)
	switch {
	case errors.Is(err, errPsyncLater):
		p.log.Warnf("Master is currently unable to PSYNC but should be in the future: %s", replyLine(v))
	case errors.Is(err, errPsyncRefused):
		p.log.Warnf("Master does not support PSYNC or is in error state (reply: %s)", replyLine(v))
	case errors.Is(err, errPsyncUnexpected):
		p.log.Warnf("Unexpected reply to PSYNC from master: %s", replyLine(v))
	case err != nil:
		p.log.Warnf("Master replied with wrong +FULLRESYNC syntax: %s", replyLine(v))
	}
	if err == nil && !ans.full && full {
		// A +CONTINUE to PSYNC ? -1 has no history to continue.
		p.log.Warnf("Unexpected reply to PSYNC from master: %s", replyLine(v))
		err = fmt.Errorf("%w: %s to PSYNC ? -1", errPsyncUnexpected, replyLine(v))
	}
	if err != nil {
		return nil, err
	}
	if ans.full {
		p.log.Infof("Full resync from master: %s:%d", ans.replid, ans.offset)
		return u.fullSync(conn, br, ans.replid, ans.offset)
	}
	p.log.Info("Successful partial resynchronization with master.")
	if ans.replid != "" && !strings.EqualFold(ans.replid, replid) {
		p.log.Infof("Master replication ID changed to %s", ans.replid)
		if err := p.shiftReplid(ans.replid); err != nil {
			return nil, err // nothing of the new history is read; the next attempt retries
		}
	}
	if u.scan == nil {
		u.scan = resp.NewScanner(ring.End()+1, streamLimits())
		u.scanErr = nil
	}
	p.log.Info("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.")
	return ring, nil
}

// The kinds of PSYNC replies that end an attempt (see parsePsyncReply).
var (
	errPsyncLater      = errors.New("master is currently unable to PSYNC") // -LOADING, -NOMASTERLINK
	errPsyncRefused    = errors.New("master does not support PSYNC or is in error state")
	errPsyncUnexpected = errors.New("unexpected reply to PSYNC from master")
)

// psyncAnswer is an accepted PSYNC: +FULLRESYNC <replid> <offset>, or +CONTINUE [<replid>]
// (replid "" when the master did not name one).
type psyncAnswer struct {
	full   bool
	replid string
	offset int64
}

// parsePsyncReply classifies the master's reply to PSYNC as Redis's
// slaveTryPartialResynchronization does. Errors wrap errPsyncLater, errPsyncRefused or
// errPsyncUnexpected, or say what is wrong with a +FULLRESYNC line.
func parsePsyncReply(v tresp.Value) (psyncAnswer, error) {
	if v.Type() == tresp.Error {
		msg := v.Error().Error()
		if strings.HasPrefix(msg, "NOMASTERLINK") || strings.HasPrefix(msg, "LOADING") {
			return psyncAnswer{}, fmt.Errorf("%w: -%s", errPsyncLater, msg)
		}
		return psyncAnswer{}, fmt.Errorf("%w: -%s", errPsyncRefused, msg)
	}
	line := v.String()
	switch {
	case strings.HasPrefix(line, "FULLRESYNC"):
		id, off, err := parseFullResync(line)
		return psyncAnswer{full: true, replid: id, offset: off}, err
	case strings.HasPrefix(line, "CONTINUE"):
		id := strings.TrimSpace(strings.TrimPrefix(line, "CONTINUE"))
		if len(id) != 40 {
			id = "" // as Redis: anything but a 40-character ID keeps the current one
		}
		return psyncAnswer{replid: id}, nil
	}
	return psyncAnswer{}, fmt.Errorf("%w: %q", errPsyncUnexpected, line)
}

// psyncReply reads the answer to PSYNC, after the keep-alive newlines a master may send
// while it prepares the RDB.
func (u *upstream) psyncReply(br *bufio.Reader) (tresp.Value, error) {
	if err := resp.SkipNewlines(br, nil); err != nil {
		return tresp.Value{}, fmt.Errorf("reading PSYNC reply: %w", err)
	}
	v, err := u.reply(br)
	if err != nil {
		return v, fmt.Errorf("reading PSYNC reply: %w", err)
	}
	return v, nil
}

// finishSnapshot checks and syncs a received RDB (snapshotWriter.finish), counting and
// naming a payload that fails its check.
func (p *Proxy) finishSnapshot(w *snapshotWriter, replid string, off int64) (*snapshot, error) {
	snap, err := w.finish(replid, off)
	if errors.Is(err, resp.ErrBadRDB) {
		p.stats.snapDiscarded.Add(1)
		return nil, fmt.Errorf("discarding the RDB received from master, it fails its check: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("saving snapshot: %w", err)
	}
	return snap, nil
}

// fullSync receives the RDB that follows +FULLRESYNC into a new snapshot. Only when it is whole
// and on disk does the new epoch replace the old one, so replicas keep being served until then.
func (u *upstream) fullSync(conn *trackedConn, br *bufio.Reader, replid string, off int64) (backlog.Backlog, error) {
	p := u.p
	p.mu.Lock()
	p.link.state = "sync"
	p.link.transfer.size = -1
	p.link.transfer.read.Store(0)
	p.receiving = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.receiving = false
		p.mu.Unlock()
	}()
	hdr, err := resp.ReadPayloadHeader(br, p.lim, nil)
	var rerr *resp.ReplyError
	if errors.As(err, &rerr) {
		return nil, fmt.Errorf("MASTER aborted replication with an error: %s", rerr.Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("reading RDB payload header: %w", err)
	}
	p.mu.Lock()
	p.link.transfer.size = max(hdr.Len, 0)
	p.mu.Unlock()
	if hdr.Marked() {
		p.log.Info("MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF to disk")
	} else {
		p.log.Infof("MASTER <-> REPLICA sync: receiving %d bytes from master to disk", hdr.Len)
	}
	w, err := newSnapshotWriter(p.cfg.Dir)
	if err != nil {
		return nil, err
	}
	size := hdr.Len
	if hdr.Marked() {
		size = -1
	}
	t := newTransfer(replid, off, size, w.f.Name())
	w.t = t
	p.mu.Lock()
	p.transfer = t
	p.notifyLocked() // replicas waiting for a first snapshot can follow this one
	p.mu.Unlock()
	var result error
	defer func() {
		t.end(result)
		p.mu.Lock()
		if p.transfer == t {
			p.transfer = nil
		}
		p.mu.Unlock()
	}()
	n, err := resp.CopyPayload(progressWriter{w, &p.link.transfer.read}, br, hdr)
	if err != nil {
		w.abort()
		if !errors.Is(err, resp.ErrBadRDB) {
			p.log.Warnf("I/O error trying to sync with MASTER: %v", err)
		}
		result = fmt.Errorf("receiving RDB from master (%d bytes so far), nothing installed: %w", n, err)
		return nil, result
	}
	snap, err := p.finishSnapshot(w, replid, off)
	if err != nil {
		result = err
		return nil, result
	}
	ring, err := u.p.installEpoch(replid, off, snap)
	if err != nil {
		result = fmt.Errorf("installing the new history: %w", err)
		return nil, result
	}
	u.scan, u.scanErr = resp.NewScanner(off+1, streamLimits()), nil
	p.log.Infof("MASTER <-> REPLICA sync: Finished with success (snapshot %s:%d, %d bytes)", replid, off, n)
	// An EOF-marked transfer gets no stream until the first ACK (protocol §2.4).
	if err := writeCommand(conn, "REPLCONF", "ACK", strconv.FormatInt(off, 10)); err != nil {
		return nil, err
	}
	return ring, nil
}

// progressWriter counts bytes for INFO's master_sync_read_bytes.
type progressWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.n.Add(int64(n))
	return n, err
}

// stream appends the master's bytes to the ring until the link fails, answers REPLCONF GETACK,
// and sends REPLCONF ACK every second from its own goroutine.
func (u *upstream) stream(conn *trackedConn, br *bufio.Reader, ring backlog.Backlog) error {
	p := u.p
	p.mu.Lock()
	p.link.state = "connected"
	p.mu.Unlock()

	ack := &acker{conn: conn}
	if d, ok := ring.(syncedBacklog); ok {
		// Invariant 7: acknowledge only what the fsync policy has made durable.
		ack.synced = d.Synced
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// The scanner is owned by the read loop; the ticker reports the offset the
				// loop last published.
				if err := ack.send(ack.offset()); err != nil {
					conn.Close()
					return
				}
			}
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()

	ack.publish(u.ackOffset(ring))
	var src io.Reader = br
	var getacks []int64 // offsets to answer REPLCONF GETACK with, found in one chunk
	for {
		if src == br && br.Buffered() == 0 {
			// What the handshake left buffered is consumed; read the socket directly from
			// now on where the platform allows (pollread_linux.go).
			if r, release, ok := upstreamReader(conn, p.timeout()); ok {
				defer release()
				src = r
			}
		}
		// The bytes are read straight into the backlog; chunk is the backlog's own copy,
		// staged until publish makes the whole commands in it visible.
		chunk, err := ring.Stage(src)
		if errors.Is(err, backlog.ErrStageFull) {
			// One command is longer than the backlog can stage: replicas get its start
			// before its end, as from a Redis master.
			if err := u.publish(ring, ring.End()+ring.Staged(), ack); err != nil {
				return err
			}
			continue
		}
		if n := len(chunk); n > 0 {
			p.stats.netReplIn.Add(int64(n))
			var protoErr error
			getacks = getacks[:0]
			if u.scanErr == nil {
				protoErr = u.scan.Feed(chunk, func(c *resp.Command) {
					if c.Is("REPLCONF", "GETACK") {
						// Redis answers with the offset before the GETACK's own bytes.
						getacks = append(getacks, c.Start-1)
					}
				})
			}
			// Up to the last whole command; everything read when boundaries are unknown.
			var end int64
			if u.scanErr == nil {
				end = max(u.scan.Boundary(), ring.End())
			} else {
				end = ring.End() + ring.Staged()
			}
			if err := u.publish(ring, end, ack); err != nil {
				return err
			}
			// Answered once stored and published, like every ACK (invariant 7).
			for _, off := range getacks {
				if err := ack.send(off); err != nil {
					conn.Close()
				}
			}
			if protoErr != nil {
				return u.protocolError(ring, chunk, protoErr)
			}
		}
		if err != nil {
			if errors.Is(err, backlog.ErrClosed) {
				return errors.New("the backlog was closed (shutdown or new history)")
			}
			if errors.Is(err, io.EOF) {
				return errors.New("master closed the connection")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("MASTER timeout: no data nor PING received")
			}
			return fmt.Errorf("reading from master: %w", err)
		}
	}
}

// publish makes the stream visible up to offset end (nothing if it is already), hands the
// new bytes to idle replicas and updates the offset to acknowledge. If the disk backlog cannot
// store them, it backs off and retries, serving replicas from what is stored, while the ACK
// ticker acknowledges no more than Synced (nothing new is synced); the link stays up.
func (u *upstream) publish(ring backlog.Backlog, end int64, ack *acker) error {
	p := u.p
	var storageErr error // logged once
	backoff := time.Duration(0)
	for {
		start := ring.End() + 1
		if end < start {
			return nil
		}
		b, err := ring.Publish(end)
		if err == nil {
			if storageErr != nil {
				p.log.Infof("The disk backlog stores the stream again (after: %v)", storageErr)
			}
			if b != nil {
				p.fanOut(ring, start, b)
			}
			ack.publish(u.ackOffset(ring))
			return nil
		}
		if errors.Is(err, backlog.ErrClosed) {
			return errors.New("the backlog was closed (shutdown or new history)")
		}
		if !errors.Is(err, backlog.ErrStorage) {
			return fmt.Errorf("publishing the stream up to offset %d: %w", end, err)
		}
		if storageErr == nil {
			synced := ack.durable(ring.End())
			p.log.Errorf("The disk backlog cannot store the stream, retrying with backoff; the master is acknowledged only up to offset %d until it can: %v",
				synced, err)
		}
		storageErr = err
		backoff = min(max(backoff*2, 100*time.Millisecond), 5*time.Second)
		t := time.NewTimer(backoff)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return errors.New("shutting down while the disk backlog could not store")
		case <-t.C:
		}
	}
}

// protocolError ends the link after the master's stream broke RESP framing. Everything up to
// the last whole command is published; the bytes staged past it were never seen by anyone and
// are dropped, so the next PSYNC asks for the stream again from the byte after that command.
// Only when a command longer than the backlog could stage was already partly published can
// the cut not be made there: the link then goes on without command boundaries until the
// next full sync.
func (u *upstream) protocolError(ring backlog.Backlog, chunk []byte, err error) error {
	p := u.p
	// Redis logs the query buffer; here, the end of the chunk that broke framing.
	show := chunk[max(0, len(chunk)-64):]
	p.log.Warnf("Protocol error (%v) from client: master %s. Query buffer during protocol error: '%s'",
		err, p.cfg.MasterAddr, strings.Trim(strconv.Quote(string(show)), `"`))
	ring.DropStaged()
	end := ring.End()
	if end == u.scan.Boundary() {
		u.scan = resp.NewScanner(end+1, streamLimits())
		p.log.Infof("Dropped the bytes after offset %d, the last whole command; the master is asked for them again", end)
	} else {
		u.scanErr = fmt.Errorf("command boundaries unknown after a protocol error inside a command published before its end: %w", err)
		p.log.Warnf("The command the stream broke in was longer than the backlog can hold back and is partly published (up to offset %d); resuming there without following command boundaries until the next full sync", end)
	}
	return fmt.Errorf("%w: %w", errMasterProtocol, err)
}

// ackOffset is what the proxy acknowledges: the end of the last whole command it has stored.
func (u *upstream) ackOffset(ring backlog.Backlog) int64 {
	if u.scanErr != nil || u.scan == nil {
		return ring.End()
	}
	return min(u.scan.Boundary(), ring.End())
}

// syncedBacklog is a backlog that reports how far it is durable (*backlog.Disk).
type syncedBacklog interface{ Synced() int64 }

// acker serialises REPLCONF ACK writes from the read loop and the ticker.
type acker struct {
	conn net.Conn
	mu   sync.Mutex
	last int64 // offset to report on the next tick, guarded by mu
	// synced, in disk mode, bounds every ACK: the Disk's Synced, read at send time because
	// it advances (everysec) without the read loop publishing anything.
	synced func() int64
}

func (a *acker) publish(off int64) {
	a.mu.Lock()
	a.last = off
	a.mu.Unlock()
}

func (a *acker) offset() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// durable bounds off by what the disk backlog has synced (nothing in memory mode).
func (a *acker) durable(off int64) int64 {
	if a.synced != nil {
		return min(off, a.synced())
	}
	return off
}

func (a *acker) send(off int64) error {
	off = a.durable(off)
	b := appendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(off, 10))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.conn.Write(b); err != nil {
		return fmt.Errorf("send REPLCONF ACK: %w", err)
	}
	return nil
}

func appendCommand(b []byte, args ...string) []byte {
	b = redcon.AppendArray(b, len(args))
	for _, a := range args {
		b = redcon.AppendBulkString(b, a)
	}
	return b
}

func writeCommand(conn net.Conn, args ...string) error {
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(appendCommand(nil, args...)); err != nil {
		return fmt.Errorf("write %s: %w", args[0], err)
	}
	return nil
}
