package sentinel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	tresp "github.com/tidwall/resp"

	"github.com/psync-proxy/psync-proxy/resp"
)

// Bounds on what a Sentinel can make us buffer. Its longest reply is SENTINEL
// MASTER: about 40 short fields, plus script paths when configured. A
// +switch-master payload is under Redis's LOG_MAX_LEN (1024). Every reply must
// fit the read buffer, so a garbage reply costs at most readBufSize per link.
const readBufSize = 64 << 10

var replyLimits = resp.Limits{
	MaxBulkLen:  16 << 10,
	MaxArrayLen: 256,
	MaxLineLen:  4 << 10,
}

// errUnknownMaster is the null reply of GET-MASTER-ADDR-BY-NAME: the Sentinel
// does not monitor a master of that name.
var errUnknownMaster = errors.New("the Sentinel does not know this master (null reply)")

// conn is one connection to a Sentinel.
type conn struct {
	nc      net.Conn
	br      *bufio.Reader
	timeout time.Duration
	stop    func() bool // ends the context.AfterFunc that closes nc
	buf     []byte
}

// dial connects to a Sentinel and authenticates if configured. The connection
// is closed when ctx ends, so a blocked read returns at once.
func (w *Watcher) dial(ctx context.Context, addr string) (*conn, error) {
	d := net.Dialer{Timeout: w.cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, readBufSize), timeout: w.cfg.Timeout}
	c.stop = context.AfterFunc(ctx, func() { _ = nc.Close() })
	if w.cfg.Password == "" {
		return c, nil
	}
	args := []string{"AUTH", w.cfg.Password}
	if w.cfg.User != "" {
		args = []string{"AUTH", w.cfg.User, w.cfg.Password}
	}
	if err := c.send(args); err != nil {
		c.close()
		return nil, err
	}
	v, err := c.read(c.timeout)
	if err == nil && v.Type() == tresp.Error {
		err = fmt.Errorf("AUTH: %s", v.String())
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *conn) close() {
	c.stop()
	_ = c.nc.Close()
}

// send writes commands, pipelined, in one write.
func (c *conn) send(cmds ...[]string) error {
	c.buf = c.buf[:0]
	for _, args := range cmds {
		c.buf = resp.AppendCommand(c.buf, args...)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(c.buf); err != nil {
		return fmt.Errorf("send %s: %w", cmds[0][0], err)
	}
	return nil
}

// read reads one reply, waiting at most d. Error replies are values, not errors.
func (c *conn) read(d time.Duration) (tresp.Value, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	return resp.ReadValue(c.br, replyLimits)
}

// answer is one Sentinel's view of the master.
type answer struct {
	addr  string // host:port
	epoch int64  // config-epoch, -1 when the Sentinel did not say
}

// ask asks one Sentinel where the master is, on a connection of its own.
// SENTINEL MASTER goes first, in the same write: Sentinel runs both commands
// back to back, and if a failover came between them, the epoch read is the older
// one, which errs on the side of not moving.
func (w *Watcher) ask(ctx context.Context, sentinel string) (answer, error) {
	c, err := w.dial(ctx, sentinel)
	if err != nil {
		return answer{}, err
	}
	defer c.close()
	name := w.cfg.MasterName
	if err := c.send([]string{"SENTINEL", "MASTER", name}, []string{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", name}); err != nil {
		return answer{}, err
	}
	mv, err := c.read(c.timeout)
	if err != nil {
		return answer{}, fmt.Errorf("SENTINEL MASTER: %w", err)
	}
	av, err := c.read(c.timeout)
	if err != nil {
		return answer{}, fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	addr, err := parseMasterAddr(av)
	if err != nil {
		return answer{}, fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s: %w", name, err)
	}
	epoch, err := parseConfigEpoch(mv)
	if err != nil {
		w.noEpochOnce.Do(func() {
			w.log.Warnf("Sentinel %s does not give the config epoch of master %s (SENTINEL MASTER: %v): without epochs, a Sentinel that has not yet learned of a failover can move us back to the old master",
				sentinel, name, err)
		})
		epoch = -1
	}
	return answer{addr: addr, epoch: epoch}, nil
}

// parseMasterAddr reads the reply to SENTINEL GET-MASTER-ADDR-BY-NAME: an array
// of the ip (or announced host name) and the port, or a null array when the
// Sentinel does not monitor that name.
func parseMasterAddr(v tresp.Value) (string, error) {
	switch {
	case v.Type() == tresp.Error:
		return "", fmt.Errorf("error reply: %s", v.String())
	case v.IsNull():
		return "", errUnknownMaster
	case v.Type() != tresp.Array || len(v.Array()) != 2:
		return "", fmt.Errorf("unexpected reply %s, want [ip, port]", describe(v))
	}
	host, port := v.Array()[0], v.Array()[1]
	if !isText(host) || !isText(port) {
		return "", fmt.Errorf("unexpected reply %s, want [ip, port]", describe(v))
	}
	if err := checkHostPort(host.String(), port.String()); err != nil {
		return "", fmt.Errorf("reply %s: %w", describe(v), err)
	}
	return net.JoinHostPort(host.String(), port.String()), nil
}

// parseConfigEpoch finds config-epoch in the reply to SENTINEL MASTER: a flat
// array of field names and values.
func parseConfigEpoch(v tresp.Value) (int64, error) {
	if v.Type() == tresp.Error {
		return 0, errors.New(v.String())
	}
	fields := v.Array()
	if v.Type() != tresp.Array || v.IsNull() || len(fields)%2 != 0 {
		return 0, fmt.Errorf("unexpected reply %s", describe(v))
	}
	for i := 0; i < len(fields); i += 2 {
		if fields[i].String() != "config-epoch" {
			continue
		}
		n, err := strconv.ParseInt(fields[i+1].String(), 10, 64)
		if err != nil || n < 0 || !isText(fields[i+1]) {
			return 0, fmt.Errorf("bad config-epoch %q", fields[i+1].String())
		}
		return n, nil
	}
	return 0, errors.New("no config-epoch field")
}

// isText reports whether v is a bulk or simple string (not null).
func isText(v tresp.Value) bool {
	return (v.Type() == tresp.BulkString || v.Type() == tresp.SimpleString) && !v.IsNull()
}

// describe shows a reply in a log line, cut short.
func describe(v tresp.Value) string {
	b, _ := v.MarshalRESP()
	s := strconv.Quote(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
