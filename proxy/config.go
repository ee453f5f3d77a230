package proxy

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/clientport"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// Config holds everything a Proxy needs. Zero fields take the defaults noted on each.
type Config struct {
	// MasterAddr is the upstream master, "host:port". Required unless SentinelAddrs is set.
	MasterAddr string
	// SentinelAddrs, when set, are Redis Sentinels (host:port each) that name the master: at
	// start the first that answers gives it (over MasterAddr), and the proxy follows every
	// +switch-master they publish for SentinelMaster (see follow.go).
	SentinelAddrs []string
	// SentinelMaster is the master's name in the Sentinels' configuration. Required with
	// SentinelAddrs.
	SentinelMaster string
	// SentinelUser and SentinelPassword authenticate to the Sentinels.
	SentinelUser, SentinelPassword string
	// Dir holds the snapshot (snapshot.rdb and its metadata). Required; created if missing.
	Dir string
	// BacklogSize is the most stream bytes kept in RAM (Redis repl-backlog-size). Default
	// DefaultBacklogSize.
	BacklogSize int64
	// ReplTimeout is Redis's repl-timeout: a link with no traffic for this long is dropped. Default 60s.
	ReplTimeout time.Duration
	// MasterUser and MasterAuth authenticate the upstream link (Redis masteruser/masterauth).
	MasterUser, MasterAuth string
	// RequirePass protects the downstream port (Redis requirepass).
	RequirePass string
	// ProtectedMode, when true and RequirePass is empty, refuses clients that do not come from
	// loopback, as Redis's protected mode does. cmd/psync-proxy turns it on by default.
	ProtectedMode bool
	// AnnouncePort is sent upstream as REPLCONF listening-port. Default: the listener's port.
	AnnouncePort int
	// AnnounceReplicaVersion, when set (such as "9.0.4"), is sent upstream as REPLCONF
	// version, as a Valkey replica of that release would: a Valkey 9.1 primary then sends its
	// own RDB format rather than version 11 (see upstream/announce.go). Default: none.
	AnnounceReplicaVersion string

	// SnapshotRefresh is when the proxy fetches a new snapshot on a second connection to the
	// master: RefreshAuto (default) also does so before the backlog drops the byte after the
	// snapshot, so that a full sync never has to wait; RefreshOnDemand only when a replica
	// needs a full sync the current snapshot can no longer serve.
	SnapshotRefresh string
	// SnapshotRefreshMargin is how close the backlog's first byte may come to the byte after
	// the snapshot before RefreshAuto fetches a new one. Default: a quarter of BacklogSize.
	SnapshotRefreshMargin int64
	// SnapshotRefreshMinInterval is the least time between two snapshot requests to the
	// master, so that it never forks for the proxy more than once per interval. Default 60s.
	SnapshotRefreshMinInterval time.Duration
	// MaxConcurrentFullSyncs bounds the full syncs served at once; others wait in order of
	// arrival, kept alive with newlines. 0: no bound.
	MaxConcurrentFullSyncs int
	// FullSyncRateLimit bounds the bytes per second of snapshot sent to each replica. 0: none.
	FullSyncRateLimit int64
	// BacklogMode is BacklogMemory (default: the backlog is a RAM ring, lost on restart) or
	// BacklogDisk (segments under Dir/backlog, retained by BacklogSize, recovered on restart).
	BacklogMode string
	// BacklogFsync is the disk backlog's durability policy; the zero value is everysec.
	BacklogFsync backlog.FsyncPolicy
	// BacklogTTL, when positive, also drops disk segments older than this. 0: size only.
	BacklogTTL time.Duration
	// BacklogRAMTail is the disk backlog's in-memory tail, from which replicas that keep up
	// are served. Default backlog.DefaultRAMTail (never more than BacklogSize).
	BacklogRAMTail int64
	// Users are ACL-style users of the downstream port besides the default one (whose
	// password is RequirePass). With users and no RequirePass the default user is off:
	// clients must AUTH as one of them, and protected mode counts them as passwords.
	Users []User
	// TLS, with Redis's option names (see tls.go). TLSCertFile and TLSKeyFile are needed for
	// a TLSListener; TLSCACertFile verifies replicas' certificates and the master's.
	TLSCertFile, TLSKeyFile, TLSCACertFile string
	// TLSClientCertFile and TLSClientKeyFile are presented to the master instead of
	// TLSCertFile and TLSKeyFile when set.
	TLSClientCertFile, TLSClientKeyFile string
	// TLSAuthClients is TLSAuthYes (default), TLSAuthNo or TLSAuthOptional: whether TLS
	// clients must present a certificate signed by a CA of TLSCACertFile.
	TLSAuthClients string
	// TLSReplication makes the link to the master use TLS (Redis tls-replication).
	TLSReplication bool

	// Logger receives the log. Default: a no-op logger.
	Logger *zap.Logger

	// ConfigFile is the config file the proxy was started with, shown in INFO; RewriteConfig
	// writes the live values of the options into it, by directive name (CONFIG REWRITE). Nil
	// RewriteConfig: CONFIG REWRITE replies that there is no config file.
	ConfigFile    string
	RewriteConfig func(live map[string][]string) error
	// Settings are options the proxy does not apply itself but reports (bind, port, loglevel,
	// logfile, ...), by directive name: CONFIG GET shows them and CONFIG REWRITE writes them
	// back. The TLS options of this Config are added to them.
	Settings map[string]string

	// Limits on downstream clients (issue 6), with Redis's names.
	//
	// MaxClients is Redis's maxclients: a connection beyond it, replicas counted, gets
	// "-ERR max number of clients reached" and is closed. Default DefaultMaxClients.
	MaxClients int
	// ProtoMaxBulkLen is Redis's proto-max-bulk-len: the longest argument a client may
	// declare. Default DefaultProtoMaxBulkLen.
	ProtoMaxBulkLen int64
	// ClientQueryBufferLimit is Redis's client-query-buffer-limit: the most bytes of one
	// command; a client past it is closed. Default DefaultClientQueryBufferLimit.
	ClientQueryBufferLimit int64
	// Timeout is Redis's timeout: a client (not a replica) idle this long is closed. 0: never.
	Timeout time.Duration
	// HandshakeTimeout closes a connection that has not sent a command, authenticated when
	// RequirePass is set, within it of connecting. Default DefaultHandshakeTimeout;
	// negative: never.
	HandshakeTimeout time.Duration
}

