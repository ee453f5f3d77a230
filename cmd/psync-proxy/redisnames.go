package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"

	"github.com/psync-proxy/psync-proxy/internal/redisconf"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// redisOption is a directive with Redis's name for an option psync-proxy has under another
// name, or with Redis's name and more checks than the flag's kind gives.
type redisOption struct {
	name  string // the directive
	flag  string // the flag it sets
	alias string // the directive it is another name of, as slaveof is of replicaof
	apply func(c *confLoader, d redisconf.Directive, flag string) error
	// args is the directive's arguments for a value of the flag: defaults for rewriteConfFile.
	args func(flagValue string) []string
}

// redisOptions lists the directives named as Redis names them, in the order a rewrite appends them.
func redisOptions() []redisOption {
	one := func(v string) []string { return []string{v} }
	master := func(v string) []string {
		if h, p, err := net.SplitHostPort(v); err == nil {
			return []string{h, p}
		}
		return nil
	}
	host := func(v string) []string { h, _ := splitListen(v); return one(h) }
	port := func(v string) []string { _, p := splitListen(v); return one(p) }
	return []redisOption{
		{name: "replicaof", flag: "master", apply: applyReplicaOf, args: master},
		{name: "slaveof", flag: "master", alias: "replicaof", apply: applyReplicaOf, args: master},
		{name: "bind", flag: "listen", apply: applyBind, args: host},
		{name: "port", flag: "listen", apply: applyPort, args: port},
		{name: "repl-backlog-size", flag: "backlog-size", apply: applyFlag, args: one},
		{name: "repl-backlog-ttl", flag: "backlog-ttl", apply: applyFlag, args: one},
		{name: "loglevel", flag: "log-level", apply: applyLogLevel, args: one},
		{name: "logfile", flag: "logfile", apply: applyLogFile, args: one},
		{name: "user", flag: "user", apply: applyUser},
	}
}

func lookupRedisOption(name string) (redisOption, bool) {
	for _, r := range redisOptions() {
		if r.name == name {
			return r, true
		}
	}
	return redisOption{}, false
}

// redisNamesOf returns the directives that set a flag under another name.
func redisNamesOf(flagName string) []string {
	var names []string
	for _, r := range redisOptions() {
		if r.flag == flagName && r.name != flagName && r.alias == "" {
			names = append(names, r.name)
		}
	}
	return names
}

// applyReplicaOf: replicaof HOST PORT is --master HOST:PORT. "replicaof no one" is refused:
// the proxy needs a master.
func applyReplicaOf(c *confLoader, d redisconf.Directive, flag string) error {
	if len(d.Args) != 2 {
		return d.Errorf("wrong number of arguments")
	}
	if strings.EqualFold(d.Args[0], "no") && strings.EqualFold(d.Args[1], "one") {
		return d.Errorf("psync-proxy needs a master: replicaof no one is not supported")
	}
	if p, err := strconv.Atoi(d.Args[1]); err != nil || p < 1 || p > 65535 {
		return d.Errorf("Invalid master port")
	}
	return c.set(d, flag, net.JoinHostPort(d.Args[0], d.Args[1]))
}

// applyBind sets --listen's host. The proxy listens on one address: the first. The others are
// left out with a warning, unless the first is a wildcard, which covers them: Go listens on
// every address, IPv4 and IPv6, for 0.0.0.0 and ::. As in Redis, "*" is 0.0.0.0, "::*" is ::,
// and a leading "-" (an optional address) is dropped.
func applyBind(c *confLoader, d redisconf.Directive, flag string) error {
	if len(d.Args) == 0 {
		return d.Errorf("wrong number of arguments")
	}
	addrs := make([]string, len(d.Args))
	for i, a := range d.Args {
		switch a = strings.TrimPrefix(a, "-"); a {
		case "*":
			a = "0.0.0.0"
		case "::*":
			a = "::"
		}
		addrs[i] = a
	}
	if ip := net.ParseIP(addrs[0]); len(addrs) > 1 && (ip == nil || !ip.IsUnspecified()) && !c.cmdline[flag] {
		c.o.warnings = append(c.o.warnings, fmt.Sprintf("bind at line %d of %s: listening on %s only, not on %s: psync-proxy listens on one address (0.0.0.0 or :: for all)",
			d.Line, d.File, addrs[0], strings.Join(addrs[1:], " ")))
	}
	_, port := splitListen(c.fs.Lookup(flag).Value.String())
	return c.set(d, flag, net.JoinHostPort(addrs[0], port))
}

