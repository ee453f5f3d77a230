package resp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

const (
	pingCmd   = "*1\r\n$4\r\nping\r\n"                                // 14 bytes
	getackCmd = "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n" // 37 bytes
)

// cloneCommand copies c out of the callback, Args included.
func cloneCommand(c *Command) Command {
	d := *c
	for i := range d.Args {
		if d.Args[i] != nil {
			d.Args[i] = bytes.Clone(d.Args[i])
		}
	}
	return d
}

// feedCuts feeds data split at the given increasing cut positions and returns
// the commands seen and the first error.
func feedCuts(s *Scanner, data []byte, cuts ...int) ([]Command, error) {
	var cmds []Command
	fn := func(c *Command) { cmds = append(cmds, cloneCommand(c)) }
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		if err := s.Feed(data[prev:cut], fn); err != nil {
			return cmds, err
		}
		prev = cut
	}
	return cmds, nil
}

// scanPieces feeds data in pieces of size n and fails the test on an error.
func scanPieces(t *testing.T, s *Scanner, data []byte, n int) []Command {
	t.Helper()
	var cuts []int
	for c := n; c < len(data); c += n {
		cuts = append(cuts, c)
	}
	cmds, err := feedCuts(s, data, cuts...)
	if err != nil {
		t.Fatalf("Feed: %v", err)
	}
	return cmds
}

func checkFixtureCommands(t *testing.T, cmds []Command) {
	t.Helper()
	if len(cmds) != 2 {
		t.Fatalf("got %d commands; want 2", len(cmds))
	}
	if c := cmds[0]; c.Start != 1 || c.End != 14 || c.Argc != 1 || !c.Is("PING", "") || c.Is("REPLCONF", "GETACK") {
		t.Fatalf("PING = %+v", c)
	}
	if c := cmds[1]; c.Start != 15 || c.End != 51 || c.Argc != 3 || !c.Is("REPLCONF", "GETACK") || !c.Is("replconf", "getack") || c.Is("REPLCONF", "ACK") {
		t.Fatalf("GETACK = %+v", c)
	}
}

func TestScannerFixture(t *testing.T) {
	data := []byte(pingCmd + getackCmd)
	for n := 1; n <= len(data); n++ {
		s := NewScanner(1, DefaultLimits())
		checkFixtureCommands(t, scanPieces(t, s, data, n))
		if s.Boundary() != 51 || s.Offset() != 52 {
			t.Fatalf("pieces of %d: Boundary %d, Offset %d; want 51, 52", n, s.Boundary(), s.Offset())
		}
	}
	for cut := 0; cut <= len(data); cut++ {
		cmds, err := feedCuts(NewScanner(1, DefaultLimits()), data, cut)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		checkFixtureCommands(t, cmds)
	}
}

