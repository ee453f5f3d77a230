package clientport

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// The downstream port is open to anyone who can reach it, and redcon's Reader trusts its
// input: it doubles its buffer while a command is incomplete, and keeps doubling while
// pipelined commands never leave it empty; it walks a declared multibulk count on every
// partial read; a bulk length near MaxInt overflows its bounds check and panics the process.
// So every downstream connection frames what the client sends before redcon sees it
// (clientInput), refuses bad or oversized headers as soon as they are read, with Redis's
// replies, and hands redcon one command per Read, so that redcon's buffer holds at most one
// command, which is at most client-query-buffer-limit bytes.

// Limits of Redis's own that are not options (src/server.h, src/networking.c).
const (
	inlineMaxSize      = 64 << 10    // PROTO_INLINE_MAX_SIZE: an inline request or a header line
	multibulkMax       = 1024 * 1024 // arguments in one command (Redis 6.0's bound; Redis 7 allows INT_MAX)
	unauthMultibulkMax = 10          // arguments before AUTH
	unauthBulkMax      = 16384       // bytes in one argument before AUTH
	// inlineMaxSpaces bounds the spaces in an inline request: redcon allocates the rest of
	// the line for each word, so a 64 KB line of spaces would cost gigabytes of allocation.
	// No command the proxy answers needs more words.
	inlineMaxSpaces = 64
	headerMax       = 24 // longest "*<count>" or "$<len>" header that can hold a valid number
	refusalDeadline = time.Second
)

// inputLimits bound what a downstream client may send. One per Port, read-only once
// serving; the counter is the port's.
type inputLimits struct {
	maxBulk  int64 // proto-max-bulk-len
	maxQuery int64 // client-query-buffer-limit: bytes of one command, pipelined ones apart
	log      *zap.SugaredLogger
	overflow *atomic.Int64 // INFO client_query_buffer_limit_disconnections
}

// inputError is a refused input: the connection is closed after the reply, if any.
type inputError struct {
	reply string // Redis's error reply, without "-ERR "; "" for none (query buffer limit)
	what  string // Redis's log name of the protocol error
}

func (e *inputError) Error() string {
	if e.reply == "" {
		return "closing client that reached max query buffer length"
	}
	return e.reply
}

func protocolError(reply, what string) *inputError {
	return &inputError{reply: "Protocol error: " + reply, what: what}
}

var (
	errTooBigInline     = protocolError("too big inline request", "too big inline request")
	errTooBigMbulkCount = protocolError("too big mbulk count string", "too big mbulk count string")
	errTooBigBulkCount  = protocolError("too big bulk count string", "too big bulk count string")
	errInvalidMbulk     = protocolError("invalid multibulk length", "invalid mbulk count")
	errUnauthMbulk      = protocolError("unauthenticated multibulk length", "unauth mbulk count")
	errInvalidBulk      = protocolError("invalid bulk length", "invalid bulk length")
	errUnauthBulk       = protocolError("unauthenticated bulk length", "unauth bulk length")
	errQueryBufLimit    = &inputError{}
)

// clientInput is a downstream connection's reading state and its handshake and idle limits.
type clientInput struct {
	lim *inputLimits
	// Set by the command handler, read by the reader (the same goroutine until the
	// connection becomes a replica's, then fixed).
	authed  atomic.Bool
	replica atomic.Bool // carries a replication stream: never write a reply, manage no write deadline
	// handshakeBy is when the connection is closed unless it has authenticated and sent a
	// command (unix nanoseconds); 0 once it has, or without --handshake-timeout.
	handshakeBy atomic.Int64

	// Used by the reading goroutine only.
	fr      framer
	pending []byte // read from the socket beyond the command being delivered, not yet framed
}

// deadline is the earlier of the handshake deadline and idle from now (zero: none).
func (in *clientInput) deadline(idle time.Duration) time.Time {
	var d time.Time
	if idle > 0 {
		d = time.Now().Add(idle)
	}
	if hs := in.handshakeBy.Load(); hs != 0 {
		if h := time.Unix(0, hs); d.IsZero() || h.Before(d) {
			d = h
		}
	}
	return d
}

// handshakeDone lifts the handshake deadline; idle and write deadlines are re-armed by the
// next Read and Write.
func (in *clientInput) handshakeDone() { in.handshakeBy.Store(0) }

// clientConn is a downstream connection: its reads are framed and bounded (clientInput) before
// redcon parses them, and its replies get the handshake and client deadlines.
type clientConn struct {
	*conn.Conn
	in clientInput
}

func (c *clientConn) Read(p []byte) (int, error) { return c.readCommand(p) }

