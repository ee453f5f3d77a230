package downstream

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// Replica states as INFO names them.
const (
	stateWaitBgsave int32 = iota // asked, not answered yet, or answered +FULLRESYNC
	stateSendBulk                // receiving the snapshot
	stateOnline                  // streaming
)

func stateName(st int32) string {
	return [...]string{"wait_bgsave", "send_bulk", "online"}[st]
}

// session is one replica after its PSYNC or SYNC. Its goroutine writes; a second goroutine
// reads ACKs. Neither ever blocks the master link: the stream reaches the replica through its
// own cursor in the shared backlog.
type session struct {
	s *Sessions
	Replica
	addr      string // peer address, for logs
	conn      *conn.Conn
	dc        redcon.DetachedConn
	req       Request
	cancel    context.CancelFunc
	closeOnce sync.Once

	answered bool // got +CONTINUE or +FULLRESYNC in the history generation Sessions knows; guarded by Sessions.mu

	fast fastPath // see fanout.go

	acked chan struct{} // gets a token on each REPLCONF ACK (capacity 1)

	state   atomic.Int32
	ackOff  atomic.Int64
	ackTime atomic.Int64 // unix nanoseconds of the last ACK or newline
}

// disconnect ends the session: its context and its connection. Idempotent.
func (r *session) disconnect() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.conn.Close()
	})
}

func (r *session) status() ReplicaStatus {
	return ReplicaStatus{ID: r.ID, IP: r.IP, Port: r.Port, State: stateName(r.state.Load()),
		Offset: r.ackOff.Load(), LastAck: time.Unix(0, r.ackTime.Load())}
}

func (r *session) timeout() time.Duration { return r.s.cfg.Timeout() }

// serve answers the replica's PSYNC or SYNC and then streams to it until either side ends.
func (r *session) serve(ctx context.Context) {
	log := r.s.log
	// Replies queued for commands pipelined before PSYNC go out first.
	if err := r.dc.Flush(); err != nil {
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer r.disconnect()
		r.readAcks()
	}()
	defer func() {
		r.disconnect()
		<-readerDone
	}()
	what := "PSYNC " + r.req.Replid + " " + strconv.FormatInt(r.req.Offset, 10)
	if !r.req.PSync {
		what = "SYNC"
	}
	log.Infof("Replica %s asks for synchronization (%s)", r.addr, what)
	err := r.sync(ctx)
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, backlog.ErrClosed), errors.Is(err, net.ErrClosed):
		log.Infof("Connection with replica %s lost.", r.addr)
	default:
		log.Warnf("Connection with replica %s lost: %v", r.addr, err)
	}
}

// readAcks consumes what the replica sends: REPLCONF ACK (recorded for INFO) and keep-alive
// newlines (seen by the connection's liveness rule). Anything else would make a Redis master
// reply on the replication link, which Redis 7 punishes by closing the replica; so do we.
func (r *session) readAcks() {
	for {
		cmd, err := r.dc.ReadCommand()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.s.log.Warnf("Disconnecting timedout replica (streaming sync): %s", r.addr)
			}
			return
		}
		r.ackTime.Store(time.Now().UnixNano())
		if len(cmd.Args) >= 3 && strings.EqualFold(string(cmd.Args[0]), "replconf") {
			switch strings.ToLower(string(cmd.Args[1])) {
			case "ack":
				if off, err := strconv.ParseInt(string(cmd.Args[2]), 10, 64); err == nil && off > r.ackOff.Load() {
					r.ackOff.Store(off)
				}
				select {
				case r.acked <- struct{}{}:
				default:
				}
				continue
			case "getack":
				continue
			}
		}
		r.s.log.Warnf("Closing replica %s: it sent '%s' on the replication link", r.addr, truncate(string(cmd.Args[0]), 64))
		return
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// write sends b with a write deadline of repl-timeout, so a replica that stops reading is
// dropped instead of holding its session forever.
func (r *session) write(b []byte) error {
	r.conn.SetWriteDeadline(time.Now().Add(r.timeout()))
	_, err := r.conn.Write(b)
	return err
}

// goOnline starts the stream's liveness rule: Redis drops an online replica silent for
// repl-timeout; a loading replica's newlines count as traffic. SYNC clients never ACK and
// are never timed out.
func (r *session) goOnline() {
	r.ackTime.Store(time.Now().UnixNano())
	r.state.Store(stateOnline)
	if r.req.PSync {
		r.conn.SetIdleTimeout(r.timeout())
	}
}
