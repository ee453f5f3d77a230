package resp

import "fmt"

// argKeep is how many bytes of the first two arguments a Command keeps:
// enough for any command or subcommand name.
const argKeep = 32

// Command describes one complete command found in the replication stream.
type Command struct {
	Start, End int64     // absolute stream offsets of its first and last byte (inclusive)
	Argc       int       // number of arguments (0 for an empty inline line "\n" or "\r\n", which masters may send and which counts toward offsets)
	Args       [2][]byte // the first two arguments, each truncated to 32 bytes; valid only during the callback

	long [2]bool // Args[i] was truncated: it then matches no name in Is
}

// Is reports whether the command is name [sub ...], case-insensitively (ASCII,
// like Redis's strcasecmp), e.g. c.Is("REPLCONF", "GETACK"). An empty sub
// matches any subcommand. An argument longer than 32 bytes matches nothing.
func (c *Command) Is(name, sub string) bool {
	if c.Argc < 1 || c.long[0] || !equalFold(c.Args[0], name) {
		return false
	}
	return sub == "" || c.Argc >= 2 && !c.long[1] && equalFold(c.Args[1], sub)
}

// equalFold compares ASCII case-insensitively without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Scanner states. The stream is "*<argc>\r\n" then argc times
// "$<len>\r\n<bytes>\r\n", or an empty line.
const (
	stCmd       = iota // at a command boundary: '*', '\n' or '\r'
	stEmptyLF          // after the '\r' of an empty line
	stArgc             // digits of argc
	stArgcLF           // after argc's '\r'
	stDollar           // '$' of the next argument
	stBulkLen          // digits of a bulk length
	stBulkLenLF        // after the length's '\r'
	stBody             // bulk bytes, s.rem left
	stBodyCR           // '\r' after the bulk bytes
	stBodyLF           // '\n' after the bulk bytes
)

// Scanner follows command boundaries in a replication stream fed in pieces of
// any size (a piece may end in the middle of a header, a length, a bulk or its
// CRLF). The stream is multibulk commands plus empty lines, which is all a
// master sends. Anything else (inline text, bad lengths, over-limit lengths)
// is a sticky error wrapping ErrProtocol or ErrTooLarge that names the
// offset.
//
// Like Redis's processMultibulkBuffer, "*0\r\n" and "*-<n>\r\n" are accepted
// as commands with no arguments. Unlike Redis, which skips the two bytes after
// each number and bulk unchecked, both must be CRLF here: anything else means
// the stream is out of step.
//
// Bulk bodies are skipped by count, not copied; only the first 32 bytes of the
// first two arguments are kept. Feed allocates only to build an error.
type Scanner struct {
	lim      Limits
	off      int64 // offset of the next byte to be fed
	boundary int64 // offset of the last byte of the last complete command
	err      error // sticky

	st   int
	num  uint64 // number being parsed
	ndig int    // digits of num seen
	neg  bool   // num had a '-' (argc only)
	argc int64  // arguments declared by the current command
	argi int64  // index of the current argument
	rem  int64  // bulk bytes left to skip

	cmd  Command
	args [2][argKeep]byte
	argn [2]int // bytes kept in args
}

// NewScanner starts at absolute offset next (the offset the first fed byte
// has). Zero fields of lim take their DefaultLimits value.
func NewScanner(next int64, lim Limits) *Scanner {
	return &Scanner{lim: lim.orDefault(), off: next, boundary: next - 1}
}

// Boundary is the offset of the last byte of the last complete command
// (next-1 before any).
func (s *Scanner) Boundary() int64 { return s.boundary }

// Offset is the offset the next fed byte will have. After an error it is the
// offset of the byte that caused it.
func (s *Scanner) Offset() int64 { return s.off }

// Err returns the sticky error, or nil.
func (s *Scanner) Err() error { return s.err }

