package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	tresp "github.com/tidwall/resp"
)

// FuzzFrame checks that Frame never panics and agrees with tidwall/resp on
// every value it accepts. The reverse is not checked: tidwall accepts more
// (inline commands at the top level, "+5" and "01" numbers, any negative
// length as null, lines continued past a bare LF, unbounded nesting), and
// Frame rejects those on purpose.
func FuzzFrame(f *testing.F) {
	for _, v := range validValues() {
		f.Add([]byte(v))
		f.Add([]byte(v[:len(v)/2]))
		f.Add([]byte(v + "+OK\r\n"))
	}
	for _, s := range []string{
		"", "\n", "PING\r\n", "+OK\n", ":01\r\n", ":-0\r\n", "$-2\r\n", "$3\r\nabcXY",
		"*99999999\r\n", "$9999999999\r\n", "*2\r\n*1\r\n", "$1\r\n\n\r\n", "*-5\r\n",
		":9223372036854775808\r\n", strings.Repeat("*1\r\n", 40) + ":1\r\n",
	} {
		f.Add([]byte(s))
	}
	lim := DefaultLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Frame(data, lim)
		switch {
		case n < 0 || n > len(data):
			t.Fatalf("Frame = %d for %d bytes", n, len(data))
		case err != nil && (n != 0 || !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrTooLarge)):
			t.Fatalf("Frame = %d, %v", n, err)
		case n == 0:
			return
		}
		if m, err := Frame(data[:n], lim); m != n || err != nil {
			t.Fatalf("Frame of the framed bytes = %d, %v; want %d", m, err, n)
		}
		if m, err := Frame(data[:n-1], lim); m != 0 || err != nil {
			t.Fatalf("Frame of all but the last byte = %d, %v; want 0, nil", m, err)
		}
		want, m, err := tresp.NewReader(bytes.NewReader(data[:n])).ReadValue()
		if err != nil || m != n {
			t.Fatalf("tidwall/resp on %q: consumed %d, %v; Frame said %d", data[:n], m, err, n)
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), max(16, n))
		got, err := ReadValue(br, lim)
		if err != nil || !got.Equals(want) {
			t.Fatalf("ReadValue = %v, %v; want %v", got, err, want)
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, data[n:]) {
			t.Fatalf("ReadValue left %q; want %q", rest, data[n:])
		}
	})
}

// FuzzScanner checks that where a stream is split never changes what the
// Scanner reports, and that commands tile the stream.
func FuzzScanner(f *testing.F) {
	seeds := []string{
		pingCmd + getackCmd, "\n\r\n*0\r\n*-1\r\n" + pingCmd, "*3\r\n$3\r\nSET\r\n$40\r\n" + strings.Repeat("k", 40) + "\r\n$0\r\n\r\n",
		"PING\r\n", "*1\r\n$1\r\nxy\r\n", "*1\r\n$01\r\n", "*1048577\r\n", "*1\r\n$536870913\r\n", "*-0\r\n",
		"*2\r\n$1\r\nx\r\n*1\r\n", "\rX", "*1\r\n$1001\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint(i*7))
	}
	lim := Limits{MaxBulkLen: 1000, MaxArrayLen: 100}
	f.Fuzz(func(t *testing.T, data []byte, cut uint) {
		cut %= uint(len(data) + 1)
		const start = 7
		whole := NewScanner(start, lim)
		a, errA := feedCuts(whole, data)
		split := NewScanner(start, lim)
		b, errB := feedCuts(split, data, int(cut))
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("whole: %+v\nsplit at %d: %+v", a, cut, b)
		}
		if (errA == nil) != (errB == nil) || errA != nil && errA.Error() != errB.Error() {
			t.Fatalf("whole: %v; split at %d: %v", errA, cut, errB)
		}
		if whole.Boundary() != split.Boundary() || whole.Offset() != split.Offset() {
			t.Fatalf("whole: %d/%d; split: %d/%d", whole.Boundary(), whole.Offset(), split.Boundary(), split.Offset())
		}
		if errA != nil && !errors.Is(errA, ErrProtocol) && !errors.Is(errA, ErrTooLarge) {
			t.Fatalf("error %v wraps neither ErrProtocol nor ErrTooLarge", errA)
		}
		if errA == nil && whole.Offset() != start+int64(len(data)) {
			t.Fatalf("Offset %d after %d bytes", whole.Offset(), len(data))
		}
		next := int64(start)
		for _, c := range a {
			if c.Start != next || c.End < c.Start || c.Argc < 0 {
				t.Fatalf("command %+v does not follow offset %d", c, next-1)
			}
			next = c.End + 1
			checkAgainstFrame(t, data[c.Start-start:c.End+1-start], c, lim)
		}
		if whole.Boundary() != next-1 {
			t.Fatalf("Boundary %d; last command ends at %d", whole.Boundary(), next-1)
		}
	})
}

