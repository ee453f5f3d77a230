package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// markLen is the length of the EOF mark (RDB_EOF_MARK_SIZE in Redis).
const markLen = 40

// PayloadHeader is the framing line of an RDB transfer: "$<len>\r\n" or
// "$EOF:<40-byte mark>\r\n".
type PayloadHeader struct {
	Len  int64  // payload length; -1 when EOF-marked
	Mark string // the 40-byte end mark when EOF-marked, else ""
}

// Marked reports whether the payload is EOF-marked (diskless master) rather
// than length-prefixed.
func (h PayloadHeader) Marked() bool { return h.Mark != "" }

// ReplyError is an error line ("-ERR ...") where a payload or reply was
// expected.
type ReplyError struct{ Msg string } // Msg without the leading '-' and without CRLF

func (e *ReplyError) Error() string { return "resp: error reply: " + e.Msg }

// ReadPayloadHeader skips "\n" keep-alives (calling onNewline for each, may be
// nil) and reads the payload line. A "-..." line returns *ReplyError; a line
// not starting with '$' wraps ErrProtocol; "$EOF:" needs exactly 40 mark
// bytes; a length must be a non-negative decimal, of any size (an RDB can be far
// larger than proto-max-bulk-len). The line is bounded by lim.MaxLineLen and
// must end in CRLF. Nothing after the line is consumed.
func ReadPayloadHeader(br *bufio.Reader, lim Limits, onNewline func()) (PayloadHeader, error) {
	lim = lim.orDefault()
	if err := skipNewlines(br, onNewline); err != nil {
		return PayloadHeader{}, fmt.Errorf("resp: read payload header: %w", err)
	}
	if b, _ := br.Peek(1); b[0] != '$' && b[0] != '-' { // fail now, not after a line that may never end
		return PayloadHeader{}, fmt.Errorf("resp: read payload header: %w: the first byte is not '$' but %q", ErrProtocol, b[0])
	}
	line, err := peekLine(br, lim.MaxLineLen)
	if err != nil {
		return PayloadHeader{}, fmt.Errorf("resp: read payload header: %w", err)
	}
	if line[0] == '-' {
		msg := bytes.TrimSuffix(line[1:len(line)-1], []byte{'\r'})
		e := &ReplyError{Msg: string(msg)}
		_, _ = br.Discard(len(line)) // buffered, cannot fail
		return PayloadHeader{}, e
	}
	h, err := parsePayloadHeader(line)
	if err != nil {
		return PayloadHeader{}, fmt.Errorf("resp: read payload header: %w", err)
	}
	_, _ = br.Discard(len(line))
	return h, nil
}

// parsePayloadHeader parses a whole "$...\n" line.
func parsePayloadHeader(line []byte) (PayloadHeader, error) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return PayloadHeader{}, fmt.Errorf("%w: payload line %q not ended by CRLF", ErrProtocol, clip(line))
	}
	body := line[1 : len(line)-2]
	if mark, ok := bytes.CutPrefix(body, []byte("EOF:")); ok {
		if len(mark) != markLen {
			return PayloadHeader{}, fmt.Errorf("%w: EOF mark of %d bytes, want %d", ErrProtocol, len(mark), markLen)
		}
		return PayloadHeader{Len: -1, Mark: string(mark)}, nil
	}
	n, err := strconv.ParseInt(string(body), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && body[0] != '-':
		return PayloadHeader{}, fmt.Errorf("%w: payload length %q", ErrTooLarge, clip(body))
	case err != nil || n < 0 || body[0] == '+' || len(body) > 1 && body[0] == '0':
		return PayloadHeader{}, fmt.Errorf("%w: bad payload length %q", ErrProtocol, clip(body))
	}
	return PayloadHeader{Len: n}, nil
}

// peekLine returns the next line of br, '\n' included, without consuming it.
// A line longer than max (CRLF excluded) is ErrTooLarge as soon as max+2
// bytes show no '\n'.
func peekLine(br *bufio.Reader, max int) ([]byte, error) {
	want := 1
	for {
		_, rerr := br.Peek(want)
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && i <= max+1 {
			return buf[:i+1], nil
		}
		if len(buf) >= max+2 {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrTooLarge, max)
		}
		if rerr != nil {
			if rerr == io.EOF && len(buf) > 0 {
				rerr = io.ErrUnexpectedEOF
			}
			return nil, rerr
		}
		if len(buf) >= br.Size() {
			return nil, fmt.Errorf("%w: line longer than the reader's %d-byte buffer", ErrTooLarge, br.Size())
		}
		want = len(buf) + 1
	}
}