// applyPort sets --listen's port; 0 turns plain TCP off, as in Redis.
func applyPort(c *confLoader, d redisconf.Directive, flag string) error {
	if len(d.Args) != 1 {
		return d.Errorf("wrong number of arguments")
	}
	if p, err := strconv.Atoi(d.Args[0]); err != nil || p < 0 || p > 65535 {
		return d.Errorf("argument must be between 0 and 65535 inclusive")
	}
	host, _ := splitListen(c.fs.Lookup(flag).Value.String())
	return c.set(d, flag, net.JoinHostPort(host, d.Args[0]))
}

func applyLogLevel(c *confLoader, d redisconf.Directive, flag string) error {
	if len(d.Args) != 1 {
		return d.Errorf("wrong number of arguments")
	}
	if _, err := parseLogLevel(d.Args[0]); err != nil {
		return d.Errorf("argument(s) must be one of the following: debug, verbose, notice, warning, nothing (or info, warn, error)")
	}
	return c.set(d, flag, d.Args[0])
}

// applyLogFile checks that the log file opens, as Redis does when it reads its config.
func applyLogFile(c *confLoader, d redisconf.Directive, flag string) error {
	if len(d.Args) != 1 {
		return d.Errorf("wrong number of arguments")
	}
	if d.Args[0] != "" {
		if err := checkLogFile(d.Args[0]); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return d.Errorf("Can't open the log file: %v", err)
		}
	}
	return c.set(d, flag, d.Args[0])
}

// applyUser takes psync-proxy's users (name:password:perms, as --user), not Redis's ACL rules.
func applyUser(c *confLoader, d redisconf.Directive, flag string) error {
	if len(d.Args) != 1 {
		return d.Errorf("wrong number of arguments: a psync-proxy user is one name:password:perms argument, not Redis's ACL rules")
	}
	if _, err := proxy.ParseUser(d.Args[0]); err != nil {
		return d.Errorf("Error in user declaration: %v", err)
	}
	return c.set(d, flag, d.Args[0])
}

// checkDaemonize accepts "daemonize no", what psync-proxy does, and refuses "daemonize yes".
func checkDaemonize(d redisconf.Directive) error {
	switch {
	case len(d.Args) != 1:
		return d.Errorf("wrong number of arguments")
	case strings.EqualFold(d.Args[0], "no"):
		return nil
	case strings.EqualFold(d.Args[0], "yes"):
		return d.Errorf("daemonize yes is not supported: run psync-proxy in the foreground under a supervisor (systemd, Docker)")
	}
	return d.Errorf("argument must be 'yes' or 'no'")
}

// ignoredDirective says why a redis.conf directive is accepted and ignored, or "" if it is not.
// The list is short on purpose: what an operator copying the general, network, snapshotting,
// replication and security sections of a replica's redis.conf brings along, about things the
// proxy does not have (a dataset, its persistence, Redis's process tuning). Any other unknown
// directive stops the start, as in Redis: a setting dropped in silence could be one the
// operator relies on (rename-command, tls-protocols, supervised systemd).
func ignoredDirective(name string) string {
	switch name {
	case "save", "appendonly", "appendfsync", "appendfilename", "appenddirname", "dbfilename",
		"rdbcompression", "rdbchecksum", "stop-writes-on-bgsave-error", "databases", "maxmemory", "maxmemory-policy":
		return "psync-proxy keeps no dataset (its memory is repl-backlog-size plus client buffers, its files are under dir)"
	case "replica-read-only", "slave-read-only", "replica-serve-stale-data", "slave-serve-stale-data", "repl-diskless-load":
		return "this concerns a replica's dataset; the proxy passes the master's stream on as it is"
	case "repl-diskless-sync", "repl-diskless-sync-delay", "repl-diskless-sync-max-replicas":
		return "the proxy serves full syncs from its cached snapshot (see max-concurrent-full-syncs)"
	case "replica-priority", "slave-priority":
		return "the proxy always reports replica priority 0, so that Sentinel never promotes it"
	case "tcp-backlog", "tcp-keepalive", "repl-disable-tcp-nodelay":
		return "the proxy uses the system's accept queue, Go's TCP keepalive (15 s) and TCP_NODELAY"
	case "pidfile":
		return "psync-proxy writes no pid file; its supervisor knows its pid"
	case "always-show-logo", "set-proc-title", "proc-title-template", "hz", "dynamic-hz", "acllog-max-len":
		return "no meaning for psync-proxy"
	}
	return ""
}
