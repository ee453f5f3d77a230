package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/internal/backoff"
	"github.com/psync-proxy/psync-proxy/resp"
)

// Config configures a Link.
type Config struct {
	Master  Master
	TLS     *tls.Config // the link's TLS (tls-replication); nil for plain TCP
	History *history.History
	// AnnouncePort is sent as REPLCONF listening-port.
	AnnouncePort int
	// Timeout is the live repl-timeout.
	Timeout func() time.Duration
	Log     *zap.SugaredLogger
	// OnPublish is called by the link's goroutine after each publish, with the bytes just
	// made visible in b from offset start (p nil when they are not one slice): the replica
	// sessions write them inline to replicas idle there, and wake the others.
	OnPublish func(b backlog.Backlog, start int64, p []byte)
	// OnSnapshot is called once the link has installed a snapshot (a full resync).
	OnSnapshot func()
	// SyncRetryMax is the longest delay after failed attempts to get an RDB (syncgate.go);
	// the refresher's min-interval. Default (0): SyncRetryMin.
	SyncRetryMax time.Duration
	// AnnounceVersion, when set, is sent as REPLCONF version (announce.go).
	AnnounceVersion string
}

// Link states, as Redis names repl_state in INFO and ROLE.
const (
	StateConnect    = "connect"
	StateConnecting = "connecting"
	StateHandshake  = "handshake"
	StateSync       = "sync"
	StateConnected  = "connected"
)

// Link is the replication link to the master. Run keeps it up; Follow changes the master.
type Link struct {
	cfg   Config
	h     *history.History
	log   *zap.SugaredLogger
	lim   resp.Limits
	gate  *syncGate    // paces the requests for an RDB, shared with the refresher
	netIn atomic.Int64 // stream and RDB bytes received (total_net_repl_input_bytes)

	lastIO       atomic.Int64 // unix nanoseconds of the last byte from the master; 0: never
	transferRead atomic.Int64 // bytes of the RDB payload received so far

	mu           sync.Mutex
	master       Master
	state        string
	downSince    time.Time
	transferSize int64              // -1 before the payload line, 0 for EOF-marked
	cancel       context.CancelFunc // ends the current attempt (dial or connection); Follow calls it
	follow       chan struct{}
	sw           switchState // the master changes and how each went (follow.go)

	// The stream's command boundaries, owned by Run's goroutine: they are followed for the
	// whole epoch, across reconnections, because the bytes stay contiguous.
	scan *resp.Scanner
	// scanErr is set while command boundaries are unknown (after a disk recovery that could
	// not rebuild them, or a protocol error inside an over-long command): everything read is
	// then published at once, and ACKs report the stored end.
	scanErr error
}

// NewLink prepares the link; Run starts it.
func NewLink(cfg Config) *Link {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop().Sugar()
	}
	if cfg.OnPublish == nil {
		cfg.OnPublish = func(backlog.Backlog, int64, []byte) {}
	}
	if cfg.OnSnapshot == nil {
		cfg.OnSnapshot = func() {}
	}
	return &Link{cfg: cfg, h: cfg.History, log: cfg.Log, lim: resp.DefaultLimits(), master: cfg.Master,
		gate: newSyncGate(cfg.SyncRetryMax), state: StateConnect, downSince: time.Now(), follow: make(chan struct{}, 1)}
}

// SetAnnouncePort sets the port sent as REPLCONF listening-port. Call it before Run.
func (l *Link) SetAnnouncePort(port int) { l.cfg.AnnouncePort = port }

// AnnounceVersion is the version sent as REPLCONF version; "" for none.
func (l *Link) AnnounceVersion() string { return l.cfg.AnnounceVersion }

// AnnouncePort is the port sent as REPLCONF listening-port.
func (l *Link) AnnouncePort() int { return l.cfg.AnnouncePort }

// Master is the master followed now.
func (l *Link) Master() Master {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.master
}

// errMasterProtocol marks a stream that broke RESP framing: the link is dropped and retried
// with backoff, like a sync that failed, rather than at once like a link that was lost.
var errMasterProtocol = errors.New("protocol error in the master's stream")

