package resp

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	tresp "github.com/tidwall/resp"
)

// validValues returns one of each kind of value, as test and fuzz seeds.
func validValues() []string {
	return []string{
		"+OK\r\n",
		"+\r\n",
		"+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 0\r\n",
		"+a\rb\r\n", // a lone '\r' inside a line is data
		"-ERR unknown command\r\n",
		"-NOMASTERLINK Can't SYNC while not connected with my master\r\n",
		":0\r\n",
		":-1\r\n",
		":1000\r\n",
		":9223372036854775807\r\n",
		":-9223372036854775808\r\n",
		"$0\r\n\r\n",
		"$-1\r\n",
		"$4\r\nPING\r\n",
		"$4\r\n\r\n\r\n\r\n", // a bulk may hold CRLFs
		"*0\r\n",
		"*-1\r\n",
		"*1\r\n$4\r\nping\r\n",
		"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n",
		"*2\r\n*1\r\n:1\r\n*2\r\n+a\r\n-b\r\n",
		"*3\r\n*0\r\n*-1\r\n$-1\r\n",
		"*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n",
		"*2\r\n*2\r\n*0\r\n:1\r\n$1\r\nx\r\n",
		strings.Repeat("*1\r\n", maxDepth) + ":1\r\n",
	}
}

func TestFrameValid(t *testing.T) {
	lim := DefaultLimits()
	for _, v := range validValues() {
		for _, tail := range []string{"", "+NEXT\r\n", "\n", "garbage"} {
			n, err := Frame([]byte(v+tail), lim)
			if err != nil || n != len(v) {
				t.Fatalf("Frame(%q) = %d, %v; want %d, nil", v+tail, n, err, len(v))
			}
		}
		for k := 0; k < len(v); k++ {
			n, err := Frame([]byte(v[:k]), lim)
			if n != 0 || err != nil {
				t.Fatalf("Frame(%q) (prefix of %q) = %d, %v; want 0, nil", v[:k], v, n, err)
			}
		}
	}
}

func TestFrameErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"x", ErrProtocol},
		{"\n", ErrProtocol},
		{"\r\n", ErrProtocol},
		{"PING\r\n", ErrProtocol},
		{"_\r\n", ErrProtocol}, // RESP3 null
		{"+OK\n", ErrProtocol},
		{"-ERR\n", ErrProtocol},
		{":1\n", ErrProtocol},
		{":1\rx", ErrProtocol},
		{":\r\n", ErrProtocol},
		{":+1\r\n", ErrProtocol},
		{":01\r\n", ErrProtocol},
		{":-0\r\n", ErrProtocol},
		{":1a", ErrProtocol},
		{":--1", ErrProtocol},
		{":9223372036854775808\r\n", ErrProtocol},
		{":-9223372036854775809\r\n", ErrProtocol},
		{"$-2\r\n", ErrProtocol},
		{"$-10", ErrProtocol},
		{"$-0", ErrProtocol},
		{"$+1\r\n", ErrProtocol},
		{"$01\r\n", ErrProtocol},
		{"$x", ErrProtocol},
		{"$\r\n", ErrProtocol},
		{"$1\nx\r\n", ErrProtocol},
		{"$3\r\nabcXY", ErrProtocol},
		{"$3\r\nabc\n\r", ErrProtocol},
		{"$3\r\nabc\r\r", ErrProtocol},
		{"*-2\r\n", ErrProtocol},
		{"*1x", ErrProtocol},
		{"*1\n", ErrProtocol},
		{"*2\r\n:1\r\nfoo\r\n", ErrProtocol},
		{"*1\r\n\n", ErrProtocol},
		{"*99999999\r\n", ErrTooLarge},
		{"*99999999", ErrTooLarge},
		{"*1048577\r\n", ErrTooLarge},
		{"$9999999999\r\n", ErrTooLarge},
		{"$9999999999", ErrTooLarge},
		{"$536870913\r\n", ErrTooLarge},
		{"$99999999999999999999999999", ErrTooLarge},
		{"*1\r\n$9999999999\r\n", ErrTooLarge},
		{strings.Repeat("*1\r\n", maxDepth+1), ErrTooLarge},
		{"+" + strings.Repeat("a", 64<<10+1), ErrTooLarge},
	}
	lim := DefaultLimits()
	for _, tt := range tests {
		n, err := Frame([]byte(tt.in), lim)
		if n != 0 || !errors.Is(err, tt.want) {
			t.Fatalf("Frame(%.40q) = %d, %v; want 0, %v", tt.in, n, err, tt.want)
		}
	}
}