// Feed scans p, calling fn (may be nil) for each command completed inside p,
// in order. The *Command and its Args are reused after fn returns. After an
// error, every call returns the same error.
func (s *Scanner) Feed(p []byte, fn func(*Command)) error {
	if s.err != nil {
		return s.err
	}
	base := s.off // offset of p[0]
	i := 0
	for i < len(p) {
		switch s.st {
		case stCmd:
			s.cmd.Start = base + int64(i)
			switch p[i] {
			case '*':
				if k := s.fastArgc(p, i); k > 0 {
					s.argc, s.argi, s.st = int64(s.num), 0, stDollar
					i = k
					continue
				}
				s.startNum(stArgc)
			case '\n':
				s.emit(base+int64(i), 0, fn)
			case '\r':
				s.st = stEmptyLF
			default:
				return s.fail(base, i, ErrProtocol, "inline command or garbage where a command should start")
			}
			i++
		case stEmptyLF:
			if p[i] != '\n' {
				return s.fail(base, i, ErrProtocol, "'\\r' not followed by '\\n' in an empty line")
			}
			s.emit(base+int64(i), 0, fn)
			i++
		case stArgc, stBulkLen:
			var err error
			if i, err = s.digits(p, i, base); err != nil {
				return err
			}
		case stArgcLF:
			if p[i] != '\n' {
				return s.fail(base, i, ErrProtocol, "argument count not followed by CRLF")
			}
			if s.neg || s.num == 0 {
				s.emit(base+int64(i), 0, fn)
			} else {
				s.argc, s.argi = int64(s.num), 0
				s.st = stDollar
			}
			i++
		case stDollar:
			if k := s.fastBulk(p, i); k > 0 {
				for i = k; ; i = k { // the rest of the command's arguments, while they are whole in p
					s.argi++
					if s.argi == s.argc {
						s.emit(base+int64(i-1), int(s.argc), fn)
						break
					}
					if i == len(p) {
						break
					}
					if k = s.fastBulk(p, i); k == 0 {
						break
					}
				}
				continue
			}
			if p[i] != '$' {
				return s.fail(base, i, ErrProtocol, fmt.Sprintf("expected '$', got %q", p[i]))
			}
			s.startNum(stBulkLen)
			i++
		case stBulkLenLF:
			if p[i] != '\n' {
				return s.fail(base, i, ErrProtocol, "bulk length not followed by CRLF")
			}
			s.rem = int64(s.num)
			if s.argi < 2 {
				s.argn[s.argi] = 0
				s.cmd.long[s.argi] = s.rem > argKeep
			}
			s.st = stBody
			if s.rem == 0 {
				s.st = stBodyCR
			}
			i++
		case stBody:
			k := len(p) - i
			if int64(k) > s.rem {
				k = int(s.rem)
			}
			if s.argi < 2 && s.argn[s.argi] < argKeep {
				s.argn[s.argi] += copy(s.args[s.argi][s.argn[s.argi]:], p[i:i+k])
			}
			i += k
			s.rem -= int64(k)
			if s.rem == 0 {
				s.st = stBodyCR
			}
		case stBodyCR:
			if p[i] != '\r' {
				return s.fail(base, i, ErrProtocol, "bulk data not followed by CRLF")
			}
			s.st = stBodyLF
			i++
		case stBodyLF:
			if p[i] != '\n' {
				return s.fail(base, i, ErrProtocol, "bulk data not followed by CRLF")
			}
			s.argi++
			if s.argi == s.argc {
				s.emit(base+int64(i), int(s.argc), fn)
			} else {
				s.st = stDollar
			}
			i++
		}
	}
	s.off = base + int64(len(p))
	return nil
}

// fastBulk handles the common case of a whole argument, "$<len>\r\n<bytes>\r\n",
// inside p[i:], so the byte-wise states run only where a piece cuts an argument.
// It returns the index past the argument, or 0 when the argument is not wholly
// in p or is malformed; the byte-wise path then takes over from p[i] and
// reports any error at its exact offset.
func (s *Scanner) fastBulk(p []byte, i int) int {
	if p[i] != '$' {
		return 0
	}
	j := i + 1
	var n uint64
	for ; j < len(p) && j-i <= 18; j++ { // 18 digits cannot overflow
		d := p[j] - '0'
		if d > 9 {
			break
		}
		n = n*10 + uint64(d)
	}
	digits := j - i - 1
	if digits == 0 || digits > 1 && p[i+1] == '0' || n > uint64(s.lim.MaxBulkLen) ||
		j+1 >= len(p) || p[j] != '\r' || p[j+1] != '\n' {
		return 0
	}
	body := j + 2
	if n > uint64(len(p)-body) || len(p)-body-int(n) < 2 {
		return 0
	}
	end := body + int(n)
	if p[end] != '\r' || p[end+1] != '\n' {
		return 0
	}
	if s.argi < 2 {
		s.argn[s.argi] = copy(s.args[s.argi][:], p[body:end])
		s.cmd.long[s.argi] = n > argKeep
	}
	return end + 2
}

