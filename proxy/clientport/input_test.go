package clientport

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/redcon"
	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
	"github.com/psync-proxy/psync-proxy/resp"
)

func testInputLimits(t *testing.T) *inputLimits {
	return &inputLimits{maxBulk: 64 << 10, maxQuery: 1 << 20, log: zaptest.NewLogger(t).Sugar(), overflow: new(atomic.Int64)}
}

// framedPipe is a downstream connection over net.Pipe: the test writes to client, redcon
// reads through the framing clientConn.
type framedPipe struct {
	client net.Conn
	tc     *clientConn
	rd     *redcon.Reader
	asked  *maxRead // the largest read redcon's buffer asked for
}

func newFramedPipe(t *testing.T, lim *inputLimits, authed bool) *framedPipe {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	tc := &clientConn{Conn: conn.New(b), in: clientInput{lim: lim}}
	tc.in.authed.Store(authed)
	asked := &maxRead{r: tc}
	return &framedPipe{client: a, tc: tc, rd: redcon.NewReader(asked), asked: asked}
}

// maxRead records the largest buffer a Read was given: how far redcon's buffer has grown.
type maxRead struct {
	r   io.Reader
	max int
}

func (m *maxRead) Read(p []byte) (int, error) {
	m.max = max(m.max, len(p))
	return m.r.Read(p)
}

// writeChunks writes b in pieces of the given sizes (cycled) and reports the first error.
func writeChunks(w io.Writer, b []byte, sizes []int) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for i := 0; len(b) > 0; i++ {
			n := min(sizes[i%len(sizes)], len(b))
			if _, err := w.Write(b[:n]); err != nil {
				errc <- err
				return
			}
			b = b[n:]
		}
		errc <- nil
	}()
	return errc
}

func encode(args ...string) string { return string(resp.AppendCommand(nil, args...)) }

