package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	tresp "github.com/tidwall/resp"
	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/proxy/history"
	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
	"github.com/psync-proxy/psync-proxy/resp"
)

// dial connects to the master, over TLS when tlsCfg is set, within timeout.
func dial(ctx context.Context, m Master, tlsCfg *tls.Config, timeout time.Duration) (*conn.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to master: %w", err)
	}
	if tlsCfg == nil {
		return conn.New(raw), nil
	}
	if host, _, _ := net.SplitHostPort(m.Addr); net.ParseIP(host) == nil {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.ServerName = host // SNI only: the name is not verified
	}
	tc := tls.Client(raw, tlsCfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with master: %w", err)
	}
	return conn.New(tc), nil
}

// session is one connection to the master, the link's or a refresh's: the replica
// handshake, PSYNC and the RDB that may follow.
type session struct {
	c   *conn.Conn
	br  *bufio.Reader
	log *zap.SugaredLogger
	lim resp.Limits
}

func newSession(c *conn.Conn, log *zap.SugaredLogger, lim resp.Limits) *session {
	return &session{c: c, br: bufio.NewReaderSize(c, 64<<10), log: log, lim: lim}
}

// handshake sends PING, then AUTH, REPLCONF listening-port, REPLCONF capa and, when version
// is set, REPLCONF version (announce.go) in one write, and reads every reply before PSYNC (a
// master refuses PSYNC with replies still pending).
func (s *session) handshake(m Master, announcePort int, version string) error {
	if err := s.send("PING"); err != nil {
		return err
	}
	v, err := s.reply()
	if err != nil {
		return fmt.Errorf("reading PING reply: %w", err)
	}
	if v.Type() == tresp.Error {
		msg := v.Error().Error()
		if !strings.HasPrefix(msg, "NOAUTH") && !strings.HasPrefix(msg, "NOPERM") &&
			!strings.HasPrefix(msg, "ERR operation not permitted") {
			s.log.Warnf("Error reply to PING from master: '%s'", replyLine(v))
			return fmt.Errorf("error reply to PING from master: '%s'", replyLine(v))
		}
	}
	s.log.Info("Master replied to PING, replication can continue...")

	var b []byte
	sentAuth := m.Password != ""
	if sentAuth {
		if m.User != "" {
			b = resp.AppendCommand(b, "AUTH", m.User, m.Password)
		} else {
			b = resp.AppendCommand(b, "AUTH", m.Password)
		}
	}
	b = resp.AppendCommand(b, "REPLCONF", "listening-port", strconv.Itoa(announcePort))
	b = resp.AppendCommand(b, "REPLCONF", "capa", "eof", "capa", "psync2")
	replconfs := []string{"listening-port", "capa"}
	if version != "" {
		b = resp.AppendCommand(b, "REPLCONF", "version", version)
		replconfs = append(replconfs, "version")
	}
	if _, err := s.c.Write(b); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	if sentAuth {
		v, err := s.reply()
		if err != nil {
			return fmt.Errorf("reading AUTH reply: %w", err)
		}
		if v.Type() == tresp.Error {
			s.log.Warnf("Unable to AUTH to MASTER: %s", replyLine(v))
			return fmt.Errorf("unable to AUTH to MASTER: %s", replyLine(v))
		}
	}
	for _, what := range replconfs {
		v, err := s.reply()
		if err != nil {
			return fmt.Errorf("reading REPLCONF %s reply: %w", what, err)
		}
		if v.Type() == tresp.Error {
			s.log.Infof("(Non critical) Master does not understand REPLCONF %s: %s", what, replyLine(v))
		}
	}
	return nil
}

// send writes one command with a write deadline.
func (s *session) send(args ...string) error {
	s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.c.Write(resp.AppendCommand(nil, args...)); err != nil {
		return fmt.Errorf("write %s: %w", args[0], err)
	}
	return nil
}

// reply reads one handshake reply, bounded by the session's limits.
func (s *session) reply() (tresp.Value, error) {
	v, err := resp.ReadValue(s.br, s.lim)
	if err == nil && v.Type() != tresp.SimpleString && v.Type() != tresp.Error {
		err = fmt.Errorf("unexpected %s reply from master", v.Type())
	}
	return v, err
}

// psyncReply reads the answer to PSYNC, after the keep-alive newlines a master may send
// while it prepares the RDB.
func (s *session) psyncReply() (tresp.Value, error) {
	if err := resp.SkipNewlines(s.br, nil); err != nil {
		return tresp.Value{}, fmt.Errorf("reading PSYNC reply: %w", err)
	}
	v, err := s.reply()
	if err != nil {
		return v, fmt.Errorf("reading PSYNC reply: %w", err)
	}
	return v, nil
}