// clip shortens b for error messages.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// CopyPayload copies exactly the RDB bytes that follow h from br to dst and
// returns how many it wrote. The EOF mark is stripped, not written.
//
// It never consumes a byte past the payload's end, so the stream that follows
// stays in br, and it writes straight from br's buffer: besides br it holds a
// 39-byte tail, whatever the payload size.
//
// Length mode has io.CopyN semantics, except that a short stream is
// io.ErrUnexpectedEOF. EOF mode follows Redis's readSyncBulkPayload: the
// payload ends where the last 40 bytes received equal the mark. The bytes are
// taken as they arrive (what br holds, else one read), the trailing 39 bytes
// are held back from dst until they are known not to start the mark, and the
// mark may be split across reads. Unlike Redis, which looks at the end of each
// read only, the end is found at any position, so bytes that arrived glued to
// the mark stay in br instead of hiding it.
func CopyPayload(dst io.Writer, br *bufio.Reader, h PayloadHeader) (int64, error) {
	switch {
	case h.Marked() && len(h.Mark) != markLen:
		return 0, fmt.Errorf("%w: EOF mark of %d bytes, want %d", ErrProtocol, len(h.Mark), markLen)
	case h.Marked():
		return copyMarked(dst, br, h.Mark)
	case h.Len < 0:
		return 0, fmt.Errorf("%w: payload header with length %d and no mark", ErrProtocol, h.Len)
	}
	return copyCounted(dst, br, h.Len)
}

// copyCounted copies n bytes from br's buffer to dst, never asking br for more
// than what is left of the payload.
func copyCounted(dst io.Writer, br *bufio.Reader, n int64) (int64, error) {
	var written int64
	for written < n {
		chunk, err := nextChunk(br)
		if err != nil {
			return written, fmt.Errorf("resp: payload cut after %d of %d bytes: %w", written, n, err)
		}
		if int64(len(chunk)) > n-written {
			chunk = chunk[:n-written]
		}
		m, err := write(dst, chunk)
		written += int64(m)
		_, _ = br.Discard(m)
		if err != nil {
			return written, fmt.Errorf("resp: write payload: %w", err)
		}
	}
	return written, nil
}

// copyMarked copies the bytes before the first occurrence of mark. The
// occurrence is searched in two places: straddling the held tail and the new
// chunk (it then ends within the chunk's first 39 bytes), and inside the chunk.
func copyMarked(dst io.Writer, br *bufio.Reader, markStr string) (int64, error) {
	var (
		mark    [markLen]byte
		held    [markLen - 1]byte // last bytes examined: they may be the start of the mark
		nh      int
		seam    [2*markLen - 2]byte
		written int64
	)
	copy(mark[:], markStr)
	for {
		chunk, err := nextChunk(br)
		if err != nil {
			return written, fmt.Errorf("resp: payload cut after %d bytes, before its EOF mark: %w", written+int64(nh), err)
		}
		if nh > 0 {
			s := append(append(seam[:0], held[:nh]...), chunk[:min(len(chunk), markLen-1)]...)
			if i := bytes.Index(s, mark[:]); i >= 0 {
				m, err := write(dst, held[:i])
				written += int64(m)
				if err != nil {
					return written, fmt.Errorf("resp: write payload: %w", err)
				}
				_, _ = br.Discard(i + markLen - nh)
				return written, nil
			}
		}
		if i := bytes.Index(chunk, mark[:]); i >= 0 {
			m, err := writeBoth(dst, held[:nh], chunk[:i])
			written += int64(m)
			if err != nil {
				return written, fmt.Errorf("resp: write payload: %w", err)
			}
			_, _ = br.Discard(i + markLen)
			return written, nil
		}
		// No mark yet: all but the last 39 bytes seen are RDB.
		total := nh + len(chunk)
		keep := min(total, markLen-1)
		fromHeld := min(nh, total-keep)
		m, err := writeBoth(dst, held[:fromHeld], chunk[:total-keep-fromHeld])
		written += int64(m)
		if err != nil {
			return written, fmt.Errorf("resp: write payload: %w", err)
		}
		if len(chunk) >= keep {
			nh = copy(held[:], chunk[len(chunk)-keep:])
		} else {
			old := keep - len(chunk) // bytes kept from the previous tail
			copy(held[:], held[nh-old:nh])
			copy(held[old:], chunk)
			nh = keep
		}
		_, _ = br.Discard(len(chunk))
	}
}

// nextChunk returns what br holds, or what one read brings when it holds
// nothing, without consuming it. A clean EOF becomes io.ErrUnexpectedEOF: a
// payload is never allowed to end early.
func nextChunk(br *bufio.Reader) ([]byte, error) {
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	chunk, _ := br.Peek(br.Buffered())
	return chunk, nil
}

// write is dst.Write with io.Copy's short-write rule.
func write(dst io.Writer, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := dst.Write(p)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// writeBoth writes a then b.
func writeBoth(dst io.Writer, a, b []byte) (int, error) {
	n, err := write(dst, a)
	if err != nil {
		return n, err
	}
	m, err := write(dst, b)
	return n + m, err
}

// AppendPayloadHeader appends "$<n>\r\n" or, for a marked header,
// "$EOF:<mark>\r\n".
func AppendPayloadHeader(dst []byte, h PayloadHeader) []byte {
	dst = append(dst, '$')
	if h.Marked() {
		dst = append(dst, "EOF:"...)
		dst = append(dst, h.Mark...)
	} else {
		dst = strconv.AppendInt(dst, h.Len, 10)
	}
	return append(dst, '\r', '\n')
}
