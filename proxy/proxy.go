// Package proxy is psync-proxy's replication logic: the upstream link (a replica of the
// master), the downstream server (a master to stock Redis/Valkey replicas), the cached
// snapshot, the replication state and the INFO/ROLE/CONFIG views of it.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/resp"
)

// zeroReplid is Redis's "no ID" value for master_replid2.
const zeroReplid = "0000000000000000000000000000000000000000"

// Proxy relays one master's replication stream to any number of replicas.
type Proxy struct {
	cfg     Config
	log     *zap.SugaredLogger
	lim     resp.Limits
	runID   string
	started time.Time

	backlogSize atomic.Int64 // live value of repl-backlog-size
	replTimeout atomic.Int64 // live value of repl-timeout, nanoseconds

	mu sync.Mutex
	// Replication state, guarded by mu. The upstream goroutine is the only writer; replica
	// sessions read it to decide PSYNC. ring and snap change together (one epoch).
	replid, replid2 string
	secondOff       int64
	// ring is the backlog of the current history: a *backlog.Ring in memory mode, the
	// *backlog.Disk in disk mode. nil until the first snapshot or full sync.
	ring backlog.Backlog
	// disk is the disk backlog in disk mode (nil in memory mode, or after a failed Reset
	// until the next epoch reopens it); it exists before any history, so ring is either nil
	// or disk itself.
	disk  *backlog.Disk
	epoch uint64 // the disk backlog's epoch (State.Epoch) of the current history
	// resumeScan, when set by a disk recovery, follows command boundaries from the
	// recovered end; the upstream goroutine takes it over.
	resumeScan *resp.Scanner
	// resumeBlind is set when a recovery could not rebuild the scanner: the recovered end
	// may be inside a command, so the upstream acknowledges the stored end instead.
	resumeBlind bool
	snap        *snapshot
	changed     chan struct{} // closed and replaced whenever the state above changes
	// Snapshot refresh state (see refresh.go), guarded by mu.
	refreshWanted  bool      // a replica needs a snapshot the current one cannot give
	refreshing     bool      // a refresh connection is fetching a snapshot
	receiving      bool      // the main link is receiving a snapshot (new history)
	transfer       *transfer // that snapshot, once its payload has started
	lastRefresh    time.Time // when the master was last asked for a snapshot
	lastRefreshErr string    // why the last refresh failed; "" after a success
	replicas       map[*replica]struct{}
	link           linkInfo
	upConn         net.Conn // the current upstream connection, closed to force a resync
	closing        bool     // set once Serve is ending: no new goroutines

	auth      *authenticator
	serverTLS *tls.Config // the TLS listener's configuration; nil without tls-cert-file
	clientTLS *tls.Config // the master link's, with tls-replication; nil otherwise

	stats    stats
	fast     atomic.Pointer[[]*replica] // streaming replicas the upstream may write to inline
	kick     chan struct{}              // wakes the refresher (see requestRefreshLocked)
	admit    *admission                 // bounds concurrent full syncs; nil: no bound
	nextID   atomic.Int64
	clients  atomic.Int64
	wg       sync.WaitGroup
	ctx      context.Context
	shutdown context.CancelFunc
}

// linkInfo describes the upstream link for INFO and ROLE. Guarded by Proxy.mu, except lastIO.
type linkInfo struct {
	state     string // Redis's repl_state names: connect, connecting, handshake, sync, connected
	downSince time.Time
	lastIO    atomic.Int64 // unix nanoseconds of the last byte from the master; 0 never
	transfer  struct {
		size int64        // -1 before the payload line, 0 for EOF-marked
		read atomic.Int64 // bytes of the payload received so far
	}
}

type stats struct {
	syncFull, syncPartialOK, syncPartialErr atomic.Int64
	connections, rejected                   atomic.Int64
	netReplIn, netReplOut                   atomic.Int64
	// Snapshot refreshes asked of the master, those that failed, and snapshots discarded
	// because they failed their check.
	refreshes, refreshFailed, snapDiscarded atomic.Int64
	fullSyncsActive                         atomic.Int64
	queryBufLimit                           atomic.Int64 // clients closed by client-query-buffer-limit
}