// TestFramerSplits: whatever the fragmentation, redcon reads the same commands through the
// framer, inline and multibulk, with blank lines, empty and binary arguments.
func TestFramerSplits(t *testing.T) {
	var in strings.Builder
	var want [][]string
	add := func(raw string, args ...string) {
		in.WriteString(raw)
		if args != nil {
			want = append(want, args)
		}
	}
	for i := range 40 {
		n := strconv.Itoa(i)
		add(encode("REPLCONF", "ACK", n), "REPLCONF", "ACK", n)
		add("PING "+n+"\r\n", "PING", n)
		add("\r\n")
		add("   \n")
		add(encode("ECHO", ""), "ECHO", "")
		add(encode("ECHO", "a\r\nb*$\n"+n), "ECHO", "a\r\nb*$\n"+n)
		add("INFO\n", "INFO")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]int, 100)
	for i := range random {
		random[i] = 1 + rng.IntN(300)
	}
	for _, sizes := range [][]int{{1}, {2}, {3, 5}, {7}, {64}, {4096}, {1 << 20}, {1, 100, 13, 4000, 2}, random} {
		p := newFramedPipe(t, testInputLimits(t), true)
		errc := writeChunks(p.client, []byte(in.String()), sizes)
		for i, w := range want {
			cmd, err := p.rd.ReadCommand()
			if err != nil {
				t.Fatalf("chunks %v, command %d: %v", sizes, i, err)
			}
			got := make([]string, len(cmd.Args))
			for j, a := range cmd.Args {
				got[j] = string(a)
			}
			if !slices.Equal(got, w) {
				t.Fatalf("chunks %v, command %d: %q, want %q", sizes, i, got, w)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestFramerRefusals: bad or oversized headers get Redis's reply as soon as they are read,
// before any body, and the read fails so that redcon closes the connection.
func TestFramerRefusals(t *testing.T) {
	big := func(prefix string, n int) string { return prefix + strings.Repeat("1", n) }
	for _, c := range []struct {
		name, in string
		authed   bool
		reply    string
	}{
		{"count over 1M", "*1048577\r\n", true, "invalid multibulk length"},
		{"count 99999999", "*99999999\r\n", true, "invalid multibulk length"},
		{"count huge", "*99999999999999999999999\r\n", true, "invalid multibulk length"},
		{"count zero", "*0\r\n", true, "invalid multibulk length"},
		{"count negative", "*-1\r\n", true, "invalid multibulk length"},
		{"count not a number", "*x\r\n", true, "invalid multibulk length"},
		{"count without CR", "*1\n", true, "invalid multibulk length"},
		{"count before AUTH", "*11\r\n", false, "unauthenticated multibulk length"},
		{"bulk 9999999999", "*1\r\n$9999999999\r\n", true, "invalid bulk length"},
		{"bulk MaxInt64", "*1\r\n$9223372036854775807\r\n", true, "invalid bulk length"},
		{"bulk over proto-max-bulk-len", "*1\r\n$65537\r\n", true, "invalid bulk length"},
		{"bulk negative", "*1\r\n$-1\r\n", true, "invalid bulk length"},
		{"bulk before AUTH", "*2\r\n$4\r\nAUTH\r\n$16385\r\n", false, "unauthenticated bulk length"},
		{"bulk without CRLF", "*1\r\n$1\r\nxyz", true, "invalid bulk length"},
		{"not a bulk", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", true, "expected '$', got 'f'"},
		{"not a bulk, control byte", "*1\r\n\r\n", true, "expected '$', got '?'"},
		{"inline too long", big("A", inlineMaxSize+1), true, "too big inline request"},
		{"inline too many words", "ECHO" + strings.Repeat(" a", inlineMaxSpaces+1) + "\r\n", true, "too big inline request"},
		{"count line too long", big("*", inlineMaxSize+1), true, "too big mbulk count string"},
		{"length line too long", big("*1\r\n$", inlineMaxSize+1), true, "too big bulk count string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newFramedPipe(t, testInputLimits(t), c.authed)
			writeChunks(p.client, []byte(c.in), []int{4096})
			errc := make(chan error, 1)
			go func() {
				_, err := p.rd.ReadCommand()
				errc <- err
			}()
			p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(p.client).ReadString('\n')
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if want := "-ERR Protocol error: " + c.reply + "\r\n"; line != want {
				t.Fatalf("reply %q, want %q", line, want)
			}
			var ie *inputError
			if err := <-errc; !errors.As(err, &ie) {
				t.Fatalf("read error %v, want the refusal", err)
			}
		})
	}
}

// TestFramerAcceptsLimits: what is just within the limits passes, authenticated or not.
func TestFramerAcceptsLimits(t *testing.T) {
	args := []string{"AUTH"}
	for range 9 {
		args = append(args, "x")
	}
	for _, c := range []struct {
		authed bool
		args   []string
	}{
		{false, args},
		{false, []string{"AUTH", strings.Repeat("p", unauthBulkMax)}},
		{true, []string{"ECHO", strings.Repeat("e", 64<<10)}},
		{true, []string{"ECHO" + strings.Repeat(" ", inlineMaxSpaces-1) + "a"}}, // inline, sent as is
	} {
		p := newFramedPipe(t, testInputLimits(t), c.authed)
		raw := encode(c.args...)
		if len(c.args) == 1 {
			raw = c.args[0] + "\r\n"
		}
		errc := writeChunks(p.client, []byte(raw), []int{1000})
		if _, err := p.rd.ReadCommand(); err != nil {
			t.Fatalf("%d arguments, authed %v: %v", len(c.args), c.authed, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestFramerQueryBufferLimit: a command growing past client-query-buffer-limit fails the
// read without a reply (as Redis closes such a client) and is counted.
func TestFramerQueryBufferLimit(t *testing.T) {
	lim := testInputLimits(t)
	lim.maxQuery = 100 << 10
	p := newFramedPipe(t, lim, true)
	var raw strings.Builder
	raw.WriteString("*3\r\n")
	for range 3 {
		raw.WriteString("$60000\r\n" + strings.Repeat("v", 60000) + "\r\n")
	}
	writeChunks(p.client, []byte(raw.String()), []int{1 << 20})
	_, err := p.rd.ReadCommand()
	if !errors.Is(err, errQueryBufLimit) {
		t.Fatalf("read error %v, want the query buffer limit", err)
	}
	if n := lim.overflow.Load(); n != 1 {
		t.Fatalf("counted %d disconnections, want 1", n)
	}
	if p.asked.max > 4*int(lim.maxQuery) {
		t.Fatalf("redcon's buffer grew to %d bytes for a limit of %d", p.asked.max, lim.maxQuery)
	}
}

// misaligned writes commands so that no write ends on a command boundary: each carries the
// rest of one command and the first byte of the next.
func misaligned(cmds []string) [][]byte {
	var out [][]byte
	carry := ""
	for _, c := range cmds {
		out = append(out, []byte(carry+c[:len(c)-1]))
		carry = c[len(c)-1:]
	}
	return append(out, []byte(carry))
}

// TestFramerBoundsPipelines: pipelined commands that never leave redcon's buffer empty make a
// bare redcon Reader double its buffer without bound, even though every command is small and
// complete; through the framer it stays at its first size.
func TestFramerBoundsPipelines(t *testing.T) {
	var cmds []string
	for i := 0; i < 40000; i++ {
		cmds = append(cmds, encode("REPLCONF", "ACK", strconv.Itoa(i)))
	}
	run := func(rd *redcon.Reader, w io.Writer) {
		errc := make(chan error, 1)
		go func() {
			for _, b := range misaligned(cmds) {
				if _, err := w.Write(b); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for i := range cmds {
			cmd, err := rd.ReadCommand()
			if err != nil || string(cmd.Args[2]) != strconv.Itoa(i) {
				t.Fatalf("command %d: %q, %v", i, cmd.Args, err)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	bare := &maxRead{r: b}
	run(redcon.NewReader(bare), a)

	p := newFramedPipe(t, testInputLimits(t), true)
	run(p.rd, p.client)
	t.Logf("%d pipelined commands: redcon's buffer reached %d bytes bare, %d framed", len(cmds), bare.max, p.asked.max)
	if bare.max < 256<<10 {
		t.Logf("bare redcon no longer grows its buffer here (%d bytes); the framer may be simplified", bare.max)
	}
	if p.asked.max > 16<<10 {
		t.Fatalf("through the framer redcon's buffer reached %d bytes", p.asked.max)
	}
}

// TestFramerDeadlines: the handshake deadline ends a silent connection's read, and a client
// that does not read its replies has its write timed out by the same deadline.
func TestFramerDeadlines(t *testing.T) {
	p := newFramedPipe(t, testInputLimits(t), false)
	p.tc.in.handshakeBy.Store(time.Now().Add(100 * time.Millisecond).UnixNano())
	start := time.Now()
	_, err := p.rd.ReadCommand()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
	if _, err := p.tc.Write([]byte("+OK\r\n")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client that does not read: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the deadline took %v", d)
	}
	// Once handshaken, the client timeout applies instead: none here.
	p.tc.commandDone(true)
	if p.tc.in.handshakeBy.Load() != 0 || !p.tc.in.authed.Load() {
		t.Fatal("commandDone(true) left the handshake pending")
	}
	go p.client.Write([]byte("PING\r\n"))
	if cmd, err := p.rd.ReadCommand(); err != nil || string(cmd.Args[0]) != "PING" {
		t.Fatalf("after the handshake: %q, %v", cmd.Args, err)
	}
}
