package upstream

import (
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

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/internal/backoff"
	"github.com/psync-proxy/psync-proxy/resp"
)

// streamLimits bound the stream scanner. Redis exempts its master from proto-max-bulk-len and
// from argument counts, so these only stop absurd lengths.
func streamLimits() resp.Limits {
	return resp.Limits{MaxBulkLen: 1 << 40, MaxArrayLen: 1 << 32, MaxLineLen: 64 << 10}
}

// psync asks for the stream after what the proxy holds and handles the answer: a full resync
// receives the RDB into a new snapshot and starts a new history. It returns the backlog to
// append to.
func (l *Link) psync(s *session) (backlog.Backlog, error) {
	replid, bl := l.h.Current()
	full := replid == ""
	if !full && l.scan == nil {
		l.resume(bl)
	}
	if full {
		replid = "?"
		l.log.Info("Partial resynchronization not possible (no cached master)")
		if err := s.send("PSYNC", "?", "-1"); err != nil {
			return nil, err
		}
	} else {
		// Bytes staged past the last whole command are good as far as they go: the master
		// continues after them, byte-wise. A new master does not: see dropUnfinished.
		l.dropUnfinished(bl)
		next := bl.End() + bl.Staged() + 1
		l.log.Infof("Trying a partial resynchronization (request %s:%d).", replid, next)
		if err := s.send("PSYNC", replid, strconv.FormatInt(next, 10)); err != nil {
			return nil, err
		}
	}
	v, err := s.psyncReply()
	if err != nil {
		if full {
			err = failedSync(err) // PSYNC ? -1 asked for an RDB
		}
		return nil, err
	}
	ans, err := parsePsyncReply(v)
	switch {
	case errors.Is(err, errPsyncLater):
		l.log.Warnf("Master is currently unable to PSYNC but should be in the future: %s", replyLine(v))
	case errors.Is(err, errPsyncRefused):
		l.log.Warnf("Master does not support PSYNC or is in error state (reply: %s)", replyLine(v))
	case errors.Is(err, errPsyncUnexpected):
		l.log.Warnf("Unexpected reply to PSYNC from master: %s", replyLine(v))
	case err != nil:
		l.log.Warnf("Master replied with wrong +FULLRESYNC syntax: %s", replyLine(v))
	}
	if err == nil && !ans.full && full {
		// A +CONTINUE to PSYNC ? -1 has no history to continue.
		l.log.Warnf("Unexpected reply to PSYNC from master: %s", replyLine(v))
		err = fmt.Errorf("%w: %s to PSYNC ? -1", errPsyncUnexpected, replyLine(v))
	}
	if err != nil && !errors.Is(err, errPsyncLater) {
		err = failedSync(err) // a refused PSYNC is paced like a failed transfer
	}
	if err != nil {
		return nil, err
	}
	l.noteAnswer(ans.full, !full)
	if ans.full {
		l.log.Infof("Full resync from master: %s:%d", ans.replid, ans.offset)
		return l.fullSync(s, ans.replid, ans.offset)
	}
	l.log.Info("Successful partial resynchronization with master.")
	if ans.replid != "" && !strings.EqualFold(ans.replid, replid) {
		l.log.Infof("Master replication ID changed to %s", ans.replid)
		if err := l.h.ShiftReplid(ans.replid); err != nil {
			return nil, err // nothing of the new history is read; the next attempt retries
		}
	}
	l.log.Info("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.")
	return bl, nil
}