// New validates cfg and prepares a Proxy. It reads the snapshot an earlier run left in
// cfg.Dir, so that the first upstream sync can be a partial one.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	if err := checkUsers(cfg.Users); err != nil {
		return nil, err
	}
	serverTLS, clientTLS, err := cfg.tlsConfigs()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("proxy: data directory: %w", err)
	}
	p := &Proxy{
		cfg:       cfg,
		log:       cfg.Logger.Sugar(),
		lim:       resp.DefaultLimits(),
		runID:     randomHex(40),
		started:   time.Now(),
		secondOff: -1,
		replid2:   zeroReplid,
		changed:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
		replicas:  make(map[*replica]struct{}),
		auth:      newAuthenticator(cfg.RequirePass, cfg.Users),
		serverTLS: serverTLS,
		clientTLS: clientTLS,
	}
	if cfg.MaxConcurrentFullSyncs > 0 {
		p.admit = newAdmission(cfg.MaxConcurrentFullSyncs)
	}
	p.backlogSize.Store(cfg.BacklogSize)
	p.replTimeout.Store(int64(cfg.ReplTimeout))
	p.link.state = "connect"
	p.link.downSince = time.Now()
	snap, err := loadSnapshot(cfg.Dir)
	if err != nil {
		p.log.Warnf("Ignoring the snapshot in %s: %v", cfg.Dir, err)
	}
	if cfg.BacklogMode == BacklogDisk {
		if err := p.openDisk(snap); err != nil {
			return nil, err
		}
		return p, nil
	}
	if snap != nil {
		p.replid, p.snap = snap.Replid, snap
		p.ring = backlog.NewRing(cfg.BacklogSize, snap.Offset+1)
		p.log.Infof("Loaded snapshot %s:%d (%d bytes) from %s", snap.Replid, snap.Offset, snap.Size, cfg.Dir)
	}
	return p, nil
}

// Serve accepts replicas on every listener (at least one: plain TCP, or TLS from
// TLSListener) and follows the master until ctx ends or a client sends SHUTDOWN. It closes
// the listeners and returns after every goroutine it started has ended.
func (p *Proxy) Serve(ctx context.Context, lns ...net.Listener) error {
	if len(lns) == 0 {
		return errors.New("proxy: Serve needs a listener")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.mu.Lock()
	if p.ctx != nil {
		p.mu.Unlock()
		return errors.New("proxy: Serve called twice")
	}
	p.ctx, p.shutdown = ctx, cancel
	p.mu.Unlock()
	if p.cfg.AnnouncePort == 0 {
		p.cfg.AnnouncePort = p.announcePort(lns)
	}
	// One redcon server per listener, each with its accept goroutine; errc gets one result
	// from each.
	srvs := make([]*redcon.Server, len(lns))
	errc := make(chan error, len(lns))
	lim := &inputLimits{maxBulk: p.cfg.ProtoMaxBulkLen, maxQuery: p.cfg.ClientQueryBufferLimit,
		log: p.log, overflow: &p.stats.queryBufLimit}
	for i, ln := range lns {
		srvs[i] = redcon.NewServer("", p.handle, p.accept, p.closed)
		go func() {
			err := srvs[i].Serve(trackedListener{ln, lim})
			if err != nil {
				err = fmt.Errorf("proxy: serve %s: %w", ln.Addr(), err)
			}
			errc <- err
		}()
	}
	// closing is still false here, so Serve's Wait below cannot race this Add.
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.runUpstream(ctx)
	}()
	go func() {
		defer p.wg.Done()
		p.runRefresher(ctx)
	}()
	for _, ln := range lns {
		kind := ""
		if _, ok := ln.(tlsListener); ok {
			kind = " (TLS)"
		}
		p.log.Infof("Ready to accept replicas on %s%s, master %s", ln.Addr(), kind, p.cfg.MasterAddr)
	}

	var err error
	pending := len(lns)
	select {
	case <-ctx.Done():
	case err = <-errc:
		pending--
		if err == nil {
			err = errors.New("proxy: a listener stopped")
		}
	}
	p.mu.Lock()
	p.closing = true
	p.kickReplicasLocked()
	if p.upConn != nil {
		p.upConn.Close()
	}
	p.mu.Unlock()
	cancel()
	for i, srv := range srvs {
		srv.Close()
		lns[i].Close() // in case srv.Serve had not started: its Accept then fails at once
	}
	for ; pending > 0; pending-- {
		<-errc
	}
	p.wg.Wait()
	p.mu.Lock()
	if r, ok := p.ring.(*backlog.Ring); ok {
		r.Close()
	}
	if p.disk != nil {
		// Close syncs the active segment whatever the policy, so a clean stop loses nothing.
		if err := p.disk.Close(); err != nil {
			p.log.Errorf("Closing the disk backlog: %v", err)
		}
	}
	p.mu.Unlock()
	p.log.Info("psync-proxy is now ready to exit, bye bye...")
	return err
}