func TestFrameLimits(t *testing.T) {
	tests := []struct {
		in   string
		lim  Limits
		want error
	}{
		{"$10\r\n", Limits{MaxBulkLen: 10}, nil},
		{"$11\r\n", Limits{MaxBulkLen: 10}, ErrTooLarge},
		{"*3\r\n", Limits{MaxArrayLen: 3}, nil},
		{"*4", Limits{MaxArrayLen: 3}, ErrTooLarge},
		{"+abcd\r\n", Limits{MaxLineLen: 5}, nil},
		{"+abcde\r", Limits{MaxLineLen: 5}, ErrTooLarge},
		{"+abcde", Limits{MaxLineLen: 5}, nil}, // reported once max+2 bytes show no '\n'
		{":1234\r\n", Limits{MaxLineLen: 5}, nil},
		{":12345", Limits{MaxLineLen: 5}, ErrTooLarge},
		{"$" + strings.Repeat("9", 30), Limits{MaxBulkLen: 1<<63 - 1}, ErrTooLarge},
		{"$512\r\n", Limits{}, nil}, // zero fields take the defaults
	}
	for _, tt := range tests {
		_, err := Frame([]byte(tt.in), tt.lim)
		if !errors.Is(err, tt.want) {
			t.Fatalf("Frame(%q, %+v) = %v; want %v", tt.in, tt.lim, err, tt.want)
		}
	}
}

func TestFrameAllocs(t *testing.T) {
	b := []byte("*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n*2\r\n:1\r\n+OK\r\n")
	lim := DefaultLimits()
	if a := testing.AllocsPerRun(100, func() { _, _ = Frame(b, lim) }); a != 0 {
		t.Fatalf("Frame allocates %v times per call", a)
	}
	big := []byte("$536870912\r\nabc")
	if a := testing.AllocsPerRun(100, func() { _, _ = Frame(big, lim) }); a != 0 {
		t.Fatalf("Frame of a 512 MiB header allocates %v times per call", a)
	}
}

func TestReadValue(t *testing.T) {
	tests := []struct {
		in   string
		want tresp.Value
	}{
		{"+PONG\r\n", tresp.SimpleStringValue("PONG")},
		{"-NOAUTH Authentication required.\r\n", tresp.ErrorValue(errors.New("NOAUTH Authentication required."))},
		{":42\r\n", tresp.IntegerValue(42)},
		{"$3\r\nabc\r\n", tresp.StringValue("abc")},
		{"$-1\r\n", tresp.NullValue()},
		{"*2\r\n$3\r\nfoo\r\n:1\r\n", tresp.ArrayValue([]tresp.Value{tresp.StringValue("foo"), tresp.IntegerValue(1)})},
	}
	const after = "$EOF:0123456789abcdef0123456789abcdef01234567\r\nREDIS"
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tt.in + after)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			br := bufio.NewReaderSize(r, 64)
			v, err := ReadValue(br, DefaultLimits())
			if err != nil {
				t.Fatalf("ReadValue(%q): %v", tt.in, err)
			}
			if !v.Equals(tt.want) {
				t.Fatalf("ReadValue(%q) = %v; want %v", tt.in, v, tt.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != after {
				t.Fatalf("ReadValue(%q) left %q; want %q", tt.in, rest, after)
			}
		}
	}
}

