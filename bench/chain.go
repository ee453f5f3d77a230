package main

import (
	"net"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// The chain topology puts a Redis chained replica (the guide's "replication cascade") where
// the proxy would be: the same redis-server binary as the master, a replica of the master
// and the master of the scenario's replicas. It is configured as a production chained
// replica would be, with what the proxy is given in that scenario:
//
//   - repl-backlog-size: the proxy's --backlog-size in the scenario, so that both keep the
//     same window of history for the replicas' partial resyncs.
//   - repl-diskless-sync yes (Redis 7's default): its replicas' full syncs stream the RDB
//     from a fork, as the master's do. redistest starts every server with
//     repl-diskless-sync-delay 0, the chain's best case for a setup sync; the storm scenario
//     sets the same delay and max-replicas on the chain as on the master it measures.
//   - repl-diskless-load disabled (the default): the RDB of its own sync is kept as
//     dump.rdb, which is what it restarts from (the restart scenario).
//   - repl-disable-tcp-nodelay no (the default): small writes go out at once, for latency,
//     as the proxy's do.
//   - whatever the scenario gives the master for its replicas (chainArgs): in steady,
//     client-output-buffer-limit replica 0 0 0, so that a lagging replica is never dropped.
//
// Like the proxy and the replicas, it runs on the CPUs that are not the master's (-pin).
func startChain(r *run, master *redistest.Server, backlog string, args ...string) *redistest.Server {
	host, port, _ := net.SplitHostPort(master.Addr())
	s := redistest.Start(r, append([]string{"--replicaof", host, port,
		"--repl-backlog-size", backlog,
		"--repl-diskless-sync", "yes",
		"--repl-diskless-load", "disabled",
		"--repl-disable-tcp-nodelay", "no",
	}, args...)...)
	r.checkPinned("chained replica "+s.Addr(), s.PID(), r.e.pin.others)
	// Replicas asking it before its own link is up would be refused and retry a second later.
	redistest.WaitOnline(r, s, 2*time.Minute)
	return s
}

// defaultTierBacklog is psync-proxy's default --backlog-size, given to the proxy and the chain explicitly
// where a scenario sets none.
const defaultTierBacklog = "256mb"
