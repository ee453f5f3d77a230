// Package proxy is psync-proxy: a replica of one Redis or Valkey master upstream, and a master
// to any number of stock replicas downstream, which PSYNC from its own backlog and full-sync
// from its cached snapshot.
//
// A Server is made of parts, each the one owner of its state:
//   - history: the replication IDs, the backlog and the snapshot; the PSYNC decision;
//   - upstream: the master link (a Master that can be replaced at runtime) and the snapshot
//     refresher;
//   - downstream: the replica sessions (full and partial syncs, streaming, fan-out);
//   - clientport: the listeners, client limits, authentication and the command table.
//
// Server wires them and runs them, with net/http's lifecycle: Serve, Shutdown, Close.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy/clientport"
	"github.com/psync-proxy/psync-proxy/proxy/downstream"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/internal/randhex"
	"github.com/psync-proxy/psync-proxy/proxy/sentinel"
	"github.com/psync-proxy/psync-proxy/proxy/streamrate"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// Version is psync-proxy's version, reported by INFO and HELLO.
const Version = "0.1.0"

// ErrServerClosed is returned by Serve after Shutdown or Close, and after a client's SHUTDOWN.
var ErrServerClosed = errors.New("proxy: Server closed")

// Server relays one master's replication stream to any number of replicas.
type Server struct {
	cfg         Config
	log         *zap.SugaredLogger
	serverTLS   *tls.Config // the TLS listeners'; nil without tls-cert-file
	replTimeout atomic.Int64

	history   *history.History
	link      *upstream.Link
	refresher *upstream.Refresher
	sessions  *downstream.Sessions
	port      *clientport.Port
	rate      *streamrate.Meter // the master's stream rate, sampled by a goroutine of the Server
	runID     string
	created   time.Time // when New ran: INFO's and the metrics' uptime

	metricsOnce sync.Once
	metrics     http.Handler
	httpServers []*http.Server    // ServeMetrics's, closed by the shutdown; guarded by startMu
	watcher     *sentinel.Watcher // nil without Config.SentinelAddrs
	followMu    sync.Mutex        // one master change at a time (follow.go)

	// The master link and the refresher run from the first Serve until the shutdown.
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	startMu  sync.Mutex
	started  bool
	closing  atomic.Bool
	stopOnce sync.Once
	stopped  chan struct{} // closed once every goroutine has ended and the backlog is closed
}

