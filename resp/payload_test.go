package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

const testMark = "0123456789abcdef0123456789abcdef01234567" // the §11.3 fixture's mark

// chunkReader returns the data in reads of random sizes, 1 to max bytes.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func newChunkReader(data []byte, seed uint64, max int) *chunkReader {
	return &chunkReader{data: data, rng: rand.New(rand.NewPCG(seed, 7)), max: max}
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data[:min(len(r.data), 1+r.rng.IntN(r.max))])
	r.data = r.data[n:]
	return n, nil
}

// piecesReader returns each piece in its own read.
type piecesReader struct{ pieces []string }

func (r *piecesReader) Read(p []byte) (int, error) {
	for len(r.pieces) > 0 && r.pieces[0] == "" {
		r.pieces = r.pieces[1:]
	}
	if len(r.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[0])
	r.pieces[0] = r.pieces[0][n:]
	return n, nil
}

// readers returns the ways a test feeds wire bytes: whole, one byte per read,
// and random chunks.
func readers(wire string) map[string]io.Reader {
	return map[string]io.Reader{
		"whole":  strings.NewReader(wire),
		"byte":   iotest.OneByteReader(strings.NewReader(wire)),
		"chunks": newChunkReader([]byte(wire), uint64(len(wire)), 97),
		"big":    newChunkReader([]byte(wire), uint64(len(wire)), 70000),
	}
}

func testRDBs() map[string]string {
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 200_000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	return map[string]string{
		"empty":          "",
		"1":              "R",
		"39":             strings.Repeat("r", 39),
		"40":             strings.Repeat("r", 40),
		"41":             strings.Repeat("r", 41),
		"fixture":        "REDIS0011\xfa\tredis-ver\x057.2.4\xff\x00\x01\x02\x03\x04\x05\x06\x07",
		"mark prefix":    "xx" + testMark[:39],
		"mark prefixes":  strings.Repeat(testMark[:20], 7) + testMark[:39] + "y",
		"mark almost":    testMark[:39] + "X" + testMark[1:],
		"random 200 KB":  string(random),
		"repeated marks": strings.Repeat(testMark[:39]+"_", 3000),
	}
}

