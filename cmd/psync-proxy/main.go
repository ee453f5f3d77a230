// Command psync-proxy relays a Redis master's replication stream to any number of replicas,
// answering their PSYNC from its own large backlog and their full syncs from a cached snapshot.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/internal/redisconf"
	"github.com/psync-proxy/psync-proxy/proxy"
)

func main() {
	if isAdvise(os.Args[1:]) {
		os.Exit(advise(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// options are the command line, with redis.conf's names where Redis has the setting.
type options struct {
	master, listen, dir             string
	sentinels, sentinelMaster       string
	sentinelUser, sentinelPassword  string
	backlogSize                     string
	replTimeout                     int
	masterUser, masterAuth, reqPass string
	protectedMode                   string
	snapshotRefresh, refreshMargin  string
	refreshMinInterval              int
	maxFullSyncs                    int
	fullSyncRate                    string
	backlogMode, backlogFsync       string
	backlogTTL                      int
	backlogRAMTail                  string
	announceVersion                 string
	logLevel, logFormat, logFile    string
	version                         bool
	// client limits
	maxClients                     int
	protoMaxBulkLen, queryBufLimit string
	timeout, handshakeTimeout      int

	// Users and TLS (Redis's tls-* names).
	users                          []string
	usersFile                      string
	tlsPort                        string
	tlsCert, tlsKey, tlsCA         string
	tlsClientCert, tlsClientKey    string
	tlsAuthClients, tlsReplication string

	// The config file (conffile.go): the line that set each flag, for errors found later, and
	// warnings to log once logging is up.
	confFile string
	origin   map[string]redisconf.Directive
	warnings []string
	// fromEnv names the directives whose value came from the environment (passwords):
	// CONFIG REWRITE leaves them out of the file.
	fromEnv map[string]bool

	metricsListen string
}

// parse reads the command line: an optional config file, then flags, which win over it.
func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := o.flagSet(stderr)
	file, args := confFileArg(args)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if file != "" && !o.version {
		if err := o.loadConfFile(fs, file); err != nil {
			return nil, err
		}
	}
	// Secrets from the environment keep them out of ps output.
	o.fromEnv = map[string]bool{}
	if o.masterAuth == "" {
		o.masterAuth = os.Getenv("PSYNC_PROXY_MASTERAUTH")
		o.fromEnv["masterauth"] = o.masterAuth != ""
	}
	if o.reqPass == "" {
		o.reqPass = os.Getenv("PSYNC_PROXY_REQUIREPASS")
		o.fromEnv["requirepass"] = o.reqPass != ""
	}
	if o.sentinelPassword == "" {
		o.sentinelPassword = os.Getenv("PSYNC_PROXY_SENTINEL_PASSWORD")
		o.fromEnv["sentinel-password"] = o.sentinelPassword != ""
	}
	return o, nil
}

// flagSet defines the flags. Every flag but --version is also a config file directive
// (conffile.go), which reads the value's kind from the usage: the name in backquotes
// (`size`, `yes|no`, `memory|disk`) and "(repeatable)".
func (o *options) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("psync-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: psync-proxy [/path/to/psync-proxy.conf] [options]\n\n"+
			"Relays a Redis master's replication stream to stock replicas: they PSYNC from the\n"+
			"proxy's backlog and full-sync from its cached snapshot. Options on the command line\n"+
			"win over the config file's (see docs/psync-proxy.conf for its directives).\n\nOptions:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.master, "master", "", "the master to replicate, `host:port` (required without --sentinel)")
	fs.StringVar(&o.sentinels, "sentinel", "", "Redis Sentinels that name the master, `host:port[,host:port...]`: the proxy asks them at start and follows their +switch-master")
	fs.StringVar(&o.sentinelMaster, "sentinel-master", "", "the master's `name` in the Sentinels' configuration (sentinel monitor <name> ...)")
	fs.StringVar(&o.sentinelUser, "sentinel-user", "", "ACL `user` for AUTH to the Sentinels")
	fs.StringVar(&o.sentinelPassword, "sentinel-password", "", "`password` for AUTH to the Sentinels (also $PSYNC_PROXY_SENTINEL_PASSWORD)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:6380", "`address` replicas connect to (loopback by default, like Redis's protected mode)")
	fs.StringVar(&o.dir, "dir", "./psync-proxy-data", "`directory` for the snapshot (snapshot.rdb, snapshot.json) and the disk backlog (backlog/)")
	fs.StringVar(&o.backlogSize, "backlog-size", "256mb", "stream bytes kept for partial resyncs, in Redis units (`size`: 512mb, 4gb, bytes)")
	fs.StringVar(&o.backlogMode, "backlog-mode", "memory", "`memory|disk`: keep the backlog in RAM only, or in segment files under --dir/backlog that survive a restart")
	fs.StringVar(&o.backlogFsync, "backlog-fsync", "everysec", "`always|everysec|no`: when the disk backlog is fsynced (as Redis appendfsync); the master is acknowledged only up to synced bytes")
	fs.IntVar(&o.backlogTTL, "backlog-ttl", 0, "`seconds` after which disk backlog segments are dropped even below --backlog-size (0: no limit)")
	fs.StringVar(&o.backlogRAMTail, "backlog-ram-tail", "64mb", "`size` of the disk backlog's in-memory tail, from which replicas that keep up are served")
	fs.StringVar(&o.announceVersion, "announce-replica-version", "", "send the master REPLCONF version `x.y.z`, as a Valkey replica of that release does (\"\": none; a Valkey 9.1 primary then sends RDB version 11)")
	fs.IntVar(&o.replTimeout, "repl-timeout", 60, "`seconds` without traffic before a master or replica link is dropped")
	fs.StringVar(&o.masterUser, "masteruser", "", "ACL `user` for AUTH to the master")
	fs.StringVar(&o.masterAuth, "masterauth", "", "`password` for AUTH to the master (also $PSYNC_PROXY_MASTERAUTH)")
	fs.StringVar(&o.reqPass, "requirepass", "", "`password` clients must AUTH with (also $PSYNC_PROXY_REQUIREPASS)")
	fs.StringVar(&o.protectedMode, "protected-mode", "yes", "`yes|no`: without --requirepass, accept only loopback clients")
	fs.StringVar(&o.snapshotRefresh, "snapshot-refresh", "auto", "`auto|on-demand`: fetch a new snapshot on a second master connection before the backlog outgrows the current one (auto), or only when a replica needs it (on-demand)")
	fs.StringVar(&o.refreshMargin, "snapshot-refresh-margin", "0", "auto refresh starts when the backlog's first byte comes within this `size` of the snapshot's offset (0: a quarter of --backlog-size)")
	fs.IntVar(&o.refreshMinInterval, "snapshot-refresh-min-interval", 60, "least `seconds` between two snapshot requests to the master")
	fs.IntVar(&o.maxFullSyncs, "max-concurrent-full-syncs", 0, "full syncs served at once, others wait in order (`n`, 0: no limit)")
	fs.StringVar(&o.fullSyncRate, "full-sync-rate-limit", "0", "snapshot bytes per second sent to each replica (`size`, 0: no limit)")
	fs.IntVar(&o.maxClients, "maxclients", proxy.DefaultMaxClients, "most connections at once, replicas included (`n`); others get -ERR max number of clients reached")
	fs.StringVar(&o.protoMaxBulkLen, "proto-max-bulk-len", "64kb", "longest argument a client may send (`size`); longer ones get a protocol error and a close")
	fs.StringVar(&o.queryBufLimit, "client-query-buffer-limit", "1mb", "most bytes of one command (`size`); a client past it is closed")
	fs.IntVar(&o.timeout, "timeout", 0, "close a client (not a replica) idle for this many `seconds` (0: never)")
	fs.IntVar(&o.handshakeTimeout, "handshake-timeout", int(proxy.DefaultHandshakeTimeout/time.Second), "close a connection that has not sent a command, authenticated when --requirepass or --user is set, within this many `seconds` (0: never)")
	fs.StringVar(&o.logLevel, "log-level", "info", "`level`: debug, info, warn or error, or Redis's debug, verbose, notice, warning or nothing")
	fs.StringVar(&o.logFile, "logfile", "", "`file` to append the log to (\"\": standard error)")
	fs.StringVar(&o.logFormat, "log-format", "console", "`format`: console or json")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Func("user", "an ACL-style `name:password:perms` user (repeatable); perms: replication, noreplication, admin, comma-separated (also $PSYNC_PROXY_USERS, one a line)", func(v string) error {
		o.users = append(o.users, v)
		return nil
	})
	fs.StringVar(&o.usersFile, "users-file", "", "`file` of users, one name:password:perms a line (# comments), to keep passwords out of ps")
	fs.StringVar(&o.tlsPort, "tls-port", "", "`port` (or host:port) of a TLS listener, on --listen's host; --listen with port 0 turns plain TCP off")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "`file`: the proxy's X.509 certificate (PEM), also its client certificate to the master")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "`file`: the private key of --tls-cert-file (PEM)")
	fs.StringVar(&o.tlsCA, "tls-ca-cert-file", "", "`file`: CA certificates (PEM) that verify replicas' client certificates and the master's certificate")
	fs.StringVar(&o.tlsClientCert, "tls-client-cert-file", "", "`file`: client certificate for the master link, instead of --tls-cert-file")
	fs.StringVar(&o.tlsClientKey, "tls-client-key-file", "", "`file`: the private key of --tls-client-cert-file")
	fs.StringVar(&o.tlsAuthClients, "tls-auth-clients", "yes", "`yes|no|optional`: whether TLS clients must present a certificate signed by --tls-ca-cert-file")
	fs.StringVar(&o.tlsReplication, "tls-replication", "no", "`yes|no`: connect to the master with TLS")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "`host:port` serving Prometheus metrics on /metrics and health checks on /healthz and /readyz (\"\": none)")
	return fs
}