// resume rebuilds the stream scanner for a history the proxy already holds when the link
// starts, so that ACKs keep reporting command boundaries and GETACK is answered: after a
// disk recovery, the end may fall inside a command. The scan starts at the byte after the
// snapshot, a known boundary, when the backlog still holds it; otherwise the link falls back
// to acknowledging the stored end until the next full sync.
func (l *Link) resume(bl backlog.Backlog) {
	snap := l.h.Snapshot()
	if snap == nil || snap.Offset+1 > bl.End()+1 {
		l.scan, l.scanErr = resp.NewScanner(bl.End()+1, streamLimits()), nil
		return
	}
	sc, err := rescan(bl, snap.Offset+1)
	if err != nil {
		l.log.Warnf("Cannot follow command boundaries after the disk recovery (%v); ACKs report bytes stored until the next full sync", err)
		l.scan = resp.NewScanner(bl.End()+1, streamLimits())
		l.scanErr = errors.New("command boundaries unknown after a disk recovery")
		return
	}
	l.scan, l.scanErr = sc, nil
}

// rescan follows command boundaries through bl from start, a boundary, to its end.
func rescan(bl backlog.Backlog, start int64) (*resp.Scanner, error) {
	if start < bl.First() {
		return nil, errors.New("the snapshot is older than the backlog")
	}
	sc := resp.NewScanner(start, streamLimits())
	buf := make([]byte, 256<<10)
	for off := start; off <= bl.End(); {
		n, err := bl.ReadAt(buf[:min(int64(len(buf)), bl.End()-off+1)], off)
		if err != nil {
			return nil, fmt.Errorf("reading the recovered backlog: %w", err)
		}
		if err := sc.Feed(buf[:n], nil); err != nil {
			return nil, fmt.Errorf("following command boundaries in the recovered backlog: %w", err)
		}
		off += int64(n)
	}
	return sc, nil
}

// fullSync receives the RDB that follows +FULLRESYNC into a new snapshot. Only when it is whole
// and on disk does the new history replace the old one, so replicas keep being served until then.
// Every error before that is a failed attempt to get an RDB, which the gate paces.
func (l *Link) fullSync(s *session, replid string, off int64) (backlog.Backlog, error) {
	bl, err := l.receiveEpoch(s, replid, off)
	if err != nil {
		return nil, failedSync(err)
	}
	// An EOF-marked transfer gets no stream until the first ACK (protocol §2.4).
	if err := s.send("REPLCONF", "ACK", strconv.FormatInt(off, 10)); err != nil {
		return nil, err
	}
	return bl, nil
}

// receiveEpoch receives the RDB and installs it as the snapshot of a new history.
func (l *Link) receiveEpoch(s *session, replid string, off int64) (backlog.Backlog, error) {
	l.mu.Lock()
	l.state, l.transferSize = StateSync, -1
	l.mu.Unlock()
	l.transferRead.Store(0)
	hdr, err := s.payloadHeader()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.transferSize = max(hdr.Len, 0)
	l.mu.Unlock()
	size := hdr.Len
	if hdr.Marked() {
		size = -1
		l.log.Info("MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF to disk")
	} else {
		l.log.Infof("MASTER <-> REPLICA sync: receiving %d bytes from master to disk", hdr.Len)
	}
	w, err := l.h.NewWriter(history.NewHistory)
	if err != nil {
		return nil, err
	}
	// Replicas waiting for a first snapshot can follow this one as it arrives.
	done := l.h.Receiving(w, replid, off, size)
	bl, err := l.install(s, w, hdr, replid, off)
	done(err)
	return bl, err
}