// announcePort is the port sent upstream with REPLCONF listening-port, as Redis picks it:
// the TLS listener's with tls-replication, else the plain one's.
func (p *Proxy) announcePort(lns []net.Listener) int {
	port := 0
	for _, ln := range lns {
		a, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			continue
		}
		_, isTLS := ln.(tlsListener)
		if port == 0 || isTLS == (p.clientTLS != nil) {
			port = a.Port
		}
	}
	return port
}

// notifyLocked wakes every session waiting for a state change. Caller holds mu.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// kickReplicasLocked disconnects every replica that has been answered, so it reconnects and
// learns the new state with PSYNC, as Redis's disconnectSlaves does. Caller holds mu.
func (p *Proxy) kickReplicasLocked() {
	for r := range p.replicas {
		if r.answered || p.closing {
			r.kick()
		}
	}
}

// installEpoch makes a freshly received snapshot current: a new history starts at off+1 under
// replid, the old backlog is dropped and every replica is disconnected. If the snapshot
// cannot be put in place, nothing changes. In disk mode the disk backlog is Reset to the new
// history after the snapshot is in place, so that a restart finds either the old snapshot
// with the old history or the new snapshot; if the Reset fails, the proxy forgets the history
// (its next PSYNC is a full one) rather than relay a stream it cannot keep.
func (p *Proxy) installEpoch(replid string, off int64, snap *snapshot) (backlog.Backlog, error) {
	var ring *backlog.Ring
	if p.cfg.BacklogMode != BacklogDisk {
		ring = backlog.NewRing(p.backlogSize.Load(), off+1)
	}
	p.mu.Lock()
	if err := p.installSnapshotLocked(snap); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	old := p.ring
	p.replid, p.replid2, p.secondOff = replid, zeroReplid, -1
	// cur stays a nil interface unless a backlog is set: never an interface holding nil.
	var cur backlog.Backlog
	var err error
	if ring != nil {
		cur = ring
	} else if d, derr := p.resetDiskLocked(off + 1); derr == nil {
		cur = d
	} else {
		err = fmt.Errorf("starting the disk backlog of the new history: %w", derr)
		p.replid = ""
	}
	p.ring = cur
	p.kickReplicasLocked()
	p.notifyLocked()
	p.mu.Unlock()
	if r, ok := old.(*backlog.Ring); ok {
		r.Close()
	}
	if err != nil {
		return nil, err
	}
	return cur, nil
}

// installSnapshotLocked puts snap in place of the current snapshot, on disk and in p.snap.
// Caller holds mu, which also serializes installs.
func (p *Proxy) installSnapshotLocked(snap *snapshot) error {
	metaErr, err := snap.install(p.cfg.Dir)
	if err != nil {
		return err
	}
	if metaErr != nil {
		p.log.Warnf("The snapshot is in use but a restart will not find it: %v", metaErr)
	}
	p.snap = snap
	p.refreshWanted = false
	return nil
}

// shiftReplid follows a master that continued under a new replication ID (a failover): the
// old ID stays valid up to the current end, as in Redis's shiftReplicationId. In disk mode the
// IDs are stored first: if that fails nothing changes and the link must drop before a byte of
// the new history is stored, or a restart would resume those bytes under the old ID.
func (p *Proxy) shiftReplid(newID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	replid2, secondOff := p.replid, p.ring.End()+1
	if err := p.saveStateLocked(newID, replid2, secondOff); err != nil {
		return err
	}
	p.replid, p.replid2, p.secondOff = newID, replid2, secondOff
	p.log.Infof("Setting secondary replication ID to %s, valid up to offset: %d. New replication ID is %s",
		p.replid2, p.secondOff, p.replid)
	p.kickReplicasLocked()
	p.notifyLocked()
	return nil
}

func (p *Proxy) setResizedBacklog(size int64) {
	p.backlogSize.Store(size)
	p.mu.Lock()
	ring := p.ring
	p.mu.Unlock()
	if ring != nil {
		ring.Resize(size)
	}
}

func (p *Proxy) timeout() time.Duration { return time.Duration(p.replTimeout.Load()) }

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)[:n]
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