// userList gathers --user, --users-file and $PSYNC_PROXY_USERS.
func (o *options) userList() ([]proxy.User, error) {
	var users []proxy.User
	for _, v := range o.users {
		u, err := proxy.ParseUser(v)
		if err != nil {
			return nil, fmt.Errorf("--user: %w", err)
		}
		users = append(users, u)
	}
	if o.usersFile != "" {
		b, err := os.ReadFile(o.usersFile)
		if err != nil {
			return nil, fmt.Errorf("--users-file: %w", err)
		}
		more, err := proxy.ParseUsers(string(b))
		if err != nil {
			return nil, fmt.Errorf("--users-file %s: %w", o.usersFile, err)
		}
		users = append(users, more...)
	}
	if env := os.Getenv("PSYNC_PROXY_USERS"); env != "" {
		more, err := proxy.ParseUsers(env)
		if err != nil {
			return nil, fmt.Errorf("$PSYNC_PROXY_USERS: %w", err)
		}
		users = append(users, more...)
	}
	return users, nil
}

// listenAddrs returns the plain and TLS addresses to listen on; "" for none. --listen with
// port 0 turns plain TCP off, as Redis's port 0; --tls-port alone is a port on its host.
func (o *options) listenAddrs() (plain, secure string, err error) {
	host, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return "", "", fmt.Errorf("--listen: %w", err)
	}
	if port != "0" {
		plain = o.listen
	}
	switch {
	case o.tlsPort == "" || o.tlsPort == "0":
	case strings.Contains(o.tlsPort, ":"):
		secure = o.tlsPort
	default:
		secure = net.JoinHostPort(host, o.tlsPort)
	}
	if plain == "" && secure == "" {
		return "", "", errors.New("no listener: --listen has port 0 and no --tls-port is set")
	}
	if secure != "" && o.tlsCert == "" {
		return "", "", errors.New("--tls-port needs --tls-cert-file and --tls-key-file")
	}
	return plain, secure, nil
}

