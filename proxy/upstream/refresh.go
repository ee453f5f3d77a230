package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tresp "github.com/tidwall/resp"
	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/history"
)

// A snapshot serves full syncs only while the backlog still holds the byte after it. When the
// stream has moved on by more than the backlog holds, the proxy fetches a new RDB on a second
// connection to the master (PSYNC ? -1 there, REPLCONF rdb-only 1 when the master knows it),
// keeps it with its offset, closes that connection, waits until the main link's backlog has
// reached the offset and switches. The main link, its backlog and every online replica are
// untouched; the master forks once per refresh, and at most once per min-interval.

// RefreshConfig configures a Refresher.
type RefreshConfig struct {
	Link *Link // the master followed, its TLS and announced port, and whether it streams
	// Auto also refreshes before the backlog drops the byte after the snapshot (when less
	// than Margin of room is left), so that a full sync never waits; otherwise only when a
	// replica needs a snapshot (Request).
	Auto        bool
	Margin      func() int64
	MinInterval time.Duration // the least time between two snapshot requests to the master
}

// Refresher fetches new snapshots when due, never more often than the minimum interval.
type Refresher struct {
	cfg RefreshConfig
	l   *Link
	h   *history.History
	log *zap.SugaredLogger

	requests      chan struct{} // Request's wake-up of Run (capacity 1)
	count, failed atomic.Int64  // refreshes asked of the master, and those that failed

	mu         sync.Mutex
	wanted     bool      // a replica needs a snapshot the current one cannot give
	refreshing bool      // a refresh connection is fetching a snapshot
	last       time.Time // when the master was last asked for a snapshot
	lastErr    string    // why the last refresh failed; "" after a success
}

// NewRefresher prepares a refresher; Run starts it.
func NewRefresher(cfg RefreshConfig) *Refresher {
	return &Refresher{cfg: cfg, l: cfg.Link, h: cfg.Link.h, log: cfg.Link.log, requests: make(chan struct{}, 1)}
}

// Request asks for a new snapshot because a replica needs one the current one cannot give.
func (r *Refresher) Request(why string) {
	r.mu.Lock()
	if !r.wanted {
		r.wanted = true
		r.log.Infof("Snapshot refresh wanted: %s", why)
	}
	r.mu.Unlock()
	select {
	case r.requests <- struct{}{}:
	default:
	}
}

// SnapshotInstalled withdraws the request: a new snapshot is in place.
func (r *Refresher) SnapshotInstalled() {
	r.mu.Lock()
	r.wanted = false
	r.mu.Unlock()
}

// due reports whether a refresh should start now, and why.
func (r *Refresher) due(ctx context.Context) (string, bool) {
	if ctx.Err() != nil || !r.l.Status().Up() {
		return "", false // the main link brings the first snapshot, and a refresh needs it up
	}
	st := r.h.Status()
	if !st.Backlog || st.Replid == "" {
		return "", false
	}
	r.mu.Lock()
	wanted := r.wanted
	r.mu.Unlock()
	switch {
	case wanted:
		return "a replica needs a full sync the snapshot cannot serve", true
	case !r.cfg.Auto:
		return "", false
	case st.Snapshot == nil:
		return "there is no valid snapshot", true
	}
	// The bytes from S+1 to End fill the backlog; S+1 goes once they exceed its size, or what
	// a full disk holds of it: the margin then shrinks in proportion.
	size, margin := st.Size, r.cfg.Margin()
	if eff := st.Storage.EffectiveSize; st.Storage.DiskFullEvents > 0 && eff < size {
		size, margin = eff, int64(float64(margin)*float64(eff)/float64(size))
	}
	room := size - (st.End - st.Snapshot.Offset)
	if room < margin {
		return fmt.Sprintf("the backlog will drop offset %d after %d more bytes", st.Snapshot.Offset+1, max(room, 0)), true
	}
	return "", false
}

// Run fetches snapshots when due until ctx ends.
func (r *Refresher) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.requests:
		}
		why, due := r.due(ctx)
		if !due || time.Since(last) < r.cfg.MinInterval || r.l.gate.until() > 0 {
			continue // the gate: after a failed RDB transfer, on either connection (syncgate.go)
		}
		last = time.Now()
		r.log.Infof("Fetching a new snapshot from MASTER %s on a second connection: %s", r.l.Master().Addr, why)
		err := r.refresh(ctx)
		r.mu.Lock()
		r.last, r.lastErr = last, ""
		if err != nil {
			r.lastErr = err.Error()
		}
		r.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			r.failed.Add(1)
			r.l.gate.failed(err)
			r.log.Warnf("Snapshot refresh failed, next attempt in %v at the earliest: %v", r.cfg.MinInterval, err)
		} else if err == nil {
			r.l.gate.succeeded()
		}
	}
}