// install receives the RDB and makes it the snapshot of a new history from off+1.
func (l *Link) install(s *session, w *history.Writer, hdr resp.PayloadHeader, replid string, off int64) (backlog.Backlog, error) {
	snap, n, err := s.receive(l.h, w, progressWriter{w, &l.transferRead}, hdr, replid, off)
	if err != nil {
		return nil, err
	}
	bl, err := l.h.InstallEpoch(replid, off, snap)
	if err != nil {
		return nil, fmt.Errorf("installing the new history: %w", err)
	}
	l.cfg.OnSnapshot()
	l.gate.succeeded()
	l.scan, l.scanErr = resp.NewScanner(off+1, streamLimits()), nil
	l.log.Infof("MASTER <-> REPLICA sync: Finished with success (snapshot %s:%d, %d bytes)", replid, off, n)
	return bl, nil
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

// stream appends the master's bytes to the backlog until the link fails, answers REPLCONF
// GETACK, and sends REPLCONF ACK every second from its own goroutine.
//
// The stream is staged in the backlog and published up to the last whole command only
// (backlog.Stage, Publish), so replicas never receive a command's start before its end. A
// stream that breaks framing is then cut at the last whole command without anyone having
// seen a byte past it, and asked for again from there, as a Redis replica does after a
// protocol error from its master (its offset only advances at command boundaries).
func (l *Link) stream(ctx context.Context, s *session, bl backlog.Backlog) error {
	l.setState(StateConnected)
	// Invariant 7: acknowledge only what the fsync policy has made durable.
	ack := &acker{s: s, synced: bl.Synced}
	stopTicker := ack.tick()
	defer stopTicker()

	ack.publish(l.ackOffset(bl))
	var src io.Reader = s.br
	var getacks []int64 // offsets to answer REPLCONF GETACK with, found in one chunk
	for {
		if src == s.br && s.br.Buffered() == 0 {
			// What the handshake left buffered is consumed; read the socket directly from
			// now on where the platform allows (pollread_linux.go).
			if r, release, ok := upstreamReader(s.c, l.cfg.Timeout()); ok {
				defer release()
				src = r
			}
		}
		// The bytes are read straight into the backlog; chunk is the backlog's own copy,
		// staged until publish makes the whole commands in it visible.
		chunk, err := bl.Stage(src)
		if errors.Is(err, backlog.ErrStageFull) {
			// One command is longer than the backlog can stage: replicas get its start
			// before its end, as from a Redis master.
			if err := l.publish(ctx, bl, bl.End()+bl.Staged(), ack); err != nil {
				return err
			}
			continue
		}
		if len(chunk) > 0 {
			if err := l.consume(ctx, bl, chunk, ack, &getacks); err != nil {
				return err
			}
		}
		if err != nil {
			return readErr(err)
		}
	}
}

// consume follows command boundaries through a chunk just staged, publishes the whole
// commands and answers the GETACKs among them.
func (l *Link) consume(ctx context.Context, bl backlog.Backlog, chunk []byte, ack *acker, getacks *[]int64) error {
	l.netIn.Add(int64(len(chunk)))
	var protoErr error
	*getacks = (*getacks)[:0]
	if l.scanErr == nil {
		protoErr = l.scan.Feed(chunk, func(c *resp.Command) {
			if c.Is("REPLCONF", "GETACK") {
				// Redis answers with the offset before the GETACK's own bytes.
				*getacks = append(*getacks, c.Start-1)
			}
		})
	}
	// Up to the last whole command; everything read when boundaries are unknown. (Staged
	// takes the backlog's lock: not asked per chunk when boundaries are known.)
	var end int64
	if l.scanErr == nil {
		end = max(l.scan.Boundary(), bl.End())
	} else {
		end = bl.End() + bl.Staged()
	}
	if err := l.publish(ctx, bl, end, ack); err != nil {
		return err
	}
	// Answered once stored and published, like every ACK (invariant 7).
	for _, off := range *getacks {
		if err := ack.send(off); err != nil {
			ack.s.c.Close()
		}
	}
	if protoErr != nil {
		return l.protocolError(bl, chunk, protoErr)
	}
	return nil
}

// readErr says in Redis's words why reading the stream ended.
func readErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, backlog.ErrClosed):
		return errors.New("the backlog was closed (shutdown or new history)")
	case errors.Is(err, io.EOF):
		return errors.New("master closed the connection")
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("MASTER timeout: no data nor PING received")
	}
	return fmt.Errorf("reading from master: %w", err)
}