func newLogger(level, format, file string) (*zap.Logger, error) {
	lvl, err := parseLogLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
		cfg.EncoderConfig.EncodeTime = zapcore.TimeEncoderOfLayout("02 Jan 2006 15:04:05.000")
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	default:
		return nil, fmt.Errorf("--log-format must be console or json, not %q", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	if file != "" {
		if err := logTo(&cfg, file); err != nil {
			return nil, fmt.Errorf("--logfile: %w", err)
		}
	}
	return cfg.Build()
}

func run(args []string, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return reportOptionsError(stderr, err)
	}
	if o.version {
		fmt.Fprintln(stderr, "psync-proxy", proxy.Version)
		return 0
	}
	cfg, err := o.config()
	if err != nil {
		return reportOptionsError(stderr, o.fileError(err))
	}
	log, err := newLogger(o.logLevel, o.logFormat, o.logFile)
	if err != nil {
		return reportOptionsError(stderr, o.fileError(err))
	}
	defer log.Sync()
	for _, w := range o.warnings {
		log.Warn(w)
	}
	cfg.Logger = log
	cfg.Settings = o.settings()
	cfg.ConfigFile, cfg.RewriteConfig = o.rewriteHook()
	cfg.MaxClients = adjustOpenFilesLimit(cfg.MaxClients, log.Sugar())
	plain, secure, err := listen(o)
	if err != nil {
		log.Error("Cannot listen", zap.Error(err))
		return 1
	}
	cfg.AnnouncePort = announcePort(plain, secure, cfg.TLSReplication)
	srv, err := proxy.New(cfg)
	if err != nil {
		closeAll(plain, secure)
		log.Error("Cannot start", zap.Error(err))
		return 1
	}
	lns, err := wrapTLS(srv, plain, secure)
	if err != nil {
		log.Error("Cannot listen", zap.Error(err))
		return 1
	}
	metricsLn, err := listenMetrics(o.metricsListen)
	if err != nil {
		closeAll(lns...)
		log.Error("Cannot listen", zap.Error(err))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Sugar().Infof("psync-proxy %s starting, pid %d", proxy.Version, os.Getpid())
	return serve(ctx, srv, lns, metricsLn, log)
}

// serve runs srv on every listener, and its metrics on metricsLn unless nil, until a signal
// or a client's SHUTDOWN, or until a listener fails, then shuts it down.
func serve(ctx context.Context, srv *proxy.Server, lns []net.Listener, metricsLn net.Listener, log *zap.Logger) int {
	errc := make(chan error, len(lns)+1)
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	if metricsLn != nil {
		go func() { errc <- srv.ServeMetrics(metricsLn) }()
	}
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, proxy.ErrServerClosed) {
			log.Error("Stopped", zap.Error(err))
			code = 1
		}
	}
	srv.Shutdown(context.Background())
	return code
}