// payloadHeader reads the line before the RDB: $<len> or $EOF:<mark>.
func (s *session) payloadHeader() (resp.PayloadHeader, error) {
	hdr, err := resp.ReadPayloadHeader(s.br, s.lim, nil)
	var rerr *resp.ReplyError
	if errors.As(err, &rerr) {
		return hdr, fmt.Errorf("MASTER aborted replication with an error: %s", rerr.Msg)
	}
	if err != nil {
		return hdr, fmt.Errorf("reading RDB payload header: %w", err)
	}
	return hdr, nil
}

// receive copies the RDB payload into w, through dst (w itself, or a writer counting
// progress), and checks it into a snapshot of replid:off. Nothing is kept when it fails.
func (s *session) receive(h *history.History, w *history.Writer, dst io.Writer, hdr resp.PayloadHeader,
	replid string, off int64) (*history.Snapshot, int64, error) {
	n, err := resp.CopyPayload(dst, s.br, hdr)
	if err != nil {
		w.Abort()
		if errors.Is(err, resp.ErrBadRDB) {
			h.NoteBadRDB()
		} else {
			s.log.Warnf("I/O error trying to sync with MASTER: %v", err)
		}
		return nil, n, fmt.Errorf("receiving RDB from master (%d bytes so far), nothing installed: %w", n, err)
	}
	snap, err := w.Finish(replid, off)
	if errors.Is(err, resp.ErrBadRDB) {
		h.NoteBadRDB()
		return nil, n, fmt.Errorf("discarding the RDB received from master, it fails its check: %w", err)
	}
	if err != nil {
		return nil, n, fmt.Errorf("saving snapshot: %w", err)
	}
	if w := snap.NewerFormat(); w != "" {
		s.log.Warnf("The RDB received from master for %s:%d: %s", replid, off, w)
	}
	return snap, n, nil
}

// replyLine is a reply as its line reads on the wire, "-ERR ..." or "+OK", for logs.
func replyLine(v tresp.Value) string {
	if v.Type() == tresp.Error {
		return "-" + v.Error().Error()
	}
	return "+" + v.String()
}

// The kinds of PSYNC replies that end an attempt (see parsePsyncReply).
var (
	errPsyncLater      = errors.New("master is currently unable to PSYNC") // -LOADING, -NOMASTERLINK
	errPsyncRefused    = errors.New("master does not support PSYNC or is in error state")
	errPsyncUnexpected = errors.New("unexpected reply to PSYNC from master")
)

// psyncAnswer is an accepted PSYNC: +FULLRESYNC <replid> <offset>, or +CONTINUE [<replid>]
// (replid "" when the master did not name one).
type psyncAnswer struct {
	full   bool
	replid string
	offset int64
}

// parsePsyncReply classifies the master's reply to PSYNC as Redis's
// slaveTryPartialResynchronization does. Errors wrap errPsyncLater, errPsyncRefused or
// errPsyncUnexpected, or say what is wrong with a +FULLRESYNC line.
func parsePsyncReply(v tresp.Value) (psyncAnswer, error) {
	if v.Type() == tresp.Error {
		msg := v.Error().Error()
		if strings.HasPrefix(msg, "NOMASTERLINK") || strings.HasPrefix(msg, "LOADING") {
			return psyncAnswer{}, fmt.Errorf("%w: -%s", errPsyncLater, msg)
		}
		return psyncAnswer{}, fmt.Errorf("%w: -%s", errPsyncRefused, msg)
	}
	line := v.String()
	switch {
	case strings.HasPrefix(line, "FULLRESYNC"):
		id, off, err := parseFullResync(line)
		return psyncAnswer{full: true, replid: id, offset: off}, err
	case strings.HasPrefix(line, "CONTINUE"):
		id := strings.TrimSpace(strings.TrimPrefix(line, "CONTINUE"))
		if len(id) != 40 {
			id = "" // as Redis: anything but a 40-character ID keeps the current one
		}
		return psyncAnswer{replid: id}, nil
	}
	return psyncAnswer{}, fmt.Errorf("%w: %q", errPsyncUnexpected, line)
}

// parseFullResync reads "+FULLRESYNC <replid> <offset>".
func parseFullResync(line string) (string, int64, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "FULLRESYNC" || len(f[1]) != 40 {
		return "", 0, fmt.Errorf("master replied with wrong +FULLRESYNC syntax: %q", line)
	}
	off, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || off < 0 {
		return "", 0, fmt.Errorf("master replied with wrong +FULLRESYNC offset: %q", line)
	}
	return f[1], off, nil
}
