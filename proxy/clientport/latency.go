package clientport

import "strings"

// The proxy runs no commands that take time (data commands go to the master), so it keeps
// no latency events and no slow log. LATENCY and SLOWLOG answer as a Redis with nothing to
// report does, rather than with an error, so that exporters and dashboards that poll them
// keep working.

// cmdLatency is LATENCY LATEST | HISTORY | RESET | DOCTOR | GRAPH | HISTOGRAM | HELP.
func cmdLatency(x *call) {
	sub := strings.ToLower(string(x.args[0]))
	switch {
	case sub == "latest" && len(x.args) == 1, sub == "histogram":
		x.conn.WriteArray(0)
	case sub == "history" && len(x.args) == 2:
		x.conn.WriteArray(0)
	case sub == "reset":
		x.conn.WriteInt(0)
	case sub == "doctor" && len(x.args) == 1:
		x.conn.WriteBulkString("psync-proxy records no latency events: it runs no data commands. " +
			"Check the master's LATENCY DOCTOR, and the proxy's INFO backlog (backlog_coverage_seconds) " +
			"and INFO replication (replicas' lag) for replication health.\n")
	case sub == "graph" && len(x.args) == 2:
		x.conn.WriteError("ERR No samples available for event '" + truncate(string(x.args[1]), 64) + "'")
	case sub == "help" && len(x.args) == 1:
		writeLines(x, "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
			"DOCTOR", "GRAPH <event>", "HISTORY <event>", "LATEST", "RESET [<event> ...]", "HISTOGRAM [<command> ...]", "HELP",
			"psync-proxy keeps no latency events: every list is empty.")
	case sub == "latest" || sub == "history" || sub == "doctor" || sub == "graph" || sub == "help":
		wrongArity(x.conn, "latency|"+sub)
	default:
		x.conn.WriteError("ERR unknown subcommand '" + truncate(string(x.args[0]), 64) + "'. Try LATENCY HELP.")
	}
}

// cmdSlowlog is SLOWLOG GET | LEN | RESET | HELP, over an empty log.
func cmdSlowlog(x *call) {
	switch sub := strings.ToLower(string(x.args[0])); {
	case sub == "get" && len(x.args) <= 2:
		x.conn.WriteArray(0)
	case sub == "len" && len(x.args) == 1:
		x.conn.WriteInt(0)
	case sub == "reset" && len(x.args) == 1:
		x.conn.WriteString("OK")
	case sub == "help" && len(x.args) == 1:
		writeLines(x, "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
			"GET [<count>]", "LEN", "RESET", "HELP", "psync-proxy runs no slow commands: the log stays empty.")
	case sub == "get" || sub == "len" || sub == "reset" || sub == "help":
		wrongArity(x.conn, "slowlog|"+sub)
	default:
		x.conn.WriteError("ERR unknown subcommand '" + truncate(string(x.args[0]), 64) + "'. Try SLOWLOG HELP.")
	}
}