// refresh fetches one snapshot on its own connection and switches to it.
func (r *Refresher) refresh(ctx context.Context) error {
	r.setRefreshing(true)
	defer r.setRefreshing(false)
	r.count.Add(1)
	snap, err := r.fetch(ctx)
	if err != nil {
		return err
	}
	installed := false
	defer func() {
		if !installed {
			snap.Remove() // not installed: only wasted space if this fails
		}
	}()

	// The snapshot is the dataset at its offset; it becomes servable once the main backlog
	// holds the stream from the byte after it.
	replid, bl := r.h.Current()
	if bl == nil || !strings.EqualFold(replid, snap.Replid) {
		return fmt.Errorf("the master sent a snapshot of history %s, the proxy follows %s; the main link will resolve it", snap.Replid, replid)
	}
	wctx, cancel := context.WithTimeout(ctx, r.l.cfg.Timeout())
	defer cancel()
	if err := bl.Wait(wctx, snap.Offset); err != nil && !errors.Is(err, backlog.ErrTrimmed) {
		return fmt.Errorf("waiting for the main link to reach offset %d (at %d): %w", snap.Offset, bl.End(), err)
	}
	if err := r.h.InstallRefreshed(snap, bl); err != nil {
		return err
	}
	installed = true
	r.SnapshotInstalled()
	r.log.Infof("Snapshot refreshed: %s:%d (%d bytes) now serves full syncs", snap.Replid, snap.Offset, snap.Size)
	return nil
}

func (r *Refresher) setRefreshing(on bool) {
	r.mu.Lock()
	r.refreshing = on
	r.mu.Unlock()
}

// fetch runs the refresh connection: handshake, REPLCONF rdb-only, PSYNC ? -1, and the RDB
// into a checked temporary file. It returns the snapshot, not yet installed.
func (r *Refresher) fetch(ctx context.Context) (*history.Snapshot, error) {
	m := r.l.Master()
	c, err := dial(ctx, m, r.l.cfg.TLS, r.l.cfg.Timeout())
	if err != nil {
		return nil, err
	}
	c.SetIdleTimeout(r.l.cfg.Timeout())
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	s := newSession(c, r.log, r.l.lim)
	if err := s.handshake(m, r.l.AnnouncePort(), r.l.cfg.AnnounceVersion); err != nil {
		return nil, err
	}
	// rdb-only (Redis 7.0+) asks for the RDB without the stream after it; an older master
	// answers with an error, and the proxy then just closes the connection after the RDB.
	if err := s.send("REPLCONF", "rdb-only", "1"); err != nil {
		return nil, err
	}
	if v, err := s.reply(); err != nil {
		return nil, fmt.Errorf("reading REPLCONF rdb-only reply: %w", err)
	} else if v.Type() == tresp.Error {
		r.log.Infof("(Non critical) Master does not understand REPLCONF rdb-only: -%s", v.Error())
	}
	if err := s.send("PSYNC", "?", "-1"); err != nil {
		return nil, err
	}
	v, err := s.psyncReply()
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
	hdr, err := s.payloadHeader()
	if err != nil {
		return nil, err
	}
	w, err := r.h.NewWriter(ans.offset + 1) // the backlog before the new snapshot may go on a full disk
	if err != nil {
		return nil, err
	}
	snap, n, err := s.receive(r.h, w, w, hdr, ans.replid, ans.offset)
	if err != nil {
		return nil, err
	}
	r.log.Infof("Received snapshot %s:%d (%d bytes) on the refresh connection", ans.replid, ans.offset, n)
	return snap, nil
}

// Auto reports whether the policy is auto (else on-demand).
func (r *Refresher) Auto() bool { return r.cfg.Auto }

// Margin is the backlog room below which auto refreshes.
func (r *Refresher) Margin() int64 { return r.cfg.Margin() }

// MinInterval is the least time between two snapshot requests.
func (r *Refresher) MinInterval() time.Duration { return r.cfg.MinInterval }

// RefreshStatus is the refresher as INFO shows it.
type RefreshStatus struct {
	Refreshing      bool
	Count, Failures int64
	Last            time.Time // zero: never
	LastErr         string    // "" after a success
}

// Status returns the refresher now.
func (r *Refresher) Status() RefreshStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RefreshStatus{Refreshing: r.refreshing, Count: r.count.Load(), Failures: r.failed.Load(),
		Last: r.last, LastErr: r.lastErr}
}
