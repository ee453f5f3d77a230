package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	tresp "github.com/tidwall/resp"
)

// Limits bound what a peer can make us allocate or buffer.
//
// A zero or negative field stands for its DefaultLimits value, so Limits{} is
// usable as is.
type Limits struct {
	MaxBulkLen  int64 // largest $<n> accepted
	MaxArrayLen int64 // largest *<n> accepted
	MaxLineLen  int   // longest simple line (+, -, :, $, * header, inline) accepted; counts the bytes before CRLF, type byte included
}

// DefaultLimits returns the limits Redis applies to its own clients:
// proto-max-bulk-len (512 MiB), a 1M-element array and a 64 KiB inline line.
//
// Redis does not apply proto-max-bulk-len to its master, and propagated
// commands can exceed 1M arguments, so a Scanner over a real stream may want
// larger values.
func DefaultLimits() Limits {
	return Limits{
		MaxBulkLen:  512 << 20,
		MaxArrayLen: 1 << 20,
		MaxLineLen:  64 << 10,
	}
}

// orDefault fills zero or negative fields from DefaultLimits.
func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = d.MaxBulkLen
	}
	if l.MaxArrayLen <= 0 {
		l.MaxArrayLen = d.MaxArrayLen
	}
	if l.MaxLineLen <= 0 {
		l.MaxLineLen = d.MaxLineLen
	}
	return l
}

var (
	// ErrProtocol is returned, wrapped with the detail, for malformed input:
	// an unknown type byte, a bad number, a line not ended by CRLF, inline text
	// in the replication stream.
	ErrProtocol = errors.New("resp: protocol error")

	// ErrTooLarge is returned, wrapped with the detail, when a declared length,
	// a line or a nesting depth exceeds Limits (or a reply exceeds the reader's
	// buffer). It is reported as soon as the header shows it, without waiting
	// for the data.
	ErrTooLarge = errors.New("resp: value too large")
)

// maxDepth bounds array nesting in Frame. Replies on the replication link are
// at most two levels deep; the bound keeps the work per byte constant.
const maxDepth = 32

// Frame reports the byte length of the first complete RESP2 value at the start
// of b: simple string (+), error (-), integer (:), bulk ($n, including $-1),
// array (*n, including *-1 and nested arrays up to 32 levels). n == 0 && err ==
// nil means b holds an incomplete value so far. Malformed input wraps
// ErrProtocol, over-limit input (a length, a line, the depth) wraps
// ErrTooLarge. Numbers follow Redis's string2ll: no '+', no leading zeros, no
// "-0". Frame never panics and allocates only to build an error.
func Frame(b []byte, lim Limits) (n int, err error) {
	n, _, err = frame(b, lim.orDefault())
	return n, err
}