// Defaults of the client limits. Redis's are 512 MB per argument and 1 GB per client; the
// proxy's clients only send handshake and admin commands (a password, a replication ID, an
// offset, a CONFIG value), so these are far smaller and keep a flood of clients cheap.
const (
	DefaultMaxClients             = 10000
	DefaultProtoMaxBulkLen        = 64 << 10 // also Redis's largest inline request
	DefaultClientQueryBufferLimit = 1 << 20  // also Redis's least client-query-buffer-limit
	DefaultHandshakeTimeout       = 10 * time.Second
)

// Defaults for zero Config fields.
const (
	DefaultBacklogSize                = 256 << 20
	DefaultReplTimeout                = 60 * time.Second
	DefaultSnapshotRefreshMinInterval = 60 * time.Second
)

// Backlog modes.
const (
	BacklogMemory = "memory"
	BacklogDisk   = "disk"
)

// SnapshotRefresh policies.
const (
	RefreshAuto     = "auto"
	RefreshOnDemand = "on-demand"
)

func (c *Config) applyDefaults() error {
	if err := c.checkMaster(); err != nil {
		return err
	}
	if c.Dir == "" {
		return errors.New("proxy: no data directory (--dir)")
	}
	if c.BacklogSize == 0 {
		c.BacklogSize = DefaultBacklogSize
	}
	if c.BacklogSize < 0 {
		return fmt.Errorf("proxy: negative backlog size %d", c.BacklogSize)
	}
	if c.ReplTimeout == 0 {
		c.ReplTimeout = DefaultReplTimeout
	}
	if c.ReplTimeout < time.Second {
		return fmt.Errorf("proxy: repl-timeout %v is below one second", c.ReplTimeout)
	}
	switch c.SnapshotRefresh {
	case "":
		c.SnapshotRefresh = RefreshAuto
	case RefreshAuto, RefreshOnDemand:
	default:
		return fmt.Errorf("proxy: snapshot-refresh must be %s or %s, not %q", RefreshAuto, RefreshOnDemand, c.SnapshotRefresh)
	}
	if c.AnnounceReplicaVersion != "" {
		if err := upstream.CheckReplicaVersion(c.AnnounceReplicaVersion); err != nil {
			return fmt.Errorf("proxy: announce-replica-version: %w", err)
		}
	}
	if c.SnapshotRefreshMargin < 0 {
		return fmt.Errorf("proxy: negative snapshot-refresh-margin %d", c.SnapshotRefreshMargin)
	}
	if c.SnapshotRefreshMinInterval == 0 {
		c.SnapshotRefreshMinInterval = DefaultSnapshotRefreshMinInterval
	}
	if c.SnapshotRefreshMinInterval < 0 {
		return fmt.Errorf("proxy: negative snapshot-refresh-min-interval %v", c.SnapshotRefreshMinInterval)
	}
	if c.MaxConcurrentFullSyncs < 0 {
		return fmt.Errorf("proxy: negative max-concurrent-full-syncs %d", c.MaxConcurrentFullSyncs)
	}
	if c.FullSyncRateLimit < 0 {
		return fmt.Errorf("proxy: negative full-sync-rate-limit %d", c.FullSyncRateLimit)
	}
	switch c.BacklogMode {
	case "":
		c.BacklogMode = BacklogMemory
	case BacklogMemory, BacklogDisk:
	default:
		return fmt.Errorf("proxy: backlog-mode must be %s or %s, not %q", BacklogMemory, BacklogDisk, c.BacklogMode)
	}
	if c.BacklogTTL < 0 {
		return fmt.Errorf("proxy: negative backlog-ttl %v", c.BacklogTTL)
	}
	if c.BacklogRAMTail < 0 {
		return fmt.Errorf("proxy: negative backlog-ram-tail %d", c.BacklogRAMTail)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if err := checkUsers(c.Users); err != nil {
		return err
	}
	return c.applyClientLimits()
}

// checkMaster checks MasterAddr and the Sentinel options: one way to find the master is needed.
func (c *Config) checkMaster() error {
	switch {
	case c.MasterAddr == "" && len(c.SentinelAddrs) == 0:
		return errors.New("proxy: no master address (--master host:port, or --sentinel and --sentinel-master)")
	case len(c.SentinelAddrs) > 0 && c.SentinelMaster == "":
		return errors.New("proxy: --sentinel needs --sentinel-master, the master's name in the Sentinels' configuration")
	case len(c.SentinelAddrs) == 0 && c.SentinelMaster != "":
		return errors.New("proxy: --sentinel-master needs --sentinel, the Sentinels' addresses")
	}
	if c.MasterAddr == "" {
		return nil
	}
	if err := (upstream.Master{Addr: c.MasterAddr}).Check(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// applyClientLimits fills and checks the client limits.
func (c *Config) applyClientLimits() error {
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.ProtoMaxBulkLen == 0 {
		c.ProtoMaxBulkLen = DefaultProtoMaxBulkLen
	}
	if c.ClientQueryBufferLimit == 0 {
		c.ClientQueryBufferLimit = DefaultClientQueryBufferLimit
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	switch {
	case c.MaxClients < 1:
		return fmt.Errorf("proxy: maxclients %d is below 1", c.MaxClients)
	case c.ProtoMaxBulkLen < 1024:
		return fmt.Errorf("proxy: proto-max-bulk-len %d is below 1kb", c.ProtoMaxBulkLen)
	case c.ClientQueryBufferLimit < 1024:
		return fmt.Errorf("proxy: client-query-buffer-limit %d is below 1kb", c.ClientQueryBufferLimit)
	case c.Timeout < 0:
		return fmt.Errorf("proxy: negative timeout %v", c.Timeout)
	}
	return nil
}

// ParseSize parses a size the way redis.conf does: a plain number of bytes, or a number
// followed by k, kb, m, mb, g or gb, case-insensitively, where k = 1000 and kb = 1024.
func ParseSize(s string) (int64, error) { return clientport.ParseSize(s) }

// User is an ACL-style user of the client port, beside the default user whose password is
// Config.RequirePass (see clientport.User).
type User = clientport.User

// ParseUser reads a user in the command-line form name:password:permissions.
func ParseUser(s string) (User, error) { return clientport.ParseUser(s) }

// ParseUsers reads users one a line, in ParseUser's form.
func ParseUsers(text string) ([]User, error) { return clientport.ParseUsers(text) }

func checkUsers(users []User) error { return clientport.CheckUsers(users) }