// listenMetrics opens --metrics-listen's socket; nil when it is not set.
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	return ln, nil
}

// listen opens the plain and TLS sockets the options ask for; either may be nil.
func listen(o *options) (plain, secure net.Listener, err error) {
	plainAddr, secureAddr, err := o.listenAddrs()
	if err != nil {
		return nil, nil, err
	}
	if plainAddr != "" {
		if plain, err = net.Listen("tcp", plainAddr); err != nil {
			return nil, nil, err
		}
	}
	if secureAddr != "" {
		if secure, err = net.Listen("tcp", secureAddr); err != nil {
			closeAll(plain, nil)
			return nil, nil, fmt.Errorf("--tls-port: %w", err)
		}
	}
	return plain, secure, nil
}

// announcePort is the port sent upstream with REPLCONF listening-port, as Redis picks it:
// the TLS listener's with tls-replication, else the plain one's.
func announcePort(plain, secure net.Listener, tlsReplication bool) int {
	ln := plain
	if secure != nil && (tlsReplication || plain == nil) {
		ln = secure
	}
	return ln.Addr().(*net.TCPAddr).Port
}

// wrapTLS returns the listeners to serve: the plain one, and the TLS one wrapped by srv.
func wrapTLS(srv *proxy.Server, plain, secure net.Listener) ([]net.Listener, error) {
	var lns []net.Listener
	if plain != nil {
		lns = append(lns, plain)
	}
	if secure != nil {
		tln, err := srv.TLSListener(secure)
		if err != nil {
			closeAll(plain, secure)
			return nil, fmt.Errorf("--tls-port: %w", err)
		}
		lns = append(lns, tln)
	}
	return lns, nil
}

func closeAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

func (o *options) config() (proxy.Config, error) {
	size, err := proxy.ParseSize(o.backlogSize)
	if err != nil {
		return proxy.Config{}, fmt.Errorf("--backlog-size: %w", err)
	}
	if size <= 0 {
		return proxy.Config{}, errors.New("--backlog-size must be positive")
	}
	if o.replTimeout < 1 {
		return proxy.Config{}, errors.New("--repl-timeout must be at least 1 second")
	}
	protected, err := yesNo("protected-mode", o.protectedMode)
	if err != nil {
		return proxy.Config{}, err
	}
	sentinels, err := o.sentinelAddrs()
	if err != nil {
		return proxy.Config{}, err
	}
	margin, err := proxy.ParseSize(o.refreshMargin)
	if err != nil {
		return proxy.Config{}, fmt.Errorf("--snapshot-refresh-margin: %w", err)
	}
	rate, err := proxy.ParseSize(o.fullSyncRate)
	if err != nil {
		return proxy.Config{}, fmt.Errorf("--full-sync-rate-limit: %w", err)
	}
	if o.refreshMinInterval < 1 {
		return proxy.Config{}, errors.New("--snapshot-refresh-min-interval must be at least 1 second")
	}
	if o.maxFullSyncs < 0 {
		return proxy.Config{}, errors.New("--max-concurrent-full-syncs must not be negative")
	}
	fsync, err := backlog.ParseFsyncPolicy(o.backlogFsync)
	if err != nil {
		return proxy.Config{}, fmt.Errorf("--backlog-fsync: %w", err)
	}
	if o.backlogMode != proxy.BacklogMemory && o.backlogMode != proxy.BacklogDisk {
		return proxy.Config{}, fmt.Errorf("--backlog-mode must be memory or disk, not %q", o.backlogMode)
	}
	if o.backlogTTL < 0 {
		return proxy.Config{}, errors.New("--backlog-ttl must not be negative")
	}
	ramTail, err := proxy.ParseSize(o.backlogRAMTail)
	if err != nil {
		return proxy.Config{}, fmt.Errorf("--backlog-ram-tail: %w", err)
	}
	if ramTail <= 0 {
		return proxy.Config{}, errors.New("--backlog-ram-tail must be positive")
	}
	limits, err := o.clientLimits()
	if err != nil {
		return proxy.Config{}, err
	}
	if _, _, err := o.listenAddrs(); err != nil {
		return proxy.Config{}, err
	}
	if _, _, err := net.SplitHostPort(o.metricsListen); o.metricsListen != "" && err != nil {
		return proxy.Config{}, fmt.Errorf("--metrics-listen: %w", err)
	}
	users, err := o.userList()
	if err != nil {
		return proxy.Config{}, err
	}
	tlsRepl, err := yesNo("tls-replication", o.tlsReplication)
	if err != nil {
		return proxy.Config{}, err
	}
	return proxy.Config{
		MasterAddr: o.master,
		Dir:        o.dir,

		SentinelAddrs:    sentinels,
		SentinelMaster:   o.sentinelMaster,
		SentinelUser:     o.sentinelUser,
		SentinelPassword: o.sentinelPassword,

		BacklogSize:   size,
		ReplTimeout:   time.Duration(o.replTimeout) * time.Second,
		MasterUser:    o.masterUser,
		MasterAuth:    o.masterAuth,
		RequirePass:   o.reqPass,
		ProtectedMode: protected,

		AnnounceReplicaVersion: o.announceVersion,

		SnapshotRefresh:            o.snapshotRefresh,
		SnapshotRefreshMargin:      margin,
		SnapshotRefreshMinInterval: time.Duration(o.refreshMinInterval) * time.Second,
		MaxConcurrentFullSyncs:     o.maxFullSyncs,
		FullSyncRateLimit:          rate,

		BacklogMode:    o.backlogMode,
		BacklogFsync:   fsync,
		BacklogTTL:     time.Duration(o.backlogTTL) * time.Second,
		BacklogRAMTail: ramTail,

		MaxClients:             limits.MaxClients,
		ProtoMaxBulkLen:        limits.ProtoMaxBulkLen,
		ClientQueryBufferLimit: limits.ClientQueryBufferLimit,
		Timeout:                limits.Timeout,
		HandshakeTimeout:       limits.HandshakeTimeout,
		Users:                  users,
		TLSCertFile:            o.tlsCert,
		TLSKeyFile:             o.tlsKey,
		TLSCACertFile:          o.tlsCA,
		TLSClientCertFile:      o.tlsClientCert,
		TLSClientKeyFile:       o.tlsClientKey,
		TLSAuthClients:         o.tlsAuthClients,
		TLSReplication:         tlsRepl,
	}, nil
}