// Run keeps the link to the master up until ctx ends, reconnecting with backoff.
func (l *Link) Run(ctx context.Context) {
	wait := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		m := l.Master()
		if m.Addr == "" {
			if !l.awaitMaster(ctx) {
				return
			}
			m = l.Master()
		}
		streamed, err := l.connect(ctx, m)
		l.down()
		if ctx.Err() != nil {
			return
		}
		if l.moved(m, err) {
			wait.Reset()
			continue // to the new master at once
		}
		var delay time.Duration
		if streamed && !errors.Is(err, errMasterProtocol) {
			wait.Reset() // Redis reconnects at once after losing an established link
		} else {
			delay = wait.Next()
		}
		delay = max(delay, l.syncDelay(err)) // failed RDB transfers back off further (syncgate.go)
		if streamed {
			l.log.Warnf("Connection with master lost: %v", err)
		} else {
			l.log.Warnf("MASTER <-> REPLICA sync failed, next attempt in %v: %v", delay, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-l.follow:
			wait.Reset() // a new master: no reason to wait
		case <-time.After(delay):
		}
	}
}

func (l *Link) setState(state string) {
	l.mu.Lock()
	l.state = state
	l.mu.Unlock()
}

func (l *Link) down() {
	l.mu.Lock()
	if l.state == StateConnected {
		l.downSince = time.Now()
	}
	l.state = StateConnect
	l.cancel = nil
	l.sw.syncServing = false
	l.mu.Unlock()
}

// connect runs one connection to m: handshake, PSYNC, an optional RDB transfer, then the
// stream until the link fails. streamed reports whether the link got as far as streaming.
// m is the master Run read: were it to talk to a master Follow named since, that master's
// failures would pass for m's, and Run would skip the sync gate for them.
func (l *Link) connect(ctx context.Context, m Master) (streamed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.mu.Lock()
	if l.master != m {
		l.mu.Unlock()
		return false, errors.New("the master changed before the connection")
	}
	l.state, l.cancel = StateConnecting, cancel
	l.mu.Unlock()
	l.log.Infof("Connecting to MASTER %s", m.Addr)
	c, err := dial(ctx, m, l.cfg.TLS, l.cfg.Timeout())
	if err != nil {
		return false, err
	}
	c.TrackIO(&l.lastIO)
	c.SetIdleTimeout(l.cfg.Timeout())
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	l.setState(StateHandshake)
	l.log.Info("MASTER <-> REPLICA sync started")

	s := newSession(c, l.log, l.lim)
	if err := s.handshake(m, l.cfg.AnnouncePort, l.cfg.AnnounceVersion); err != nil {
		return false, err
	}
	bl, err := l.psync(s)
	if err != nil {
		return false, err
	}
	return true, l.stream(ctx, s, bl)
}

// Status is the link as INFO and ROLE show it.
type Status struct {
	Master    Master
	State     string // StateConnect ... StateConnected
	DownSince time.Time
	LastIO    time.Time // zero: nothing received yet
	// While State is StateSync: the RDB's size (-1 before its header, 0 when EOF-marked)
	// and the bytes received.
	TransferSize, TransferRead int64
	NetIn                      int64
	// SyncServing: the master followed since the last change answered PSYNC with a full
	// resync, whose RDB is arriving, while the proxy keeps serving its replicas from the
	// history it holds. INFO shows the link up then (clientport's masterSwitchInfo says why).
	SyncServing bool
	Switch      SwitchStatus
}

// Up reports whether the link streams.
func (s Status) Up() bool { return s.State == StateConnected }

// Status returns the link now.
func (l *Link) Status() Status {
	l.mu.Lock()
	s := Status{Master: l.master, State: l.state, DownSince: l.downSince, TransferSize: l.transferSize,
		SyncServing: l.sw.syncServing && l.state == StateSync, Switch: l.sw.status()}
	l.mu.Unlock()
	if t := l.lastIO.Load(); t != 0 {
		s.LastIO = time.Unix(0, t)
	}
	s.TransferRead = l.transferRead.Load()
	s.NetIn = l.netIn.Load()
	return s
}

// ResetStats zeroes the counters CONFIG RESETSTAT resets.
func (l *Link) ResetStats() { l.netIn.Store(0) }
