package clientport

import (
	"slices"

	"github.com/tidwall/redcon"
)

// Transactions: MULTI queues commands and EXEC runs them in order, as Redis does. Sentinel
// reconfigures a replica with MULTI, SLAVEOF, CONFIG REWRITE, CLIENT KILL TYPE normal,
// CLIENT KILL TYPE pubsub, EXEC (Valkey 9 adds FAILOVER ABORT first), and ignores the
// replies: the commands only need to be known, so that none aborts the transaction at
// queueing time. Nothing the proxy runs can be rolled back, and nothing needs to be: there is
// no dataset, so there is no WATCH either.

// maxQueued bounds the commands one transaction may queue, which are held in memory until
// EXEC. Sentinel queues five.
const maxQueued = 1024

// transaction is a client's MULTI state.
type transaction struct {
	queued []queuedCmd
	// dirty: a command was refused while queueing (unknown, wrong arity, no permission, not
	// allowed in a transaction), so EXEC aborts, as Redis's flagTransaction makes it.
	dirty bool
}

type queuedCmd struct {
	row  *command
	name string
	args [][]byte // copied: redcon reuses its buffers once the handler returns
}

// queue queues the command x if its client is in a transaction and it is not one of the
// commands that run at once (MULTI, EXEC, DISCARD, QUIT). It reports whether it took the
// command.
func (x *call) queue(row *command) bool {
	tx := x.c.tx
	if tx == nil || row.txControl {
		return false
	}
	if row.noMulti {
		x.conn.WriteError("ERR Command not allowed inside a transaction")
		tx.dirty = true
		return true
	}
	if len(tx.queued) >= maxQueued {
		x.conn.WriteError("ERR psync-proxy queues at most 1024 commands in a transaction")
		tx.dirty = true
		return true
	}
	args := make([][]byte, len(x.args))
	for i, a := range x.args {
		args[i] = slices.Clone(a)
	}
	tx.queued = append(tx.queued, queuedCmd{row: row, name: x.name, args: args})
	x.conn.WriteString("QUEUED")
	return true
}

// refused marks the client's transaction, if any, as failed: a command was refused while
// queueing. Its error reply is already written.
func (c *client) refused() {
	if c.tx != nil {
		c.tx.dirty = true
	}
}

func cmdMulti(x *call) {
	if x.c.tx != nil {
		x.conn.WriteError("ERR MULTI calls can not be nested")
		return
	}
	x.c.tx = &transaction{}
	x.conn.WriteString("OK")
}

func cmdDiscard(x *call) {
	if x.c.tx == nil {
		x.conn.WriteError("ERR DISCARD without MULTI")
		return
	}
	x.c.tx = nil
	x.conn.WriteString("OK")
}

// cmdExec runs the queued commands in order and replies with the array of their replies, each
// recorded as it would have been written.
func cmdExec(x *call) {
	tx := x.c.tx
	if tx == nil {
		x.conn.WriteError("ERR EXEC without MULTI")
		return
	}
	x.c.tx = nil
	if tx.dirty {
		x.conn.WriteError("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	x.conn.WriteArray(len(tx.queued))
	closeAfter := false
	for _, q := range tx.queued {
		rec := &recorder{Conn: x.conn}
		q.row.run(&call{p: x.p, c: x.c, conn: rec, name: q.name, args: q.args})
		if len(rec.buf) == 0 {
			// A command that never replies (REPLCONF ACK) still takes its place in the array.
			rec.buf = redcon.AppendNull(rec.buf)
		}
		x.conn.WriteRaw(rec.buf)
		closeAfter = closeAfter || rec.closed
	}
	if closeAfter {
		x.conn.Close() // after the reply, as redcon closes after flushing
	}
}

// recorder is the connection a queued command runs on inside EXEC: its reply is appended to
// buf in RESP, to become one element of EXEC's array. Close is deferred to the end of EXEC.
// Commands that take the connection over (PSYNC, SUBSCRIBE) are never queued (noMulti), so
// Detach is never called on it.
type recorder struct {
	redcon.Conn
	buf    []byte
	closed bool
}

func (r *recorder) WriteError(msg string)       { r.buf = redcon.AppendError(r.buf, msg) }
func (r *recorder) WriteString(str string)      { r.buf = redcon.AppendString(r.buf, str) }
func (r *recorder) WriteBulk(bulk []byte)       { r.buf = redcon.AppendBulk(r.buf, bulk) }
func (r *recorder) WriteBulkString(bulk string) { r.buf = redcon.AppendBulkString(r.buf, bulk) }
func (r *recorder) WriteInt(num int)            { r.buf = redcon.AppendInt(r.buf, int64(num)) }
func (r *recorder) WriteInt64(num int64)        { r.buf = redcon.AppendInt(r.buf, num) }
func (r *recorder) WriteUint64(num uint64)      { r.buf = redcon.AppendUint(r.buf, num) }
func (r *recorder) WriteArray(count int)        { r.buf = redcon.AppendArray(r.buf, count) }
func (r *recorder) WriteNull()                  { r.buf = redcon.AppendNull(r.buf) }
func (r *recorder) WriteRaw(data []byte)        { r.buf = append(r.buf, data...) }
func (r *recorder) WriteAny(v any)              { r.buf = redcon.AppendAny(r.buf, v) }

func (r *recorder) Close() error {
	r.closed = true
	return nil
}