// frame is Frame plus a hint for readers: when b is incomplete, need is a lower
// bound on the length of the whole value (at least len(b)+1). It lets
// ReadValue wait for a bulk body in one Peek, and fail at once when the body
// cannot fit its buffer.
func frame(b []byte, lim Limits) (n, need int, err error) {
	var open [maxDepth]int64 // elements still expected by each open array, innermost last
	depth := 0
	pos := 0
	for {
		if pos >= len(b) {
			return 0, pos + 1, nil
		}
		switch typ := b[pos]; typ {
		case '+', '-':
			end, err := lineEnd(b, pos, lim.MaxLineLen)
			if err != nil || end == 0 {
				return 0, len(b) + 1, err
			}
			pos = end
		case ':':
			_, end, err := numberLine(b, pos, math.MaxInt64, false, lim.MaxLineLen)
			if err != nil || end == 0 {
				return 0, len(b) + 1, err
			}
			pos = end
		case '$':
			v, end, err := numberLine(b, pos, lim.MaxBulkLen, true, lim.MaxLineLen)
			if err != nil || end == 0 {
				return 0, len(b) + 1, err
			}
			pos = end
			if v >= 0 {
				if v > int64(math.MaxInt-2-end) {
					return 0, 0, fmt.Errorf("%w: bulk length %d at byte %d", ErrTooLarge, v, end)
				}
				total := end + int(v) + 2
				if len(b) < total {
					return 0, total, nil
				}
				if b[total-2] != '\r' || b[total-1] != '\n' {
					return 0, 0, fmt.Errorf("%w: bulk data at byte %d not followed by CRLF", ErrProtocol, end)
				}
				pos = total
			}
		case '*':
			v, end, err := numberLine(b, pos, lim.MaxArrayLen, true, lim.MaxLineLen)
			if err != nil || end == 0 {
				return 0, len(b) + 1, err
			}
			pos = end
			if v > 0 {
				if depth == maxDepth {
					return 0, 0, fmt.Errorf("%w: arrays nested deeper than %d at byte %d", ErrTooLarge, maxDepth, pos)
				}
				open[depth] = v
				depth++
				continue
			}
		default:
			return 0, 0, fmt.Errorf("%w: unexpected type byte %q at byte %d", ErrProtocol, typ, pos)
		}
		// A value ended at pos: it may complete its array, and that array its
		// parent, and so on.
		for depth > 0 {
			open[depth-1]--
			if open[depth-1] > 0 {
				break
			}
			depth--
		}
		if depth == 0 {
			return pos, 0, nil
		}
	}
}

// lineEnd returns the index just past the CRLF that ends the line starting at
// b[pos], or 0 when b holds no '\n' yet. A line longer than max (type byte
// included, CRLF excluded) fails as soon as max+2 bytes show no '\n'.
func lineEnd(b []byte, pos, max int) (int, error) {
	win := b[pos:]
	if len(win) > max+2 {
		win = win[:max+2]
	}
	i := bytes.IndexByte(win, '\n')
	if i < 0 {
		if len(win) == max+2 {
			return 0, fmt.Errorf("%w: line at byte %d longer than %d bytes", ErrTooLarge, pos, max)
		}
		return 0, nil
	}
	if win[i-1] != '\r' { // i > 0: win[0] is the type byte
		return 0, fmt.Errorf("%w: line at byte %d ends in a bare LF", ErrProtocol, pos)
	}
	return pos + i + 1, nil
}

// numberLine parses the decimal line starting at b[pos] (after its type byte)
// the way Redis's string2ll does. isLen selects length rules: -1 or 0..max,
// where a magnitude over max is ErrTooLarge; otherwise any int64 is accepted
// (max is then ignored). end is the index past the CRLF, or 0 when incomplete.
// Errors are detected on the first offending byte, so an over-limit length is
// reported before its CRLF arrives.
func numberLine(b []byte, pos int, max int64, isLen bool, maxLine int) (v int64, end int, err error) {
	i := pos + 1
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var bound uint64 // largest magnitude accepted
	switch {
	case isLen && neg:
		bound = 1
	case isLen:
		bound = uint64(max)
	case neg:
		bound = 1 << 63
	default:
		bound = math.MaxInt64
	}
	start := i
	var u uint64
	for ; i < len(b); i++ {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		if i > start && b[start] == '0' || neg && b[start] == '0' {
			return 0, 0, fmt.Errorf("%w: number at byte %d has a leading zero", ErrProtocol, pos)
		}
		if u > bound/10 || u*10+uint64(d) > bound { // no wrap: u*10 <= bound <= 1<<63
			switch {
			case isLen && !neg:
				return 0, 0, fmt.Errorf("%w: length at byte %d over %d", ErrTooLarge, pos, max)
			case isLen:
				return 0, 0, fmt.Errorf("%w: negative length other than -1 at byte %d", ErrProtocol, pos)
			}
			return 0, 0, fmt.Errorf("%w: number at byte %d out of range", ErrProtocol, pos)
		}
		u = u*10 + uint64(d)
		if i-pos >= maxLine {
			return 0, 0, fmt.Errorf("%w: line at byte %d longer than %d bytes", ErrTooLarge, pos, maxLine)
		}
	}
	if i == len(b) {
		return 0, 0, nil
	}
	if b[i] != '\r' || i == start {
		return 0, 0, fmt.Errorf("%w: bad number at byte %d: unexpected %q", ErrProtocol, pos, b[i])
	}
	if i+1 == len(b) {
		return 0, 0, nil
	}
	if b[i+1] != '\n' {
		return 0, 0, fmt.Errorf("%w: number at byte %d not followed by CRLF", ErrProtocol, pos)
	}
	if neg {
		return -int64(u), i + 2, nil // u <= 1<<63, and -(1<<63) wraps to itself
	}
	return int64(u), i + 2, nil
}

