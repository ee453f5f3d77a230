package redistest

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
	tresp "github.com/tidwall/resp"
)

// DefaultTimeout is the deadline for each network operation of a Client and
// of Server.Do, and for dialing.
const DefaultTimeout = 10 * time.Second

// ReplyError is a Redis error reply ("-ERR ...", "-LOADING ...") returned as
// a Go error by Server.Do and Client.Do. Match it with errors.As.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// appendCommand appends args as a RESP array of bulk strings. (redistest cannot import resp,
// whose own tests run servers through it.)
func appendCommand(b []byte, args ...string) []byte {
	b = redcon.AppendArray(b, len(args))
	for _, a := range args {
		b = redcon.AppendBulkString(b, a)
	}
	return b
}

// Client is a raw RESP connection for tests that must speak the protocol
// themselves, such as a downstream replica sending PSYNC.
//
// Every Send and Read method sets the connection's deadline to the timeout
// (DefaultTimeout unless changed with SetTimeout) from now. One goroutine may
// read while another writes.
type Client struct {
	conn    net.Conn
	br      *bufio.Reader
	rd      *tresp.Reader
	timeout atomic.Int64 // time.Duration; 0 means no deadline

	wmu sync.Mutex // serializes writes
	buf []byte     // guarded by wmu

	closeOnce sync.Once
}

// Dial connects to addr ("host:port") and Fatals if it cannot. t.Cleanup
// closes the connection.
func Dial(t TB, addr string) *Client {
	t.Helper()
	c, err := dialClient(addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("redistest: dial %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

func dialClient(addr string, timeout time.Duration) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	// tresp.NewReader keeps a *bufio.Reader of 4096 bytes or more as is, so
	// bytes it buffers are also visible through Reader().
	br := bufio.NewReaderSize(conn, 64<<10)
	c := &Client{conn: conn, br: br, rd: tresp.NewReader(br)}
	c.timeout.Store(int64(timeout))
	return c, nil
}

// SetTimeout sets the per-operation deadline; 0 disables deadlines.
func (c *Client) SetTimeout(d time.Duration) { c.timeout.Store(int64(d)) }

func (c *Client) deadline() time.Time {
	d := time.Duration(c.timeout.Load())
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

func (c *Client) armRead() { _ = c.conn.SetReadDeadline(c.deadline()) }

// Send writes one command as a RESP array of bulk strings. It does not read
// the reply. The error can be ignored when a later read would report it.
func (c *Client) Send(args ...string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.buf = appendCommand(c.buf[:0], args...)
	return c.writeLocked(c.buf)
}

// SendRaw writes p as is (inline commands, partial frames, garbage).
func (c *Client) SendRaw(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(p)
}

func (c *Client) writeLocked(p []byte) error {
	_ = c.conn.SetWriteDeadline(c.deadline())
	_, err := c.conn.Write(p)
	return err
}

// ReadValue reads one RESP value. Error replies come back as a value of
// type tresp.Error with a nil error; the error is for I/O and protocol
// failures only. Note that tresp reads a line not starting with a RESP type
// byte (such as a bare "\n" keepalive) as an inline command.
func (c *Client) ReadValue() (tresp.Value, error) {
	c.armRead()
	v, _, err := c.rd.ReadValue()
	return v, err
}

// Do sends one command and reads its reply; an error reply is returned as a
// ReplyError.
func (c *Client) Do(args ...string) (tresp.Value, error) {
	if err := c.Send(args...); err != nil {
		return tresp.Value{}, err
	}
	v, err := c.ReadValue()
	if err != nil {
		return v, err
	}
	if v.Type() == tresp.Error {
		return v, ReplyError(v.String())
	}
	return v, nil
}

// ReadLine reads one line and returns it without its "\n" or "\r\n" (a bare
// "\n" keepalive gives ""). Use it for "+FULLRESYNC <id> <offset>" and for
// the "$<len>" or "$EOF:<mark>" line before an RDB payload.
func (c *Client) ReadLine() (string, error) {
	c.armRead()
	line, err := c.br.ReadString('\n')
	if err != nil {
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// ReadLineSkippingNewlines reads the next non-empty line: a master (or the proxy) sends bare
// "\n" keepalives while a full sync is prepared, before "+FULLRESYNC" and "$<len>".
func (c *Client) ReadLineSkippingNewlines() (string, error) {
	for {
		line, err := c.ReadLine()
		if err != nil || line != "" {
			return line, err
		}
	}
}

// MustReadLineSkippingNewlines is ReadLineSkippingNewlines that Fatals on error.
func (c *Client) MustReadLineSkippingNewlines(t TB) string {
	t.Helper()
	line, err := c.ReadLineSkippingNewlines()
	if err != nil {
		t.Fatalf("redistest: reading a line: %v", err)
	}
	return line
}

// ReadFull reads exactly n bytes (an RDB payload, a slice of the stream).
func (c *Client) ReadFull(n int) ([]byte, error) {
	c.armRead()
	p := make([]byte, n)
	_, err := io.ReadFull(c.br, p)
	return p, err
}

// Reader returns the buffered reader shared with ReadValue and ReadLine.
// Reads through it keep the deadline set by the last Client read; change it
// with Conn().SetReadDeadline.
func (c *Client) Reader() *bufio.Reader { return c.br }

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection; it may be called more than once.
func (c *Client) Close() {
	c.closeOnce.Do(func() { _ = c.conn.Close() })
}