// Write gives a downstream client's replies the same deadline as its reads (the handshake
// deadline, or --timeout), so a client that never reads its replies is closed in time too. A
// replica's session sets its own write deadlines.
func (c *clientConn) Write(b []byte) (int, error) {
	if !c.in.replica.Load() {
		c.Conn.Conn.SetWriteDeadline(c.in.deadline(c.IdleTimeout()))
	}
	return c.Conn.Conn.Write(b)
}

// becomeReplica hands the connection to a replica session: no handshake deadline, no client
// timeout (repl-timeout applies once it streams), and no reply from the framer ever again.
func (c *clientConn) becomeReplica() {
	c.in.replica.Store(true)
	c.in.handshakeDone()
	c.SetIdleTimeout(0)
	c.Conn.Conn.SetDeadline(time.Time{})
}

// commandDone runs after each command: once the client is authenticated, the
// unauthenticated limits no longer apply and its handshake is done.
func (c *clientConn) commandDone(authed bool) {
	if !authed {
		return
	}
	c.in.authed.Store(true)
	c.in.handshakeDone()
}

// readCommand fills p with at most one command: it stops right after the first command that
// completes and keeps the rest for the next call. A command still incomplete is delivered as
// far as p allows, so redcon's buffer holds one command at most; and since p is filled before
// returning, redcon re-parses a growing command only about log2(size) times.
func (c *clientConn) readCommand(p []byte) (int, error) {
	in := &c.in
	got := 0
	for got < len(p) {
		var (
			k    int
			done bool
			err  *inputError
		)
		if len(in.pending) > 0 {
			m := min(len(p)-got, len(in.pending))
			if k, done, err = in.fr.feed(in.pending[:m], in.authed.Load(), in.lim); err != nil {
				return 0, c.refuse(err)
			}
			copy(p[got:], in.pending[:k])
			if in.pending = in.pending[k:]; len(in.pending) == 0 {
				in.pending = nil
			}
			got += k
		} else {
			c.Conn.Conn.SetReadDeadline(in.deadline(c.IdleTimeout()))
			n, rerr := c.Conn.Conn.Read(p[got:])
			if n == 0 {
				if rerr == nil {
					continue
				}
				return 0, rerr // a partial command dies with its connection
			}
			if k, done, err = in.fr.feed(p[got:got+n], in.authed.Load(), in.lim); err != nil {
				return 0, c.refuse(err)
			}
			if k < n {
				in.pending = append([]byte(nil), p[got+k:got+n]...)
			}
			got += k
			if rerr != nil {
				return got, rerr
			}
		}
		if done {
			break
		}
	}
	return got, nil
}

// refuse replies Redis's error for e, unless the connection carries a replication stream
// (where a reply would corrupt it), logs it as Redis does (a protocol error at debug, Redis's
// verbose, so that a flood of bad input cannot flood the log; the query buffer limit as a
// warning), and returns e for redcon, which then closes the connection.
func (c *clientConn) refuse(e *inputError) error {
	in := &c.in
	sample := strconv.Quote(string(in.fr.sample[:in.fr.ns]))
	if e == errQueryBufLimit {
		in.lim.overflow.Add(1)
		in.lim.log.Warnf("Closing client that reached max query buffer length: addr=%s (qbuf initial bytes: %s)",
			c.RemoteAddr(), sample)
		return e
	}
	if !in.replica.Load() {
		c.Conn.Conn.SetWriteDeadline(time.Now().Add(refusalDeadline))
		c.Conn.Conn.Write([]byte("-ERR " + e.reply + "\r\n"))
	}
	in.lim.log.Debugf("Protocol error (%s) from client: addr=%s. Query buffer during protocol error: %s",
		e.what, c.RemoteAddr(), sample)
	return e
}

// frameState is where a framer is in a command.
type frameState uint8

const (
	frStart    frameState = iota // before a command's first byte
	frInline                     // in an inline request, up to '\n'
	frCount                      // in "*<count>\r\n"
	frBulkHead                   // in "$<len>\r\n"
	frBulk                       // in a bulk's bytes
	frBulkCR                     // the '\r' after a bulk
	frBulkLF                     // the '\n' after a bulk
)

// framer follows command boundaries through the bytes of a connection, as redcon parses them
// (RESP multibulk, or an inline line), checking Redis's limits on the way.
type framer struct {
	state    frameState
	used     int64 // bytes of the current command so far (blank lines before it included)
	line     int   // bytes of the current inline request or header line so far
	spaces   int   // spaces in the current inline request
	nonSpace int   // other bytes in it
	last     byte  // the last byte of the current line
	hdr      [headerMax]byte
	args     int64 // bulks still expected
	bulk     int64 // bytes of the current bulk still expected
	sample   [64]byte
	ns       int // bytes in sample: the start of the current command, for log lines
}