func TestScannerBoundary(t *testing.T) {
	s := NewScanner(100, DefaultLimits())
	if s.Boundary() != 99 || s.Offset() != 100 {
		t.Fatalf("new scanner: Boundary %d, Offset %d; want 99, 100", s.Boundary(), s.Offset())
	}
	data := []byte(pingCmd + getackCmd)
	if err := s.Feed(data[:20], nil); err != nil {
		t.Fatal(err)
	}
	if s.Boundary() != 113 || s.Offset() != 120 {
		t.Fatalf("mid-command: Boundary %d, Offset %d; want 113, 120", s.Boundary(), s.Offset())
	}
	if err := s.Feed(nil, nil); err != nil || s.Offset() != 120 {
		t.Fatalf("empty Feed: %v, Offset %d", err, s.Offset())
	}
	var inside []int64
	if err := s.Feed(data[20:], func(c *Command) { inside = append(inside, s.Boundary(), s.Offset()) }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(inside) != "[150 151]" || s.Boundary() != 150 {
		t.Fatalf("Boundary/Offset inside the callback %v, Boundary after %d", inside, s.Boundary())
	}
}

func TestScannerEmptyCommands(t *testing.T) {
	data := "\n" + pingCmd + "\r\n\n*0\r\n*-1\r\n" + pingCmd + "\n"
	type span struct {
		start, end int64
		argc       int
	}
	want := []span{{1, 1, 0}, {2, 15, 1}, {16, 17, 0}, {18, 18, 0}, {19, 22, 0}, {23, 27, 0}, {28, 41, 1}, {42, 42, 0}}
	for n := 1; n <= len(data); n++ {
		cmds := scanPieces(t, NewScanner(1, DefaultLimits()), []byte(data), n)
		var got []span
		for _, c := range cmds {
			got = append(got, span{c.Start, c.End, c.Argc})
			if c.Argc == 0 && (c.Args[0] != nil || c.Args[1] != nil || c.Is("PING", "")) {
				t.Fatalf("empty command with arguments: %+v", c)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pieces of %d: %v; want %v", n, got, want)
		}
	}
}

func TestScannerLongValue(t *testing.T) {
	val := bytes.Repeat([]byte("0123456789"), 200_000) // 2 MB
	name := strings.Repeat("k", 40)
	var data []byte
	data = fmt.Appendf(data, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(name), name, len(val), val)
	data = append(data, getackCmd...)
	data = fmt.Appendf(data, "*2\r\n$%d\r\n%s\r\n$3\r\nGET\r\n", len(name), name)

	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		var cuts []int
		for c := rng.IntN(70000); c < len(data); c += 1 + rng.IntN(70000) {
			cuts = append(cuts, c)
		}
		cmds, err := feedCuts(NewScanner(0, DefaultLimits()), data, cuts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) != 3 {
			t.Fatalf("got %d commands; want 3", len(cmds))
		}
		set := cmds[0]
		if set.Start != 0 || set.Argc != 3 || !set.Is("set", "") || set.Is("SET", name) {
			t.Fatalf("SET = %+v", set)
		}
		if string(set.Args[1]) != name[:32] {
			t.Fatalf("SET key kept as %q; want its first 32 bytes", set.Args[1])
		}
		if g := cmds[1]; g.Start != set.End+1 || g.End != g.Start+36 || !g.Is("REPLCONF", "GETACK") {
			t.Fatalf("GETACK = %+v after SET ending at %d", g, set.End)
		}
		if last := cmds[2]; last.End != int64(len(data)-1) || last.Is(name, "GET") || last.Argc != 2 {
			t.Fatalf("last = %+v", last)
		}
	}
}

func TestCommandIs(t *testing.T) {
	exact32 := strings.Repeat("a", 32)
	tests := []struct {
		cmd       string
		name, sub string
		want      bool
	}{
		{"*1\r\n$4\r\nPING\r\n", "ping", "", true},
		{"*1\r\n$4\r\nPING\r\n", "PING", "x", false},
		{"*1\r\n$4\r\nPING\r\n", "PIN", "", false},
		{"*2\r\n$5\r\nMULTI\r\n$0\r\n\r\n", "multi", "", true},
		{"*2\r\n$8\r\nreplconf\r\n$6\r\nGetAck\r\n", "REPLCONF", "GETACK", true},
		{"*2\r\n$8\r\nreplconf\r\n$3\r\nack\r\n", "REPLCONF", "GETACK", false},
		{"*1\r\n$32\r\n" + exact32 + "\r\n", exact32, "", true},
		{"*1\r\n$33\r\n" + exact32 + "b\r\n", exact32, "", false},
		{"*1\r\n$33\r\n" + exact32 + "b\r\n", exact32 + "b", "", false},
		{"*2\r\n$1\r\n\xc3\r\n$1\r\n[\r\n", "\xe3", "{", false}, // ASCII folding only
		{"*1\r\n$1\r\n@\r\n", "`", "", false},
	}
	for _, tt := range tests {
		var got []bool
		err := NewScanner(0, DefaultLimits()).Feed([]byte(tt.cmd), func(c *Command) { got = append(got, c.Is(tt.name, tt.sub)) })
		if err != nil || len(got) != 1 || got[0] != tt.want {
			t.Fatalf("%q Is(%q, %q) = %v, %v; want %v", tt.cmd, tt.name, tt.sub, got, err, tt.want)
		}
	}
}

func TestScannerErrors(t *testing.T) {
	tests := []struct {
		in     string
		want   error
		offset int64 // of the offending byte, with the stream starting at 1000
	}{
		{"PING\r\n", ErrProtocol, 1000},
		{pingCmd + " \n", ErrProtocol, 1014},
		{"\rX", ErrProtocol, 1001},
		{"+OK\r\n", ErrProtocol, 1000},
		{"*\r\n", ErrProtocol, 1001},
		{"*1\n", ErrProtocol, 1002},
		{"*01\r\n", ErrProtocol, 1002},
		{"*-0\r\n", ErrProtocol, 1002},
		{"*--1\r\n", ErrProtocol, 1002},
		{"*+1\r\n", ErrProtocol, 1001},
		{"*1x\r\n", ErrProtocol, 1002},
		{"*1\rx", ErrProtocol, 1003},
		{"*-99999999999999999999\r\n", ErrProtocol, 1020},
		{"*1\r\n:1\r\n", ErrProtocol, 1004},
		{"*1\r\n$-1\r\n", ErrProtocol, 1005},
		{"*1\r\n$\r\n", ErrProtocol, 1005},
		{"*1\r\n$01\r\nx\r\n", ErrProtocol, 1006},
		{"*1\r\n$1\r\nxy\r\n", ErrProtocol, 1009},
		{"*1\r\n$1\r\nx\rx", ErrProtocol, 1010},
		{"*1\r\n$1\nx\r\n", ErrProtocol, 1006},
		{"*2\r\n$1\r\nx\r\n*1\r\n", ErrProtocol, 1011},
		{"*99999999\r\n", ErrTooLarge, 1007},
		{"*1048577\r\n", ErrTooLarge, 1007},
		{"*1\r\n$536870913\r\n", ErrTooLarge, 1013},
		{"*1\r\n$99999999999999999999\r\n", ErrTooLarge, 1013},
	}
	for _, tt := range tests {
		for n := 1; n <= len(tt.in); n++ {
			s := NewScanner(1000, DefaultLimits())
			var cuts []int
			for c := n; c < len(tt.in); c += n {
				cuts = append(cuts, c)
			}
			_, err := feedCuts(s, []byte(tt.in), cuts...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("%q in pieces of %d: %v; want %v", tt.in, n, err, tt.want)
			}
			if s.Offset() != tt.offset || !strings.Contains(err.Error(), fmt.Sprintf("offset %d:", tt.offset)) {
				t.Fatalf("%q in pieces of %d: Offset %d, error %q; want offset %d", tt.in, n, s.Offset(), err, tt.offset)
			}
			if again := s.Feed([]byte(pingCmd), nil); again != err {
				t.Fatalf("error not sticky: %v, then %v", err, again)
			}
		}
	}
}

func TestScannerLimits(t *testing.T) {
	lim := Limits{MaxBulkLen: 100, MaxArrayLen: 3}
	ok := "*3\r\n$100\r\n" + strings.Repeat("x", 100) + "\r\n$0\r\n\r\n$1\r\ny\r\n"
	if _, err := feedCuts(NewScanner(0, lim), []byte(ok)); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	for _, in := range []string{"*4\r\n", "*1\r\n$101\r\n"} {
		if _, err := feedCuts(NewScanner(0, lim), []byte(in)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%q over %+v: %v; want ErrTooLarge", in, lim, err)
		}
	}
}

func TestScannerAllocs(t *testing.T) {
	data, _ := benchStream(1<<20, 20)
	s := NewScanner(1, DefaultLimits())
	var acks int
	fn := func(c *Command) {
		if c.Is("REPLCONF", "GETACK") {
			acks++
		}
	}
	allocs := testing.AllocsPerRun(5, func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 64<<10)
			if err := s.Feed(p[:n], fn); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
	})
	if allocs != 0 {
		t.Fatalf("Feed allocates %v times per MiB", allocs)
	}
	if acks == 0 {
		t.Fatal("no GETACK seen")
	}
}