// sentinelAddrs splits --sentinel and checks it against --master and --sentinel-master.
func (o *options) sentinelAddrs() ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(o.sentinels, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	switch {
	case o.master == "" && len(addrs) == 0:
		return nil, errors.New("--master host:port is required (or --sentinel and --sentinel-master)")
	case len(addrs) > 0 && o.sentinelMaster == "":
		return nil, errors.New("--sentinel needs --sentinel-master, the master's name in the Sentinels' configuration")
	case len(addrs) == 0 && o.sentinelMaster != "":
		return nil, errors.New("--sentinel-master needs --sentinel, the Sentinels' addresses")
	}
	return addrs, nil
}

// clientLimits checks the client limit options; 0 seconds means never, as in Redis.
func (o *options) clientLimits() (proxy.Config, error) {
	var c proxy.Config
	if o.maxClients < 1 {
		return c, errors.New("--maxclients must be at least 1")
	}
	bulk, err := proxy.ParseSize(o.protoMaxBulkLen)
	if err != nil {
		return c, fmt.Errorf("--proto-max-bulk-len: %w", err)
	}
	query, err := proxy.ParseSize(o.queryBufLimit)
	if err != nil {
		return c, fmt.Errorf("--client-query-buffer-limit: %w", err)
	}
	if bulk < 1024 || query < 1024 {
		return c, errors.New("--proto-max-bulk-len and --client-query-buffer-limit must be at least 1kb")
	}
	if o.timeout < 0 || o.handshakeTimeout < 0 {
		return c, errors.New("--timeout and --handshake-timeout must not be negative")
	}
	c.MaxClients, c.ProtoMaxBulkLen, c.ClientQueryBufferLimit = o.maxClients, bulk, query
	c.Timeout = time.Duration(o.timeout) * time.Second
	c.HandshakeTimeout = time.Duration(o.handshakeTimeout) * time.Second
	if o.handshakeTimeout == 0 {
		c.HandshakeTimeout = -1 // proxy.Config: negative is never, zero the default
	}
	return c, nil
}

// yesNo parses a redis.conf yes|no option.
func yesNo(name, v string) (bool, error) {
	switch v {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("--%s must be yes or no, not %q", name, v)
}