func TestReadValueErrors(t *testing.T) {
	tests := []struct {
		in   string
		size int
		want error
	}{
		{"$100\r\n" + strings.Repeat("x", 100) + "\r\n", 64, ErrTooLarge}, // known too big from its header
		{"+" + strings.Repeat("x", 100) + "\r\n", 64, ErrTooLarge},        // found when the buffer fills
		{"*200\r\n" + strings.Repeat(":1\r\n", 200), 64, ErrTooLarge},
		{"$5\r\nab", 64, io.ErrUnexpectedEOF},
		{"+OK", 64, io.ErrUnexpectedEOF},
		{"", 64, io.EOF},
		{"\n+OK\r\n", 64, ErrProtocol}, // keep-alives are the caller's: SkipNewlines
		{"$3\r\nabcd\r\n", 64, ErrProtocol},
		{"*99999999\r\n", 64, ErrTooLarge},
	}
	for _, tt := range tests {
		br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tt.in)), tt.size)
		_, err := ReadValue(br, DefaultLimits())
		if !errors.Is(err, tt.want) {
			t.Fatalf("ReadValue(%.20q) = %v; want %v", tt.in, err, tt.want)
		}
	}
	// Over-limit is reported from the header, before the data exists.
	br := bufio.NewReader(io.MultiReader(strings.NewReader("$9999999999\r\n"), iotest.ErrReader(errReadPastHeader)))
	if _, err := ReadValue(br, DefaultLimits()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadValue of a huge bulk header = %v; want ErrTooLarge", err)
	}
}

// errReadPastHeader stands for a peer that has sent nothing more yet.
var errReadPastHeader = errors.New("read past the header")

func TestSkipNewlines(t *testing.T) {
	br := bufio.NewReader(iotest.OneByteReader(strings.NewReader("\n\n\n+FULLRESYNC x 0\r\n")))
	var calls int
	if err := SkipNewlines(br, func() { calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("onNewline called %d times; want 3", calls)
	}
	if b, _ := br.Peek(1); b[0] != '+' {
		t.Fatalf("next byte %q; want '+'", b[0])
	}
	if err := SkipNewlines(br, nil); err != nil {
		t.Fatal(err)
	}
	if err := SkipNewlines(bufio.NewReader(strings.NewReader("\n\n")), nil); !errors.Is(err, io.EOF) {
		t.Fatalf("SkipNewlines at EOF = %v; want io.EOF", err)
	}
}

// The §11.3 handshake fixture, from the PSYNC reply to the stream.
func TestFixtureSession(t *testing.T) {
	const (
		mark   = "0123456789abcdef0123456789abcdef01234567"
		rdb    = "REDIS0011\xfa\tredis-ver\x057.2.4\xff\x00\x01\x02\x03\x04\x05\x06\x07"
		stream = "*1\r\n$4\r\nping\r\n*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"
	)
	wire := "\n\n+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 0\r\n" +
		"$EOF:" + mark + "\r\n" + rdb + mark + stream
	br := bufio.NewReader(iotest.OneByteReader(strings.NewReader(wire)))
	var nl int
	if err := SkipNewlines(br, func() { nl++ }); err != nil || nl != 2 {
		t.Fatalf("SkipNewlines: %v, %d newlines", err, nl)
	}
	v, err := ReadValue(br, DefaultLimits())
	if err != nil || v.String() != "FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 0" {
		t.Fatalf("ReadValue = %q, %v", v.String(), err)
	}
	h, err := ReadPayloadHeader(br, DefaultLimits(), nil)
	if err != nil || h != (PayloadHeader{Len: -1, Mark: mark}) {
		t.Fatalf("ReadPayloadHeader = %+v, %v", h, err)
	}
	var got strings.Builder
	if n, err := CopyPayload(&got, br, h); err != nil || n != int64(len(rdb)) || got.String() != rdb {
		t.Fatalf("CopyPayload = %d, %v, %q", n, err, got.String())
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != stream {
		t.Fatalf("stream after the payload = %q", rest)
	}
	checkFixtureCommands(t, scanPieces(t, NewScanner(1, DefaultLimits()), rest, 1))
}