// benchStream builds about size bytes of SET commands, with a 16 KiB value
// in one command out of largeEvery (never when 0, always when 1) and 100-byte
// values otherwise, plus a PING and a GETACK every 1000 commands. It returns
// the stream and its number of commands.
func benchStream(size, largeEvery int) ([]byte, int) {
	small := bytes.Repeat([]byte("v"), 100)
	large := bytes.Repeat([]byte("V"), 16<<10)
	data := make([]byte, 0, size+(17<<10))
	cmds := 0
	for i := 0; len(data) < size; i++ {
		val := small
		if largeEvery > 0 && i%largeEvery == largeEvery-1 {
			val = large
		}
		key := fmt.Sprintf("key:%012d", i)
		data = fmt.Appendf(data, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, len(val))
		data = append(data, val...)
		data = append(data, '\r', '\n')
		cmds++
		if i%1000 == 999 {
			data = append(data, pingCmd+getackCmd...)
			cmds += 2
		}
	}
	return data, cmds
}

type benchStreamKind struct {
	name       string
	largeEvery int
}

func benchStreams() []benchStreamKind {
	return []benchStreamKind{
		{"100B", 0},
		{"mixed", 20}, // 1 in 20 values is 16 KiB: 85% of the bytes
		{"16KiB", 1},
	}
}

// BenchmarkScanner feeds 64 MiB streams of SETs in 64 KiB pieces, looking
// for GETACK in every command; compare with BenchmarkCopy, a plain copy() of
// the same pieces.
func BenchmarkScanner(b *testing.B) {
	for _, bs := range benchStreams() {
		b.Run(bs.name, func(b *testing.B) {
			data, cmds := benchStream(64<<20, bs.largeEvery)
			s := NewScanner(1, DefaultLimits())
			var acks int
			fn := func(c *Command) {
				if c.Is("REPLCONF", "GETACK") {
					acks++
				}
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				for p := data; len(p) > 0; {
					n := min(len(p), 64<<10)
					if err := s.Feed(p[:n], fn); err != nil {
						b.Fatal(err)
					}
					p = p[n:]
				}
			}
			if acks == 0 {
				b.Fatal("no GETACK seen")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cmds), "ns/cmd")
		})
	}
}

func BenchmarkCopy(b *testing.B) {
	for _, bs := range benchStreams() {
		b.Run(bs.name, func(b *testing.B) {
			data, _ := benchStream(64<<20, bs.largeEvery)
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				for p := data; len(p) > 0; {
					n := copy(buf, p)
					p = p[n:]
				}
			}
		})
	}
}
