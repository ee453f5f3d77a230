package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	tresp "github.com/tidwall/resp"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/resp"
)

// A snapshot serves full syncs only while the backlog still holds the byte after it. When the
// stream has moved on by more than the backlog holds, the proxy fetches a new RDB on a second
// connection to the master (PSYNC ? -1 there, REPLCONF rdb-only 1 when the master knows it),
// keeps it with its offset, closes that connection, waits until the main link's backlog has
// reached the offset and switches. The main link, its backlog and every online replica are
// untouched; the master forks once per refresh, and at most once per min-interval.

// requestRefreshLocked asks the refresher for a new snapshot because a replica needs one.
// Caller holds mu.
func (p *Proxy) requestRefreshLocked(why string) {
	if !p.refreshWanted {
		p.refreshWanted = true
		p.log.Infof("Snapshot refresh wanted: %s", why)
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// discardSnapshotLocked drops snap after it failed its check, unless another has replaced
// it, so it is never served again, and asks for a new one. Caller holds mu.
func (p *Proxy) discardSnapshotLocked(snap *snapshot, err error) {
	if p.snap != snap {
		return
	}
	p.log.Errorf("Discarding the snapshot %s:%d, it fails its check and will never be served: %v", snap.Replid, snap.Offset, err)
	p.stats.snapDiscarded.Add(1)
	p.snap = nil
	p.notifyLocked()
	p.requestRefreshLocked("the snapshot was discarded")
}

// refreshMargin is how much backlog room must be left before byte S+1 is evicted.
func (p *Proxy) refreshMargin() int64 {
	if m := p.cfg.SnapshotRefreshMargin; m > 0 {
		return m
	}
	return p.backlogSize.Load() / 4
}

// refreshDue reports whether a refresh should start now, and why.
func (p *Proxy) refreshDue() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ring == nil || p.replid == "" || p.closing || p.link.state != "connected" {
		return "", false // the main link brings the first snapshot, and a refresh needs it up
	}
	if p.refreshWanted {
		return "a replica needs a full sync the snapshot cannot serve", true
	}
	if p.cfg.SnapshotRefresh != RefreshAuto {
		return "", false
	}
	if p.snap == nil {
		return "there is no valid snapshot", true
	}
	// The bytes from S+1 to End fill the backlog; S+1 goes once they exceed its size.
	room := p.ring.Size() - (p.ring.End() - p.snap.Offset)
	if room < p.refreshMargin() {
		return fmt.Sprintf("the backlog will drop offset %d after %d more bytes", p.snap.Offset+1, max(room, 0)), true
	}
	return "", false
}

// runRefresher fetches new snapshots when due, never more often than the minimum interval.
func (p *Proxy) runRefresher(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.kick:
		}
		why, due := p.refreshDue()
		if !due || time.Since(last) < p.cfg.SnapshotRefreshMinInterval {
			continue
		}
		last = time.Now()
		p.log.Infof("Fetching a new snapshot from MASTER %s on a second connection: %s", p.cfg.MasterAddr, why)
		err := p.refreshSnapshot(ctx)
		p.mu.Lock()
		p.lastRefresh = last
		if err != nil {
			p.lastRefreshErr = err.Error()
		} else {
			p.lastRefreshErr = ""
		}
		p.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			p.stats.refreshFailed.Add(1)
			p.log.Warnf("Snapshot refresh failed, next attempt in %v at the earliest: %v", p.cfg.SnapshotRefreshMinInterval, err)
		}
	}
}