// ReadValue reads one reply from br. It first peeks until Frame reports a
// complete value, so the whole value must fit in br's buffer (br.Size()); a
// bigger one is ErrTooLarge. It then parses exactly those bytes with
// tidwall/resp and discards them from br. Bytes after the value stay in br
// untouched, because the RDB and the stream are read raw from the same reader
// afterwards.
func ReadValue(br *bufio.Reader, lim Limits) (tresp.Value, error) {
	lim = lim.orDefault()
	want := 1
	for {
		if want > br.Size() {
			return tresp.Value{}, fmt.Errorf("%w: reply needs at least %d bytes, the reader buffers %d", ErrTooLarge, want, br.Size())
		}
		_, rerr := br.Peek(want) // blocks until want bytes are buffered or the read fails
		b, _ := br.Peek(br.Buffered())
		n, need, err := frame(b, lim)
		if err != nil {
			return tresp.Value{}, fmt.Errorf("resp: read reply: %w", err)
		}
		if n > 0 {
			return parseFramed(br, b[:n])
		}
		if rerr != nil {
			if rerr == io.EOF && len(b) > 0 {
				rerr = io.ErrUnexpectedEOF
			}
			return tresp.Value{}, fmt.Errorf("resp: read reply: %w", rerr)
		}
		want = max(need, len(b)+1)
	}
}

// parseFramed hands one framed value to tidwall/resp and consumes it from br.
// tidwall copies what it returns, so discarding the bytes afterwards is safe.
func parseFramed(br *bufio.Reader, b []byte) (tresp.Value, error) {
	v, m, err := tresp.NewReader(bytes.NewReader(b)).ReadValue()
	if err == nil && m != len(b) {
		err = fmt.Errorf("consumed %d of %d bytes", m, len(b))
	}
	if err != nil {
		return tresp.Value{}, fmt.Errorf("%w: tidwall/resp rejects a framed reply: %v", ErrProtocol, err)
	}
	if _, err := br.Discard(len(b)); err != nil {
		return tresp.Value{}, fmt.Errorf("resp: read reply: %w", err) // cannot happen: the bytes are buffered
	}
	return v, nil
}

// SkipNewlines discards bare "\n" keep-alives (a master sends one per second
// while preparing an RDB) at the head of br, calling onNewline (may be nil)
// for each, and returns when the next byte is something else, without
// consuming it. It blocks like br.Peek.
func SkipNewlines(br *bufio.Reader, onNewline func()) error {
	if err := skipNewlines(br, onNewline); err != nil {
		return fmt.Errorf("resp: skip keep-alive newlines: %w", err)
	}
	return nil
}

// skipNewlines is SkipNewlines returning br's error unwrapped, so callers add
// their own context once.
func skipNewlines(br *bufio.Reader, onNewline func()) error {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return err
		}
		if b[0] != '\n' {
			return nil
		}
		if _, err := br.Discard(1); err != nil {
			return err
		}
		if onNewline != nil {
			onNewline()
		}
	}
}

// AppendCommand appends args as a command: a RESP array of bulk strings, as a client or a
// replica sends it.
func AppendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