func TestPayloadBothFramings(t *testing.T) {
	const tail = pingCmd + getackCmd
	for rdbName, rdb := range testRDBs() {
		headers := []PayloadHeader{{Len: int64(len(rdb))}, {Len: -1, Mark: testMark}}
		for _, h := range headers {
			wire := "\n\n\n" + string(AppendPayloadHeader(nil, h)) + rdb
			if h.Marked() {
				wire += testMark
			}
			wire += tail
			for rname, r := range readers(wire) {
				name := fmt.Sprintf("%s/marked=%v/%s", rdbName, h.Marked(), rname)
				br := bufio.NewReaderSize(r, 4096)
				var nl int
				got, err := ReadPayloadHeader(br, DefaultLimits(), func() { nl++ })
				if err != nil || got != h || nl != 3 {
					t.Fatalf("%s: ReadPayloadHeader = %+v, %v, %d newlines; want %+v, 3", name, got, err, nl, h)
				}
				var dst bytes.Buffer
				n, err := CopyPayload(&dst, br, got)
				if err != nil || n != int64(len(rdb)) || dst.String() != rdb {
					t.Fatalf("%s: CopyPayload = %d, %v (%d bytes written); want %d", name, n, err, dst.Len(), len(rdb))
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != tail {
					t.Fatalf("%s: left %q; want %q", name, rest, tail)
				}
			}
		}
	}
}

// The mark split at every position across two reads, with the stream arriving
// in a later read (a master waits for the ACK) or glued to the mark.
func TestPayloadMarkSplit(t *testing.T) {
	for _, rdb := range []string{"", "abc", strings.Repeat("z", 100)} {
		for k := 0; k <= markLen; k++ {
			for _, glued := range []bool{false, true} {
				pieces := []string{"$EOF:" + testMark + "\r\n" + rdb + testMark[:k], testMark[k:], pingCmd}
				if glued {
					pieces = []string{pieces[0], pieces[1] + pieces[2]}
				}
				br := bufio.NewReader(&piecesReader{pieces: pieces})
				h, err := ReadPayloadHeader(br, DefaultLimits(), nil)
				if err != nil {
					t.Fatal(err)
				}
				var dst bytes.Buffer
				if n, err := CopyPayload(&dst, br, h); err != nil || n != int64(len(rdb)) || dst.String() != rdb {
					t.Fatalf("rdb %q, split %d: CopyPayload = %d, %v, %q", rdb, k, n, err, dst.String())
				}
				if rest, _ := io.ReadAll(br); string(rest) != pingCmd {
					t.Fatalf("rdb %q, split %d: left %q", rdb, k, rest)
				}
			}
		}
	}
}

func TestPayloadHeaderErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"\n\n", io.EOF},
		{"$12", io.ErrUnexpectedEOF},
		{"+FULLRESYNC x 0\r\n", ErrProtocol},
		{"*1\r\n", ErrProtocol},
		{"REDIS0011", ErrProtocol},
		{"$EOF:short\r\n", ErrProtocol},
		{"$EOF:" + testMark + "0\r\n", ErrProtocol},
		{"$EOF:" + testMark + "\n", ErrProtocol},
		{"$5\n", ErrProtocol},
		{"$\r\n", ErrProtocol},
		{"$-1\r\n", ErrProtocol},
		{"$+5\r\n", ErrProtocol},
		{"$05\r\n", ErrProtocol},
		{"$5x\r\n", ErrProtocol},
		{"$ 5\r\n", ErrProtocol},
		{"$99999999999999999999\r\n", ErrTooLarge},
		{"$" + strings.Repeat("1", 70000), ErrTooLarge},
	}
	for _, tt := range tests {
		br := bufio.NewReaderSize(strings.NewReader(tt.in), 128<<10)
		_, err := ReadPayloadHeader(br, DefaultLimits(), nil)
		if !errors.Is(err, tt.want) {
			t.Fatalf("ReadPayloadHeader(%.30q) = %v; want %v", tt.in, err, tt.want)
		}
	}
	// A line over MaxLineLen fails before its end arrives, and so does one
	// over the reader's buffer.
	br := bufio.NewReader(io.MultiReader(strings.NewReader("$"+strings.Repeat("1", 100)), iotest.ErrReader(errReadPastHeader)))
	if _, err := ReadPayloadHeader(br, Limits{MaxLineLen: 50}, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("line over MaxLineLen: %v; want ErrTooLarge", err)
	}
	br = bufio.NewReaderSize(strings.NewReader("$"+strings.Repeat("1", 100)+"\r\n"), 16)
	if _, err := ReadPayloadHeader(br, DefaultLimits(), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("line over the buffer: %v; want ErrTooLarge", err)
	}
	// Huge lengths are fine: RDBs are not bound by proto-max-bulk-len.
	br = bufio.NewReader(strings.NewReader("$9223372036854775807\r\n"))
	if h, err := ReadPayloadHeader(br, DefaultLimits(), nil); err != nil || h.Len != 1<<63-1 || h.Marked() {
		t.Fatalf("huge length: %+v, %v", h, err)
	}
}

func TestPayloadReplyError(t *testing.T) {
	for _, line := range []string{"-ERR BGSAVE failed, replication can't continue\r\n", "-ERR BGSAVE failed, replication can't continue\n"} {
		br := bufio.NewReader(strings.NewReader("\n" + line + "$5\r\n"))
		var nl int
		_, err := ReadPayloadHeader(br, DefaultLimits(), func() { nl++ })
		var re *ReplyError
		if !errors.As(err, &re) || re.Msg != "ERR BGSAVE failed, replication can't continue" || nl != 1 {
			t.Fatalf("ReadPayloadHeader(%q) = %v (%d newlines); want *ReplyError", line, err, nl)
		}
		if err.Error() != "resp: error reply: ERR BGSAVE failed, replication can't continue" {
			t.Fatalf("Error() = %q", err.Error())
		}
		if rest, _ := io.ReadAll(br); string(rest) != "$5\r\n" {
			t.Fatalf("left %q after the error line", rest)
		}
	}
}