// fastArgc handles a whole positive "*<argc>\r\n" inside p[i:], leaving argc
// in s.num, like fastBulk does for arguments.
func (s *Scanner) fastArgc(p []byte, i int) int {
	j := i + 1
	var n uint64
	for ; j < len(p) && j-i <= 18; j++ {
		d := p[j] - '0'
		if d > 9 {
			break
		}
		n = n*10 + uint64(d)
	}
	if n == 0 || p[i+1] == '0' || n > uint64(s.lim.MaxArrayLen) ||
		j+1 >= len(p) || p[j] != '\r' || p[j+1] != '\n' {
		return 0
	}
	s.num = n
	return j + 2
}

// startNum begins parsing a number in state st.
func (s *Scanner) startNum(st int) {
	s.st, s.num, s.ndig, s.neg = st, 0, 0, false
}

// digits consumes number bytes from p[i:] in state stArgc or stBulkLen, with
// string2ll's rules (no '+', no leading zero, no "-0"), and moves to the LF
// state on '\r'. Limits are checked per digit, so an over-limit length fails
// before its CRLF arrives.
func (s *Scanner) digits(p []byte, i int, base int64) (int, error) {
	bound := uint64(s.lim.MaxBulkLen)
	if s.st == stArgc {
		bound = uint64(s.lim.MaxArrayLen)
		if s.neg {
			bound = 1 << 63
		}
	}
	for ; i < len(p); i++ {
		c := p[i]
		d := uint64(c - '0')
		if d <= 9 {
			if s.ndig > 0 && s.num == 0 || s.neg && s.ndig == 0 && d == 0 {
				return i, s.fail(base, i, ErrProtocol, "number with a leading zero")
			}
			if s.num > bound/10 || s.num*10+d > bound {
				if s.neg {
					return i, s.fail(base, i, ErrProtocol, "argument count out of range")
				}
				return i, s.fail(base, i, ErrTooLarge, fmt.Sprintf("length over %d", bound))
			}
			s.num = s.num*10 + d
			s.ndig++
			continue
		}
		switch {
		case c == '\r' && s.ndig > 0:
			s.st++ // the matching LF state
			return i + 1, nil
		case c == '-' && s.st == stArgc && s.ndig == 0 && !s.neg:
			s.neg = true
			bound = 1 << 63
		case c == '-' && s.st == stBulkLen:
			return i, s.fail(base, i, ErrProtocol, "negative bulk length")
		default:
			return i, s.fail(base, i, ErrProtocol, fmt.Sprintf("unexpected %q in a number", c))
		}
	}
	return i, nil
}

// emit completes the command ending at offset end.
func (s *Scanner) emit(end int64, argc int, fn func(*Command)) {
	s.st = stCmd
	s.boundary = end
	if fn == nil {
		return
	}
	c := &s.cmd
	c.End, c.Argc = end, argc
	for j := range c.Args {
		if j < argc {
			c.Args[j] = s.args[j][:s.argn[j]]
		} else {
			c.Args[j], c.long[j] = nil, false // long[j] is stale from an earlier command
		}
	}
	s.off = end + 1 // so Offset is right if fn asks
	fn(c)
}

// fail records the sticky error for the byte p[i].
func (s *Scanner) fail(base int64, i int, kind error, detail string) error {
	s.off = base + int64(i)
	s.err = fmt.Errorf("%w: replication stream offset %d: %s", kind, s.off, detail)
	return s.err
}
