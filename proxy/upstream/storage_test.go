package upstream

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/backlog"
	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
	"github.com/psync-proxy/psync-proxy/resp"
)

// failingBacklog is a Ring that reports a durable offset of its own and, while failing is
// set, fails every Publish with a storage error, as a Disk with a full disk does (the bytes
// stay staged for the next call).
type failingBacklog struct {
	backlog.Backlog
	failing atomic.Bool
	synced  atomic.Int64
	calls   atomic.Int64
}

func (f *failingBacklog) Publish(end int64) ([]byte, error) {
	if f.failing.Load() {
		f.calls.Add(1)
		return nil, fmt.Errorf("%w: write segment: no space left on device", backlog.ErrStorage)
	}
	return f.Backlog.Publish(end)
}

func (f *failingBacklog) Synced() int64 { return f.synced.Load() }

// readAck reads one REPLCONF ACK <off> the proxy sent to the master.
func readAck(t *testing.T, br *bufio.Reader) int64 {
	t.Helper()
	var last string
	for range 7 { // *3, $8, REPLCONF, $3, ACK, $n, <off>
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading ACK: %v", err)
		}
		last = strings.TrimRight(l, "\r\n")
	}
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil {
		t.Fatalf("ACK offset %q: %v", last, err)
	}
	return n
}

// TestUpstreamStorageError: ACKs never exceed Synced, and a storage error neither drops the
// link nor loses bytes: the upstream backs off, keeps acknowledging what is durable, and
// stores the stream once the backlog can again.
func TestUpstreamStorageError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := zaptest.NewLogger(t).Sugar()
	l := NewLink(Config{Log: log, Timeout: func() time.Duration { return time.Minute }})
	l.scan = resp.NewScanner(1, streamLimits())
	fb := &failingBacklog{Backlog: memoryBacklog(t, 1)}
	master, proxySide := redistest.TCPPair(t)
	master.SetReadDeadline(time.Now().Add(time.Minute)) // a hang fails instead of stalling the suite
	s := newSession(conn.New(proxySide), log, resp.DefaultLimits())
	done := make(chan error, 1)
	go func() { done <- l.stream(ctx, s, fb) }()
	mbr := bufio.NewReader(master)
	ping := "*1\r\n$4\r\nPING\r\n" // 14 bytes

	// Stored but not yet durable: the ACK stays at Synced.
	master.Write([]byte(ping))
	if got := readAck(t, mbr); got != 0 {
		t.Fatalf("ACK %d with nothing synced, want 0", got)
	}
	fb.synced.Store(14)
	fb.failing.Store(true)
	master.Write([]byte(ping))
	if got := readAck(t, mbr); got != 14 {
		t.Fatalf("ACK %d while the backlog fails, want the synced 14", got)
	}
	if fb.calls.Load() < 2 {
		t.Fatalf("the upstream did not retry storing the stream (%d calls)", fb.calls.Load())
	}
	fb.failing.Store(false)
	fb.synced.Store(28)
	redistest.Eventually(t, 5*time.Second, func() error {
		if end := fb.End(); end != 28 {
			return fmt.Errorf("backlog end %d, want 28", end)
		}
		return nil
	})
	for i := 0; readAck(t, mbr) != 28; i++ {
		if i == 3 {
			t.Fatal("no ACK of 28 once the stream is stored and synced")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the link was dropped: %v", err)
	default:
	}
	master.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end after the master closed")
	}
}

// memoryBacklog is a RAM backlog whose first byte is next.
func memoryBacklog(t *testing.T, next int64) backlog.Backlog {
	t.Helper()
	st, _, err := backlog.Open(backlog.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := st.Start("", next)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