// refreshSnapshot fetches one snapshot on its own connection and switches to it.
func (p *Proxy) refreshSnapshot(ctx context.Context) error {
	p.mu.Lock()
	p.refreshing = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.refreshing = false
		p.mu.Unlock()
	}()
	p.stats.refreshes.Add(1)
	snap, err := p.fetchSnapshot(ctx)
	if err != nil {
		return err
	}
	installed := false
	defer func() {
		if !installed {
			os.Remove(snap.path) // not installed: only wasted space if this fails
		}
	}()

	// The snapshot is the dataset at its offset; it becomes servable once the main backlog
	// holds the stream from the byte after it.
	p.mu.Lock()
	ring, replid := p.ring, p.replid
	p.mu.Unlock()
	if ring == nil || !strings.EqualFold(replid, snap.Replid) {
		return fmt.Errorf("the master sent a snapshot of history %s, the proxy follows %s; the main link will resolve it", snap.Replid, replid)
	}
	wctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	if err := ring.Wait(wctx, snap.Offset); err != nil && !errors.Is(err, backlog.ErrTrimmed) {
		return fmt.Errorf("waiting for the main link to reach offset %d (at %d): %w", snap.Offset, ring.End(), err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ring != ring || !strings.EqualFold(p.replid, snap.Replid) {
		return errors.New("the replication history changed while the snapshot was fetched")
	}
	if first := ring.First(); first > snap.Offset+1 {
		return fmt.Errorf("the backlog no longer holds offset %d (first byte %d): it cannot cover the time a snapshot takes; increase --backlog-size", snap.Offset+1, first)
	}
	if err := p.installSnapshotLocked(snap); err != nil {
		return fmt.Errorf("saving snapshot: %w", err)
	}
	installed = true
	p.notifyLocked()
	p.log.Infof("Snapshot refreshed: %s:%d (%d bytes) now serves full syncs", snap.Replid, snap.Offset, snap.Size)
	return nil
}

// fetchSnapshot runs the refresh connection: handshake, REPLCONF rdb-only, PSYNC ? -1, and
// the RDB into a checked temporary file. It returns the snapshot, not yet installed.
func (p *Proxy) fetchSnapshot(ctx context.Context) (*snapshot, error) {
	raw, err := p.dialMaster(ctx)
	if err != nil {
		return nil, err
	}
	conn := newTrackedConn(raw)
	conn.setIdleTimeout(p.timeout())
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 64<<10)
	u := &upstream{p: p}
	if err := u.handshake(conn, br); err != nil {
		return nil, err
	}
	// rdb-only (Redis 7.0+) asks for the RDB without the stream after it; an older master
	// answers with an error, and the proxy then just closes the connection after the RDB.
	if err := writeCommand(conn, "REPLCONF", "rdb-only", "1"); err != nil {
		return nil, err
	}
	if v, err := u.reply(br); err != nil {
		return nil, fmt.Errorf("reading REPLCONF rdb-only reply: %w", err)
	} else if v.Type() == tresp.Error {
		p.log.Infof("(Non critical) Master does not understand REPLCONF rdb-only: -%s", v.Error())
	}
	if err := writeCommand(conn, "PSYNC", "?", "-1"); err != nil {
		return nil, err
	}
	v, err := u.psyncReply(br)
	if err != nil {
		return nil, err
	}
	ans, err := parsePsyncReply(v)
	if err == nil && !ans.full {
		err = fmt.Errorf("%w: %s to PSYNC ? -1", errPsyncUnexpected, replyLine(v))
	}
	if err != nil {
		return nil, err
	}
	replid, off := ans.replid, ans.offset
	hdr, err := resp.ReadPayloadHeader(br, p.lim, nil)
	if err != nil {
		return nil, fmt.Errorf("reading RDB payload header: %w", err)
	}
	w, err := newSnapshotWriter(p.cfg.Dir)
	if err != nil {
		return nil, err
	}
	n, err := resp.CopyPayload(w, br, hdr)
	if err != nil {
		w.abort()
		if errors.Is(err, resp.ErrBadRDB) {
			p.stats.snapDiscarded.Add(1)
		}
		return nil, fmt.Errorf("receiving RDB from master (%d bytes so far): %w", n, err)
	}
	snap, err := p.finishSnapshot(w, replid, off)
	if err != nil {
		return nil, err
	}
	p.log.Infof("Received snapshot %s:%d (%d bytes) on the refresh connection", replid, off, n)
	return snap, nil
}

// parseFullResync reads "+FULLRESYNC <replid> <offset>".
func parseFullResync(line string) (string, int64, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "FULLRESYNC" || len(f[1]) != 40 {
		return "", 0, fmt.Errorf("master replied with wrong +FULLRESYNC syntax: %q", line)
	}
	off, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || off < 0 {
		return "", 0, fmt.Errorf("master replied with wrong +FULLRESYNC offset: %q", line)
	}
	return f[1], off, nil
}
