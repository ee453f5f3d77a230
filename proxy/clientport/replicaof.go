package clientport

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// noOneMsg refuses REPLICAOF NO ONE: the proxy relays a master's stream and holds no dataset
// of its own, so it can never become a master (Sentinel never picks it: slave_priority is 0).
const noOneMsg = "ERR psync-proxy cannot become a master: it holds no dataset, only the master's stream. " +
	"Promote a Redis replica (REPLICAOF NO ONE there) and point psync-proxy to it with REPLICAOF <host> <port>"

// cmdReplicaof is REPLICAOF (and SLAVEOF) host port, as Redis's replicaofCommand: the master
// link switches to host:port and PSYNCs there with the history the proxy holds, so a
// promoted replica of the same history continues it (+CONTINUE <new ID>). Naming the master
// followed now does nothing, with Redis's reply.
func cmdReplicaof(x *call) {
	host, portArg := string(x.args[0]), string(x.args[1])
	who := x.clientInfo()
	if strings.EqualFold(host, "no") && strings.EqualFold(portArg, "one") {
		x.p.log.Warnf("REPLICAOF NO ONE refused (user request from '%s'): psync-proxy cannot become a master", who)
		x.conn.WriteError(noOneMsg)
		return
	}
	port, err := strconv.ParseInt(portArg, 10, 64)
	if err != nil {
		x.conn.WriteError("ERR value is not an integer or out of range")
		return
	}
	if port < 1 || port > 65535 {
		x.conn.WriteError("ERR Invalid master port: it must be between 1 and 65535")
		return
	}
	if err := checkHost(host); err != nil {
		x.conn.WriteError("ERR Invalid master host: " + err.Error())
		return
	}
	addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
	if !x.p.cfg.Follow(addr, "replicaof", who) {
		x.p.log.Info("REPLICAOF would result into synchronization with the master we are already connected with. No operation performed.")
		x.conn.WriteString("OK Already connected to specified master")
		return
	}
	x.p.log.Infof("REPLICAOF %s:%d enabled (user request from '%s')", host, port, who)
	x.conn.WriteString("OK")
}

// checkHost accepts what Redis could connect to: a non-empty name or address without spaces,
// at most 255 bytes (NET_HOST_STR_LEN).
func checkHost(host string) error {
	switch {
	case host == "":
		return fmt.Errorf("empty host")
	case len(host) > 255:
		return fmt.Errorf("host longer than 255 bytes")
	case strings.ContainsAny(host, " \t\r\n"):
		return fmt.Errorf("host holds white space")
	}
	return nil
}

// clientInfo describes the client for the log as Redis does: its CLIENT LIST line.
func (x *call) clientInfo() string { return x.p.clientLine(x.c, nil, time.Now()) }

// cmdFailover answers Redis's FAILOVER: the proxy is never in a failover of its own. Valkey 9
// Sentinels queue FAILOVER ABORT before SLAVEOF; it must be known, or the whole transaction
// would abort at EXEC, and it needs no permission since it changes nothing.
func cmdFailover(x *call) {
	if len(x.args) == 1 && strings.EqualFold(string(x.args[0]), "abort") {
		x.conn.WriteError("ERR No failover in progress.")
		return
	}
	x.conn.WriteError("ERR psync-proxy cannot fail over: it is a replica that holds no dataset")
}

// masterSwitchInfo writes master_failover_state and the proxy's own fields on master changes.
//
// master_failover_state is Redis's, where only a master running FAILOVER shows anything but
// no-failover; the proxy shows failover-in-progress from a change of master until the new
// master answers PSYNC. The link counts as up (master_link_status, for Sentinel) as soon as
// the new master answered, also with +FULLRESYNC while its RDB arrives, when the proxy holds a
// history: it keeps serving its replicas from that history meanwhile, as it did before the
// change, and Sentinel counts a replica as reconfigured, and publishes +switch-master, only
// once it reports the link up, so a proxy reporting a long transfer as down would delay the
// failover's end for every client. master_sync_in_progress:1 still shows the transfer.
func masterSwitchInfo(b *strings.Builder, ls upstream.Status) {
	sw := ls.Switch
	state := "no-failover"
	if sw.Resync == upstream.ResyncPending {
		state = "failover-in-progress"
	}
	field(b, "master_failover_state", state)
	field(b, "master_changes", sw.Changes)
	field(b, "master_changes_partial", sw.Partial)
	field(b, "master_changes_full", sw.Full)
	last := int64(-1)
	if !sw.Last.IsZero() {
		last = sw.Last.Unix()
	}
	field(b, "master_last_change_time", last)
	field(b, "master_last_change_source", orNone(sw.Source))
	field(b, "master_last_change_resync", orNone(sw.Resync))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