// FuzzPayload feeds arbitrary wire bytes to ReadPayloadHeader and CopyPayload,
// then builds valid payloads in both framings around rdb and checks they come
// back intact, with what follows left in the reader.
func FuzzPayload(f *testing.F) {
	f.Add([]byte("\n\n$5\r\nREDIS*1\r\n"), []byte("REDIS0011"), uint64(1))
	f.Add([]byte("$EOF:"+testMark+"\r\nabc"+testMark+pingCmd), []byte(""), uint64(2))
	f.Add([]byte("$EOF:"+testMark+"\r\n"+testMark[:20]), []byte(testMark[:39]), uint64(3))
	f.Add([]byte("-ERR no\r\n"), []byte("x"), uint64(4))
	f.Add([]byte("$0\r\n"), []byte(strings.Repeat("z", 300)), uint64(5))
	f.Add([]byte("$EOF:short\r\n"), []byte(testMark+testMark), uint64(6))
	f.Add([]byte("$99999999999999999999\r\n"), []byte("\x00"), uint64(7))
	f.Fuzz(func(t *testing.T, wire, rdb []byte, seed uint64) {
		size := 64 + int(seed%200) // room for the 47-byte "$EOF:" line
		chunk := 1 + int(seed/200%100)

		// Arbitrary input: no panic, and what was written is what the wire held.
		br := bufio.NewReaderSize(newChunkReader(wire, seed, chunk), size)
		if h, err := ReadPayloadHeader(br, DefaultLimits(), nil); err == nil {
			var dst bytes.Buffer
			n, err := CopyPayload(&dst, br, h)
			if n != int64(dst.Len()) || n < 0 || !h.Marked() && n > h.Len {
				t.Fatalf("CopyPayload(%+v) = %d, %v with %d bytes written", h, n, err, dst.Len())
			}
			if err == nil {
				rest, _ := io.ReadAll(br)
				end := len(wire) - len(rest) // payload end in wire
				if h.Marked() {
					if end < markLen || string(wire[end-markLen:end]) != h.Mark || !bytes.HasSuffix(wire[:end-markLen], dst.Bytes()) {
						t.Fatalf("marked payload %q does not end the wire %q at %d", dst.Bytes(), wire, end)
					}
				} else if n != h.Len || !bytes.HasSuffix(wire[:end], dst.Bytes()) {
					t.Fatalf("payload %q does not end the wire %q at %d", dst.Bytes(), wire, end)
				}
			}
		}

		// Built input, both framings.
		const tail = pingCmd
		for _, h := range []PayloadHeader{{Len: int64(len(rdb))}, {Len: -1, Mark: testMark}} {
			var w []byte
			w = append(w, strings.Repeat("\n", int(seed%3))...)
			w = AppendPayloadHeader(w, h)
			w = append(w, rdb...)
			if h.Marked() {
				w = append(w, testMark...)
				if bytes.Index(w[len(w)-len(rdb)-markLen:], []byte(testMark)) != len(rdb) {
					continue // the mark occurs inside the RDB: the payload ends there, as in Redis
				}
			}
			w = append(w, tail...)
			br := bufio.NewReaderSize(newChunkReader(w, seed, chunk), size)
			got, err := ReadPayloadHeader(br, DefaultLimits(), nil)
			if err != nil || got != h {
				t.Fatalf("ReadPayloadHeader = %+v, %v; want %+v", got, err, h)
			}
			var dst bytes.Buffer
			if n, err := CopyPayload(&dst, br, got); err != nil || n != int64(len(rdb)) || !bytes.Equal(dst.Bytes(), rdb) {
				t.Fatalf("marked=%v: CopyPayload = %d, %v, %q; want %q", h.Marked(), n, err, dst.Bytes(), rdb)
			}
			if rest, _ := io.ReadAll(br); string(rest) != tail {
				t.Fatalf("marked=%v: left %q; want %q", h.Marked(), rest, tail)
			}
		}
	})
}

// checkAgainstFrame cross-checks a multibulk command found by the Scanner with
// the independent Frame parser and with tidwall/resp.
func checkAgainstFrame(t *testing.T, raw []byte, c Command, lim Limits) {
	t.Helper()
	if raw[0] != '*' || raw[1] == '-' { // empty lines and "*-n" are Scanner-only commands
		if c.Argc != 0 {
			t.Fatalf("%q: Argc %d; want 0", raw, c.Argc)
		}
		return
	}
	if n, err := Frame(raw, lim); n != len(raw) || err != nil {
		t.Fatalf("Scanner found a %d-byte command %q; Frame says %d, %v", len(raw), raw, n, err)
	}
	v, _, err := tresp.NewReader(bytes.NewReader(raw)).ReadValue()
	if err != nil || len(v.Array()) != c.Argc {
		t.Fatalf("%q: tidwall/resp reads %d arguments, %v; Scanner %d", raw, len(v.Array()), err, c.Argc)
	}
	for i := 0; i < min(2, c.Argc); i++ {
		arg := v.Array()[i].Bytes()
		if !bytes.Equal(c.Args[i], arg[:min(len(arg), argKeep)]) {
			t.Fatalf("%q: argument %d kept as %q", raw, i, c.Args[i])
		}
	}
}