// New validates cfg and prepares a Server. It reads the snapshot (and, in disk mode, the
// backlog) an earlier run left in cfg.Dir, so that the first sync upstream can be partial.
func New(cfg Config) (*Server, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	serverTLS, clientTLS, err := cfg.tlsConfigs()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.Sugar(), serverTLS: serverTLS, stopped: make(chan struct{}),
		runID: randhex.String(40), created: time.Now()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.replTimeout.Store(int64(cfg.ReplTimeout))
	var sessions *downstream.Sessions // set below; the history announces changes to it
	h, err := history.Open(history.Options{Dir: cfg.Dir, Disk: cfg.BacklogMode == BacklogDisk,
		BacklogSize: cfg.BacklogSize, BacklogTTL: cfg.BacklogTTL, Fsync: cfg.BacklogFsync, RAMTail: cfg.BacklogRAMTail,
		Log: s.log, OnChange: func(gen uint64) { sessions.NewHistory(gen) }})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.history = h
	if s.watcher, err = newWatcher(cfg); err != nil {
		h.Close()
		return nil, err
	}
	masterAddr := s.initialMaster(s.watcher)
	sessions = downstream.New(downstream.Config{History: h, Timeout: s.timeout, Log: s.log,
		MaxConcurrentFullSyncs: cfg.MaxConcurrentFullSyncs, FullSyncRateLimit: cfg.FullSyncRateLimit,
		Refresh: func(why string) { s.refresher.Request(why) }})
	s.sessions = sessions
	s.link = upstream.NewLink(upstream.Config{History: h, TLS: clientTLS, Timeout: s.timeout, Log: s.log,
		Master:       upstream.Master{Addr: masterAddr, User: cfg.MasterUser, Password: cfg.MasterAuth},
		AnnouncePort: cfg.AnnouncePort, OnPublish: sessions.FanOut, SyncRetryMax: cfg.SnapshotRefreshMinInterval,
		AnnounceVersion: cfg.AnnounceReplicaVersion,
		OnSnapshot:      func() { s.refresher.SnapshotInstalled() }})
	s.rate = streamrate.New(streamrate.Window, streamrate.Keep, streamrate.Every)
	s.refresher = upstream.NewRefresher(upstream.RefreshConfig{Link: s.link, Auto: cfg.SnapshotRefresh == RefreshAuto,
		Margin: s.refreshMargin, MinInterval: cfg.SnapshotRefreshMinInterval})
	s.port, err = clientport.New(clientport.Config{History: h, Link: s.link, Refresher: s.refresher, Sessions: sessions,
		ReplTimeout: s.timeout, SetReplTimeout: func(d time.Duration) { s.replTimeout.Store(int64(d)) },
		Shutdown: s.startShutdown, Follow: s.follow, RequirePass: cfg.RequirePass, Users: cfg.Users, ProtectedMode: cfg.ProtectedMode,
		MaxClients: cfg.MaxClients, ProtoMaxBulkLen: cfg.ProtoMaxBulkLen, ClientQueryBufferLimit: cfg.ClientQueryBufferLimit,
		Timeout: cfg.Timeout, HandshakeTimeout: cfg.HandshakeTimeout, Version: Version, RunID: s.runID,
		Started: s.created, Log: s.log, Rate: s.rate, ConfigFile: cfg.ConfigFile, RewriteConfig: cfg.RewriteConfig,
		Settings: cfg.settings(), RefreshMargin: cfg.SnapshotRefreshMargin})
	if err != nil {
		h.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) timeout() time.Duration { return time.Duration(s.replTimeout.Load()) }

// refreshMargin is how much backlog room must be left before byte S+1 is evicted.
func (s *Server) refreshMargin() int64 {
	if m := s.cfg.SnapshotRefreshMargin; m > 0 {
		return m
	}
	return s.history.BacklogSize() / 4
}

// Serve accepts replicas and clients on ln until Shutdown or Close, and returns
// ErrServerClosed then. The first Serve also starts following the master. Serve may be
// called for several listeners at once (plain TCP and TLS from TLSListener).
func (s *Server) Serve(ln net.Listener) error {
	if !s.start(ln) {
		ln.Close()
		return ErrServerClosed
	}
	kind := ""
	if clientport.IsTLS(ln) {
		kind = " (TLS)"
	}
	s.log.Infof("Ready to accept replicas on %s%s, master %s", ln.Addr(), kind, s.link.Master().Addr)
	err := s.port.Serve(ln)
	if errors.Is(err, clientport.ErrClosed) || s.closing.Load() {
		return ErrServerClosed
	}
	return fmt.Errorf("proxy: serve %s: %w", ln.Addr(), err)
}

// start starts the master link and the refresher once, announcing ln's port upstream unless
// Config.AnnouncePort is set. It reports false once the server is shutting down.
func (s *Server) start(ln net.Listener) bool {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.started {
		return true
	}
	s.started = true
	if s.link.AnnouncePort() == 0 {
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			s.link.SetAnnouncePort(a.Port)
		}
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.link.Run(s.ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.rate.Run(s.ctx, s.sampleOffset)
	}()
	go func() {
		defer s.wg.Done()
		s.refresher.Run(s.ctx)
	}()
	if s.watcher != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watchSentinels(s.ctx)
		}()
	}
	return true
}

// sampleOffset is the master's stream offset for the rate meter, which samples it from a
// goroutine of its own rather than from the master link: the link sleeps in a read while
// the master is silent, and the rate must fall to zero then; and the link's loop is the hot
// path of every byte, where a clock read per chunk is not free.
func (s *Server) sampleOffset() (off int64, epoch uint64, ok bool) {
	v := s.history.View()
	return v.End, v.Epoch, v.Backlog
}

// Shutdown stops the server: the listeners and clients, every replica, the master link; it
// waits until every goroutine has ended and the backlog is closed (in disk mode, synced), or
// until ctx ends, whichever comes first. The shutdown goes on after ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.startShutdown()
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the server as Shutdown does, without waiting for it to complete.
func (s *Server) Close() error {
	s.startShutdown()
	return nil
}

// startShutdown starts the shutdown once, in its own goroutine, so that a client's SHUTDOWN
// can start it from its own connection's goroutine.
func (s *Server) startShutdown() {
	s.stopOnce.Do(func() {
		s.startMu.Lock()
		s.closing.Store(true)
		s.startMu.Unlock()
		go s.shutdown()
	})
}

func (s *Server) shutdown() {
	defer close(s.stopped)
	s.port.Close()
	s.closeMetrics()
	s.cancel()
	s.sessions.Close()
	s.wg.Wait()
	if err := s.history.Close(); err != nil {
		s.log.Errorf("Closing the disk backlog: %v", err)
	}
	s.log.Info("psync-proxy is now ready to exit, bye bye...")
}

// Done is closed once the server has stopped: after Shutdown, Close or a client's SHUTDOWN,
// every goroutine has ended and the backlog is closed.
func (s *Server) Done() <-chan struct{} { return s.stopped }

// TLSListener wraps ln so that the proxy speaks TLS on it (Redis's tls-port), with the
// certificate and client policy of its Config. Pass the result to Serve.
func (s *Server) TLSListener(ln net.Listener) (net.Listener, error) {
	if s.serverTLS == nil {
		return nil, errors.New("proxy: a TLS listener needs tls-cert-file and tls-key-file")
	}
	return clientport.TLSListener(ln, s.serverTLS), nil
}