// feed frames b up to the end of the first command that completes in it. It returns how
// many bytes that is (len(b) when no command completes) and whether one completed.
func (f *framer) feed(b []byte, authed bool, lim *inputLimits) (int, bool, *inputError) {
	if f.ns < len(f.sample) {
		// May take bytes of the next command too; the sample is reset when this one ends.
		f.ns += copy(f.sample[f.ns:], b)
	}
	i, done := 0, false
	for i < len(b) && !done {
		switch f.state {
		case frStart:
			f.line, f.spaces, f.nonSpace = 0, 0, 0
			if b[i] == '*' {
				f.state = frCount
			} else {
				f.state = frInline
			}
		case frInline:
			seg, nl := lineSegment(b[i:])
			f.line += len(seg)
			n := bytes.Count(seg, []byte{' '})
			f.spaces += n
			f.nonSpace += len(seg) - n
			if len(seg) > 0 {
				f.last = seg[len(seg)-1]
			}
			i += len(seg)
			if f.line > inlineMaxSize || f.spaces > inlineMaxSpaces {
				return 0, false, errTooBigInline
			}
			if !nl {
				continue
			}
			i++ // the '\n'
			// A blank line (spaces, then an optional '\r') is no command to redcon: it
			// belongs with the command after it, and so counts toward its limit.
			blank := f.nonSpace == 0 || (f.nonSpace == 1 && f.last == '\r')
			f.state, done = frStart, !blank
		case frCount, frBulkHead:
			if f.state == frBulkHead && f.line == 0 && b[i] != '$' {
				return 0, false, protocolError("expected '$', got '"+printable(b[i])+"'", "expected $ but got something else")
			}
			seg, nl := lineSegment(b[i:])
			if f.line < headerMax {
				copy(f.hdr[f.line:], seg)
			}
			f.line += len(seg)
			if len(seg) > 0 {
				f.last = seg[len(seg)-1]
			}
			i += len(seg)
			if !nl {
				if f.line > inlineMaxSize {
					if f.state == frCount {
						return 0, false, errTooBigMbulkCount
					}
					return 0, false, errTooBigBulkCount
				}
				continue
			}
			i++
			n, ok := f.header()
			if err := f.checkHeader(n, ok, authed, lim); err != nil {
				return 0, false, err
			}
			if f.state == frCount {
				f.args, f.state = n, frBulkHead
			} else {
				f.bulk, f.state = n, frBulk
			}
			f.line = 0
		case frBulk:
			take := int(min(f.bulk, int64(len(b)-i)))
			i += take
			if f.bulk -= int64(take); f.bulk == 0 {
				f.state = frBulkCR
			}
		case frBulkCR, frBulkLF:
			want := byte('\r')
			if f.state == frBulkLF {
				want = '\n'
			}
			if b[i] != want {
				return 0, false, errInvalidBulk
			}
			i++
			switch {
			case f.state == frBulkCR:
				f.state = frBulkLF
			case f.args > 1:
				f.args--
				f.state = frBulkHead
			default:
				f.args, f.state, done = 0, frStart, true
			}
		}
	}
	if f.used += int64(i); f.used > lim.maxQuery {
		return 0, false, errQueryBufLimit
	}
	if done {
		f.used, f.ns = 0, 0
	}
	return i, done, nil
}

// lineSegment returns b up to its first '\n' (excluded) and whether there is one.
func lineSegment(b []byte) ([]byte, bool) {
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		return b[:j], true
	}
	return b, false
}

// header parses the number of the header line just ended: "*<n>\r" or "$<n>\r".
func (f *framer) header() (int64, bool) {
	if f.line > headerMax || f.line < 3 || f.last != '\r' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(f.hdr[1:f.line-1]), 10, 64)
	return n, err == nil
}

// checkHeader applies Redis's checks, in Redis's order, to a count or length just read.
func (f *framer) checkHeader(n int64, ok, authed bool, lim *inputLimits) *inputError {
	if f.state == frCount {
		switch {
		// redcon refuses counts below 1 too, where Redis skips them.
		case !ok || n > multibulkMax || n < 1:
			return errInvalidMbulk
		case n > unauthMultibulkMax && !authed:
			return errUnauthMbulk
		}
		return nil
	}
	switch {
	case !ok || n < 0 || n > lim.maxBulk:
		return errInvalidBulk
	case n > unauthBulkMax && !authed:
		return errUnauthBulk
	}
	return nil
}

// printable is c as a string, or "?" for a byte that would break an error reply's line.
func printable(c byte) string {
	if c < ' ' || c > '~' {
		return "?"
	}
	return string(rune(c))
}
