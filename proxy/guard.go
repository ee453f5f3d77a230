package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/psync-proxy/psync-proxy/resp"
)

// requestGuard follows the framing of what a downstream client sends before redcon parses it,
// and stops the connection where Redis would reply a protocol error: a multibulk count over
// 1M, a bulk length over proto-max-bulk-len (512 MB), a bad number, an inline line over
// 64 KiB. redcon takes declared lengths at face value: it loops over a multibulk count before
// the arguments have arrived (the 14 bytes "*99999999999\r\n" kept a core busy for minutes,
// found by FuzzDownstream) and adds a bulk length to an index unchecked.
type requestGuard struct {
	sc     *resp.Scanner
	next   int64  // stream offset of the next byte fed (the client's bytes, numbered from 1)
	whole  int64  // offset of the last byte of the last whole command or inline line
	inline int    // length so far of the inline line being skipped; -1 when not in one
	err    error  // sticky: the protocol error, returned by every later Read
	detail string // err's detail, for the reply "-ERR Protocol error: <detail>"
}

// maxInline is Redis's PROTO_INLINE_MAX_SIZE.
const maxInline = 64 << 10

func newRequestGuard() *requestGuard {
	return &requestGuard{sc: resp.NewScanner(1, guardLimits()), next: 1, inline: -1}
}

func guardLimits() resp.Limits {
	return resp.Limits{MaxBulkLen: 512 << 20, MaxArrayLen: 1 << 20}
}

// feed checks p, the client's next bytes. On a protocol error it returns how many bytes of p
// end in whole commands (redcon may have them) and the error, which it also keeps.
func (g *requestGuard) feed(p []byte) (int, error) {
	start := g.next // offset of p[0]
	for i := 0; i < len(p); {
		if g.inline >= 0 {
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				j = len(p) - i
			}
			if g.inline += j; g.inline > maxInline {
				return g.fail(start, errors.New("too big inline request"))
			}
			i += j
			g.next += int64(j)
			if i < len(p) { // at the '\n'
				i++
				g.whole, g.next, g.inline = g.next, g.next+1, -1
				g.sc = resp.NewScanner(g.next, guardLimits())
			}
			continue
		}
		err := g.sc.Feed(p[i:], nil)
		g.whole = max(g.whole, g.sc.Boundary())
		if err == nil {
			g.next += int64(len(p) - i)
			break
		}
		if at := g.sc.Offset(); at == g.sc.Boundary()+1 {
			// A command that does not start with '*': an inline one, as redcon (and Redis)
			// accept from clients; skip its line.
			i += int(at - g.next)
			g.next, g.inline = at, 0
			continue
		}
		return g.fail(start, err)
	}
	return len(p), nil
}

// fail records err and returns the bytes of the current piece up to the last whole command.
func (g *requestGuard) fail(start int64, err error) (int, error) {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:] // the detail, without the package's prefix and the offset
	}
	g.detail = msg
	g.err = fmt.Errorf("protocol error: %s", msg)
	return int(max(g.whole-start+1, 0)), g.err
}
