// Package downstream serves psync-proxy's replicas: once a client's PSYNC or SYNC has been
// handed over, a session answers it as a master does (a partial resync from the backlog, a
// full sync from the cached snapshot or from the one arriving), then streams the backlog to
// the replica through its own cursor, so that a slow replica never holds anyone up. The
// sessions of the proxy are kept in one Sessions value, which also writes new bytes inline
// to replicas idle at the end of the stream (fan-out) and bounds concurrent full syncs.
package downstream

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// Config configures Sessions.
type Config struct {
	History *history.History
	// Refresh asks for a new snapshot when a full sync needs one the cache cannot give.
	Refresh func(why string)
	Timeout func() time.Duration // live repl-timeout
	// MaxConcurrentFullSyncs bounds the snapshots sent at once (0: no bound);
	// FullSyncRateLimit the bytes per second of snapshot sent to each replica (0: none).
	MaxConcurrentFullSyncs int
	FullSyncRateLimit      int64
	Log                    *zap.SugaredLogger
}

// Sessions are the proxy's replica sessions. Close ends them all.
type Sessions struct {
	cfg   Config
	h     *history.History
	log   *zap.SugaredLogger
	admit *admission // nil: no bound
	stats stats
	fast  atomic.Pointer[[]*session] // streaming replicas the master link may write to inline

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[*session]struct{}
	gen      uint64 // the history's generation sessions are answered in
	closing  bool
}

type stats struct {
	syncFull, partialOK, partialErr atomic.Int64
	netOut                          atomic.Int64
	fullActive                      atomic.Int64
}

// New prepares the sessions of a proxy.
func New(cfg Config) *Sessions {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop().Sugar()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sessions{cfg: cfg, h: cfg.History, log: cfg.Log, ctx: ctx, cancel: cancel,
		sessions: make(map[*session]struct{}), gen: cfg.History.Generation()}
	if cfg.MaxConcurrentFullSyncs > 0 {
		s.admit = newAdmission(cfg.MaxConcurrentFullSyncs)
	}
	return s
}

// Replica is what a client said about itself before PSYNC, as Redis records it.
type Replica struct {
	ID         int64
	IP         string // REPLCONF ip-address, or the peer's address
	Port       int    // REPLCONF listening-port
	CapaEOF    bool
	CapaPsync2 bool
	RDBOnly    bool // REPLCONF rdb-only 1: the snapshot and nothing after it
}

// Request is a PSYNC or SYNC.
type Request struct {
	PSync  bool   // false for SYNC: no +FULLRESYNC line, no ACKs expected
	Replid string // as asked; "?" for a fresh replica
	Offset int64  // first byte wanted
}

// Start hands a detached connection to a new session that answers req and streams. c is the
// connection under dc, for the session's writes; done is called once the session has ended.
func (s *Sessions) Start(dc redcon.DetachedConn, c *conn.Conn, rep Replica, req Request, done func()) {
	r := &session{s: s, Replica: rep, addr: c.RemoteAddr().String(), conn: c, dc: dc, req: req,
		acked: make(chan struct{}, 1)}
	r.fast.poke = make(chan struct{}, 1)
	if r.IP == "" {
		r.IP, _, _ = net.SplitHostPort(r.addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		dc.Close()
		done()
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	r.cancel = cancel
	s.sessions[r] = struct{}{}
	s.wg.Add(1) // under mu, so Close's Wait cannot have started (it sets closing first)
	go func() {
		defer s.wg.Done()
		defer done()
		defer s.drop(r)
		r.serve(ctx)
	}()
}

func (s *Sessions) drop(r *session) {
	r.disconnect()
	s.mu.Lock()
	s.removeFastLocked(r)
	delete(s.sessions, r)
	s.mu.Unlock()
}

// NewHistory disconnects every replica answered in a history older than gen, so that it
// reconnects and learns the new one with PSYNC, as Redis's disconnectSlaves does. The
// history calls it under its lock, so that no session is answered in between.
func (s *Sessions) NewHistory(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen = gen
	for r := range s.sessions {
		if r.answered {
			r.disconnect()
		}
	}
}

// answered marks r as answered in history generation gen; if the history has changed since,
// r is disconnected instead and answered reports false.
func (s *Sessions) answered(r *session, gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen {
		r.disconnect()
		return false
	}
	r.answered = true
	return true
}

// Close disconnects every replica and waits until every session has ended.
func (s *Sessions) Close() {
	s.mu.Lock()
	s.closing = true
	for r := range s.sessions {
		r.disconnect()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// ReplicaStatus is one replica as INFO shows it (slaveN:ip=...,port=...,state=...).
type ReplicaStatus struct {
	ID      int64
	IP      string
	Port    int
	State   string // wait_bgsave, send_bulk or online
	Offset  int64  // its last REPLCONF ACK
	LastAck time.Time
}

// List returns the replicas in order of arrival.
func (s *Sessions) List() []ReplicaStatus {
	s.mu.Lock()
	out := make([]ReplicaStatus, 0, len(s.sessions))
	for r := range s.sessions {
		out = append(out, r.status())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b ReplicaStatus) int { return int(a.ID - b.ID) })
	return out
}

// Stats are the sessions' counters, with Redis's INFO names in the comments.
type Stats struct {
	SyncFull, PartialOK, PartialErr int64 // sync_full, sync_partial_ok, sync_partial_err
	NetOut                          int64 // total_net_repl_output_bytes
	FullSyncsActive, FullSyncsWait  int64
}

// Stats returns the counters now.
func (s *Sessions) Stats() Stats {
	st := Stats{SyncFull: s.stats.syncFull.Load(), PartialOK: s.stats.partialOK.Load(),
		PartialErr: s.stats.partialErr.Load(), NetOut: s.stats.netOut.Load(), FullSyncsActive: s.stats.fullActive.Load()}
	if s.admit != nil {
		st.FullSyncsWait = int64(s.admit.waiting())
	}
	return st
}

// ResetStats zeroes the counters CONFIG RESETSTAT resets.
func (s *Sessions) ResetStats() {
	s.stats.syncFull.Store(0)
	s.stats.partialOK.Store(0)
	s.stats.partialErr.Store(0)
	s.stats.netOut.Store(0)
}

// Limits are the full-sync limits the sessions apply.
type Limits struct {
	MaxConcurrentFullSyncs int
	FullSyncRateLimit      int64
}

// Limits returns the full-sync limits.
func (s *Sessions) Limits() Limits {
	return Limits{MaxConcurrentFullSyncs: s.cfg.MaxConcurrentFullSyncs, FullSyncRateLimit: s.cfg.FullSyncRateLimit}
}
