package proxy_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// forwarder is a TCP relay whose target can be changed, standing in for a DNS name or VIP
// that moves to the new master in a failover. It only copies bytes.
type forwarder struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
	wg     sync.WaitGroup
	rate   int64 // bytes per second from the target to the client; 0: no limit. Set before use.
}

func startForwarder(t *testing.T, target string) *forwarder {
	return startThrottledForwarder(t, target, 0)
}

// startThrottledForwarder is startForwarder with the target's bytes paced to rate per second.
func startThrottledForwarder(t *testing.T, target string, rate int64) *forwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, target: target, rate: rate}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				f.mu.Unlock()
				c.Close()
				continue
			}
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			for i, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				rate := int64(0)
				if i == 0 {
					rate = f.rate
				}
				f.wg.Add(1)
				go func(dst, src net.Conn) {
					defer f.wg.Done()
					pacedCopy(dst, src, rate)
					dst.Close()
					src.Close()
				}(pair[0], pair[1])
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.retarget("")
		f.wg.Wait()
	})
	return f
}

// pacedCopy copies src to dst at most rate bytes per second (0: as fast as possible).
func pacedCopy(dst io.Writer, src io.Reader, rate int64) {
	if rate == 0 {
		io.Copy(dst, src)
		return
	}
	buf := make([]byte, 16<<10)
	start, total := time.Now(), int64(0)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			total += int64(n)
			if d := time.Duration(float64(total)/float64(rate)*float64(time.Second)) - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
		if err != nil {
			return
		}
	}
}

// retarget sends new connections to target and cuts the current ones.
func (f *forwarder) retarget(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = target
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// A failover upstream: the proxy reconnects to a promoted replica, which continues its history
// under a new replication ID (+CONTINUE <new id>). The proxy keeps the old ID as replid2,
// disconnects its replicas, and they resume with partial resyncs under the new ID.
func TestUpstreamFailover(t *testing.T) {
	// No pings from the old master, so the promoted replica holds every byte the proxy holds.
	m := redistest.Start(t, "--repl-ping-replica-period", "3600")
	s := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	f := startForwarder(t, m.Addr())
	p := startProxyVia(t, f.ln.Addr().String(), proxy.Config{BacklogSize: 16 << 20})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, s, r)
	oldID := m.Info(t, "replication")["master_replid"]

	f.retarget(s.Addr())
	s.ReplicaOf(t, "") // REPLICAOF NO ONE: new ID, the old one valid up to the current offset
	newID := s.Info(t, "replication")["master_replid"]
	if newID == oldID {
		t.Fatalf("the promoted replica kept its replication ID")
	}
	s.MustDo(t, "SET", "after", "failover")
	redistest.WriteBytes(t, s, 512<<10)
	redistest.WaitInSync(t, syncTimeout, s, r)

	pi := p.info("replication")
	if pi["master_replid"] != newID || pi["master_replid2"] != oldID {
		t.Fatalf("proxy replid %s replid2 %s, want %s and %s", pi["master_replid"], pi["master_replid2"], newID, oldID)
	}
	if got := stat(t, s, "sync_full"); got != 0 {
		t.Fatalf("promoted master sync_full = %d, want 0: the proxy must continue", got)
	}
	if n := r.CountLog(t, "Full resync from master"); n != 1 {
		t.Fatalf("replica: %d full resyncs, want 1 (the first)", n)
	}
	if n := r.CountLog(t, "Master replication ID changed to "+newID); n != 1 {
		t.Fatalf("replica did not learn the new ID through +CONTINUE <id>")
	}
	if v := r.MustDo(t, "GET", "after").String(); v != "failover" {
		t.Fatalf("replica GET after = %q", v)
	}
}

// A failover upstream in disk mode while the new replication IDs cannot be stored: the proxy
// must not take the new history (a restart would resume its bytes under the old ID), so it
// drops the link before reading any of it and retries; once the state can be written it
// continues under the new ID, and its replica resumes partially as in TestUpstreamFailover.
func TestUpstreamFailoverStateNotStored(t *testing.T) {
	m := redistest.Start(t, "--repl-ping-replica-period", "3600")
	s := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	f := startForwarder(t, m.Addr())
	dir := t.TempDir()
	p := startProxyVia(t, f.ln.Addr().String(), proxy.Config{BacklogSize: 16 << 20, BacklogMode: proxy.BacklogDisk, Dir: dir})
	r := redistest.Start(t, p.replicaArgs()...)
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, s, r)
	oldID := m.Info(t, "replication")["master_replid"]
	end := p.info("replication")["master_repl_offset"]

	// A directory where the state's temporary file goes makes every state write fail, even
	// for root.
	block := filepath.Join(dir, "backlog", "state.json.tmp")
	if err := os.Mkdir(block, 0o700); err != nil {
		t.Fatal(err)
	}
	f.retarget(s.Addr())
	s.ReplicaOf(t, "")
	newID := s.Info(t, "replication")["master_replid"]
	s.MustDo(t, "SET", "after", "failover")
	redistest.Eventually(t, syncTimeout, func() error {
		if n := stat(t, s, "sync_partial_ok"); n < 2 {
			return fmt.Errorf("the promoted master accepted %d partial resyncs, want retries", n)
		}
		return nil
	})
	pi := p.info("replication")
	if pi["master_replid"] != oldID || pi["master_repl_offset"] != end || pi["master_link_status"] != "down" {
		t.Fatalf("with the state unwritable: replid %s offset %s link %s, want %s, %s and down",
			pi["master_replid"], pi["master_repl_offset"], pi["master_link_status"], oldID, end)
	}

	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, syncTimeout, s, r)
	pi = p.info("replication")
	if pi["master_replid"] != newID || pi["master_replid2"] != oldID {
		t.Fatalf("proxy replid %s replid2 %s, want %s and %s", pi["master_replid"], pi["master_replid2"], newID, oldID)
	}
	if got := stat(t, s, "sync_full"); got != 0 {
		t.Fatalf("promoted master sync_full = %d, want 0", got)
	}
	if v := r.MustDo(t, "GET", "after").String(); v != "failover" {
		t.Fatalf("replica GET after = %q", v)
	}
}
