#!/usr/bin/env bash
# make demo: a master with Redis's default 1mb backlog, psync-proxy, and one replica behind it,
# all on loopback. The replica is stopped while the master takes 20 MB of writes (20x its
# backlog), then started again: it resumes with a partial resync from the proxy, and the master
# never forks for it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/psync-proxy}
work=$(mktemp -d /tmp/psync-proxy-demo.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { # a port nobody listens on, from a random start
	local p=$((20000 + RANDOM % 20000))
	while (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
	echo $p
}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cli() { redis-cli -p "$1" "${@:2}"; }
field() { cli "$1" INFO "$2" | tr -d '\r' | sed -n "s/^$3://p"; }
wait_until() { # wait_until SECONDS CMD...: poll until CMD succeeds (its output hidden)
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*" >&2; return 1; }
		sleep 0.2
	done
}
in_sync() { [ "$(field "$R" replication master_link_status)" = up ] &&
	[ "$(field "$R" replication slave_repl_offset)" = "$(field "$M" replication master_repl_offset)" ]; }
start_redis() { # start_redis PORT DIR ARGS...
	mkdir -p "$2"
	redis-server --port "$1" --bind 127.0.0.1 --dir "$2" --logfile "$2/redis.log" --save '' \
		--appendonly no --enable-debug-command local "${@:3}" &
	pids+=($!)
	wait_until 10 cli "$1" PING || { tail -n 20 "$2/redis.log" >&2; exit 1; }
}

M=$(free_port); start_redis "$M" "$work/master" --repl-backlog-size 1mb
P=$(free_port)
"$BIN" --master "127.0.0.1:$M" --listen "127.0.0.1:$P" --dir "$work/proxy" --backlog-size 256mb \
	--log-level warn &
pids+=($!)
wait_until 10 cli "$P" PING || exit 1
R=$(free_port); start_redis "$R" "$work/replica" --replicaof 127.0.0.1 "$P"
say "master :$M (repl-backlog-size 1mb)  ->  psync-proxy :$P (256mb)  ->  replica :$R"

redis-benchmark -p "$M" -q -t set,lpush,incr -n 20000 -r 10000 -d 100 | tr "\r" "\n" | grep "per second" | sed "s/^ */  /"
wait_until 30 in_sync || exit 1
say "replica in sync at offset $(field "$R" replication slave_repl_offset); master sync_full=$(field "$M" stats sync_full)"

say "replica stops (SHUTDOWN SAVE); the master takes ~20 MB of writes, 20x its backlog"
cli "$R" SHUTDOWN SAVE >/dev/null 2>&1 || true
sleep 0.5
before=$(field "$M" replication master_repl_offset)
redis-benchmark -p "$M" -q -t set -n 20000 -r 100000 -d 1000 | tr "\r" "\n" | grep "per second" | sed "s/^ */  /"
after=$(field "$M" replication master_repl_offset)
echo "  master offset moved by $((after - before)) bytes; the master's own backlog holds $(field "$M" replication repl_backlog_histlen)"

say "replica starts again from its RDB"
start_redis "$R" "$work/replica" --replicaof 127.0.0.1 "$P"
wait_until 60 in_sync || exit 1
grep -E "Partial resynchronization|Full resync|MASTER <-> REPLICA sync: Master accepted" "$work/replica/redis.log" | sed 's/^/  replica log: /'
echo "  proxy:  sync_partial_ok=$(field "$P" stats sync_partial_ok) sync_full=$(field "$P" stats sync_full)"
echo "  master: sync_full=$(field "$M" stats sync_full) (only the proxy's own first sync)"
md=$(cli "$M" DEBUG DIGEST); rd=$(cli "$R" DEBUG DIGEST)
echo "  digests: master $md, replica $rd"
if [ "$md" = "$rd" ] && grep -q "Master accepted a Partial Resynchronization" "$work/replica/redis.log" &&
	[ "$(field "$M" stats sync_full)" = 1 ]; then
	say "OK: the replica resumed with a partial resync through psync-proxy; the master forked once"
else
	say "FAILED"; exit 1
fi