// publish makes the stream visible up to offset end (nothing if it is already), hands the
// new bytes to idle replicas and updates the offset to acknowledge. If the disk backlog cannot
// store them, it backs off and retries, serving replicas from what is stored, while the ACK
// ticker acknowledges no more than Synced (nothing new is synced); the link stays up.
func (l *Link) publish(ctx context.Context, bl backlog.Backlog, end int64, ack *acker) error {
	var storageErr error // logged once
	wait := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		start := bl.End() + 1
		if end < start {
			return nil
		}
		b, err := bl.Publish(end)
		if err == nil {
			if storageErr != nil {
				l.log.Infof("The disk backlog stores the stream again (after: %v)", storageErr)
			}
			// Always: the replica sessions on the fast path wait for this, not for the
			// backlog's broadcast (b is nil when the bytes are not one slice).
			l.cfg.OnPublish(bl, start, b)
			ack.publish(l.ackOffset(bl))
			return nil
		}
		if errors.Is(err, backlog.ErrClosed) {
			return errors.New("the backlog was closed (shutdown or new history)")
		}
		if !errors.Is(err, backlog.ErrStorage) {
			return fmt.Errorf("publishing the stream up to offset %d: %w", end, err)
		}
		if storageErr == nil {
			l.log.Errorf("The disk backlog cannot store the stream, retrying with backoff; the master is acknowledged only up to offset %d until it can: %v",
				ack.durable(bl.End()), err)
		}
		storageErr = err
		if !backoff.Sleep(ctx, wait.Next()) {
			return errors.New("shutting down while the disk backlog could not store")
		}
	}
}

// protocolError ends the link after the master's stream broke RESP framing. Everything up to
// the last whole command is published; the bytes staged past it were never seen by anyone and
// are dropped, so the next PSYNC asks for the stream again from the byte after that command.
// Only when a command longer than the backlog could stage was already partly published can
// the cut not be made there: the link then goes on without command boundaries until the
// next full sync.
func (l *Link) protocolError(bl backlog.Backlog, chunk []byte, err error) error {
	// Redis logs the query buffer; here, the end of the chunk that broke framing.
	show := chunk[max(0, len(chunk)-64):]
	l.log.Warnf("Protocol error (%v) from client: master %s. Query buffer during protocol error: '%s'",
		err, l.Master().Addr, strings.Trim(strconv.Quote(string(show)), `"`))
	bl.DropStaged()
	end := bl.End()
	if end == l.scan.Boundary() {
		l.scan = resp.NewScanner(end+1, streamLimits())
		l.log.Infof("Dropped the bytes after offset %d, the last whole command; the master is asked for them again", end)
	} else {
		l.scanErr = fmt.Errorf("command boundaries unknown after a protocol error inside a command published before its end: %w", err)
		l.log.Warnf("The command the stream broke in was longer than the backlog can hold back and is partly published (up to offset %d); resuming there without following command boundaries until the next full sync", end)
	}
	return fmt.Errorf("%w: %w", errMasterProtocol, err)
}

// ackOffset is what the proxy acknowledges: the end of the last whole command it has stored.
func (l *Link) ackOffset(bl backlog.Backlog) int64 {
	if l.scanErr != nil || l.scan == nil {
		return bl.End()
	}
	return min(l.scan.Boundary(), bl.End())
}

// acker serialises REPLCONF ACK writes from the read loop and the ticker.
type acker struct {
	s    *session
	mu   sync.Mutex
	last int64 // offset to report on the next tick, guarded by mu
	// synced bounds every ACK: what the backlog has made durable, read at send time because
	// it advances (everysec) without the read loop publishing anything.
	synced func() int64
}

// tick sends the last published offset every second until the returned stop is called.
func (a *acker) tick() (stop func()) {
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
				if err := a.send(a.offset()); err != nil {
					a.s.c.Close()
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
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

// durable bounds off by what the backlog has made durable.
func (a *acker) durable(off int64) int64 { return min(off, a.synced()) }

func (a *acker) send(off int64) error {
	b := resp.AppendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(a.durable(off), 10))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.s.c.Write(b); err != nil {
		return fmt.Errorf("send REPLCONF ACK: %w", err)
	}
	return nil
}