func TestCopyPayloadTruncated(t *testing.T) {
	tests := []struct {
		wire    string
		h       PayloadHeader
		written int64
	}{
		{"", PayloadHeader{Len: 10}, 0},
		{"abc", PayloadHeader{Len: 10}, 3},
		{"", PayloadHeader{Len: -1, Mark: testMark}, 0},
		{"abc", PayloadHeader{Len: -1, Mark: testMark}, 0},
		{strings.Repeat("a", 100) + testMark[:39], PayloadHeader{Len: -1, Mark: testMark}, 100},
		{strings.Repeat("a", 100), PayloadHeader{Len: -1, Mark: testMark}, 61},
	}
	for _, tt := range tests {
		for rname, r := range readers(tt.wire) {
			var dst bytes.Buffer
			n, err := CopyPayload(&dst, bufio.NewReader(r), tt.h)
			if !errors.Is(err, io.ErrUnexpectedEOF) || n != tt.written || int64(dst.Len()) != n {
				t.Fatalf("%q/%s: CopyPayload = %d, %v (%d written); want %d, io.ErrUnexpectedEOF", tt.wire, rname, n, err, dst.Len(), tt.written)
			}
		}
	}
}

func TestCopyPayloadBadHeader(t *testing.T) {
	for _, h := range []PayloadHeader{{Len: -1}, {Len: -1, Mark: "short"}} {
		if _, err := CopyPayload(io.Discard, bufio.NewReader(strings.NewReader("x")), h); !errors.Is(err, ErrProtocol) {
			t.Fatalf("CopyPayload(%+v) = %v; want ErrProtocol", h, err)
		}
	}
}

// failWriter accepts limit bytes, then fails.
type failWriter struct{ limit int }

var errDiskFull = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, errDiskFull
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestCopyPayloadWriteError(t *testing.T) {
	rdb := strings.Repeat("d", 10000)
	for _, h := range []PayloadHeader{{Len: int64(len(rdb))}, {Len: -1, Mark: testMark}} {
		br := bufio.NewReader(strings.NewReader(rdb + testMark))
		n, err := CopyPayload(&failWriter{limit: 5000}, br, h)
		if !errors.Is(err, errDiskFull) || n != 5000 {
			t.Fatalf("marked=%v: CopyPayload = %d, %v; want 5000, disk full", h.Marked(), n, err)
		}
	}
}

func TestCopyPayloadMemory(t *testing.T) {
	const size = 64 << 20
	for _, h := range []PayloadHeader{{Len: size}, {Len: -1, Mark: testMark}} {
		allocs := testing.AllocsPerRun(2, func() {
			src := io.MultiReader(io.LimitReader(zeros{}, size), strings.NewReader(testMark))
			br := bufio.NewReaderSize(src, 64<<10)
			if n, err := CopyPayload(io.Discard, br, h); err != nil || n != size {
				t.Fatalf("CopyPayload = %d, %v", n, err)
			}
		})
		if allocs > 10 { // the reader and its buffer; nothing per byte
			t.Fatalf("marked=%v: %v allocations for a 64 MiB payload", h.Marked(), allocs)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestAppendPayloadHeader(t *testing.T) {
	tests := []struct {
		h    PayloadHeader
		want string
	}{
		{PayloadHeader{Len: 0}, "$0\r\n"},
		{PayloadHeader{Len: 175}, "$175\r\n"},
		{PayloadHeader{Len: -1, Mark: testMark}, "$EOF:" + testMark + "\r\n"},
	}
	for _, tt := range tests {
		got := AppendPayloadHeader([]byte("+FULLRESYNC x 0\r\n"), tt.h)
		if string(got) != "+FULLRESYNC x 0\r\n"+tt.want {
			t.Fatalf("AppendPayloadHeader(%+v) = %q", tt.h, got)
		}
		h, err := ReadPayloadHeader(bufio.NewReader(strings.NewReader(tt.want)), DefaultLimits(), nil)
		if err != nil || h != tt.h {
			t.Fatalf("round trip of %+v: %+v, %v", tt.h, h, err)
		}
	}
}

func BenchmarkCopyPayload(b *testing.B) {
	const size = 64 << 20
	for _, h := range []PayloadHeader{{Len: size}, {Len: -1, Mark: testMark}} {
		b.Run(fmt.Sprintf("marked=%v", h.Marked()), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				src := io.MultiReader(io.LimitReader(zeros{}, size), strings.NewReader(testMark))
				if _, err := CopyPayload(io.Discard, bufio.NewReaderSize(src, 64<<10), h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
