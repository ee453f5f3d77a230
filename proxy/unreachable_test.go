package proxy_test

import (
	"fmt"
	"testing"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// While the master is down the proxy keeps serving what it holds: a replica that restarts gets
// a partial resync from the backlog, a new replica a full sync from the snapshot plus the
// backlog, and both end with the dataset the master had when it went down. A chained Redis
// replica in the proxy's place would answer both with "-NOMASTERLINK Can't SYNC while not
// connected with my master" (syncCommand refuses while repl_state is not CONNECTED), so
// neither could sync until the master came back.
func TestMasterUnreachable(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20})
	r1 := redistest.Start(t, p.replicaArgs()...)
	redistest.WaitOnline(t, r1, syncTimeout)
	// History after the proxy's snapshot, so the new replica needs the backlog too.
	redistest.WriteBytes(t, m, 2<<20)
	digest := redistest.WaitInSync(t, syncTimeout, m, r1)
	waitProxyOffset(t, p, m)

	m.Kill(t)
	redistest.Eventually(t, syncTimeout, func() error {
		if s := p.info("replication")["master_link_status"]; s != "down" {
			return errString("proxy master_link_status:" + s + ", want down")
		}
		return nil
	})

	partialBefore, fullBefore := p.stat("sync_partial_ok"), p.stat("sync_full")
	r1.ShutdownSave(t)
	r1.Restart(t)
	r2 := redistest.Start(t, p.replicaArgs()...)
	waitDigest(t, digest, r1, r2)

	if n := r1.CountLog(t, "Master accepted a Partial Resynchronization"); n != 1 {
		t.Errorf("restarted replica: %d partial resyncs in its log, want 1", n)
	}
	if got := p.stat("sync_partial_ok"); got != partialBefore+1 {
		t.Errorf("proxy sync_partial_ok %d, want %d", got, partialBefore+1)
	}
	if got := p.stat("sync_full"); got != fullBefore+1 {
		t.Errorf("proxy sync_full %d, want %d (the new replica)", got, fullBefore+1)
	}
	if s := p.info("replication")["master_link_status"]; s != "down" {
		t.Errorf("proxy master_link_status:%s while the master is down", s)
	}
}

// waitProxyOffset waits until the proxy holds the master's whole stream.
func waitProxyOffset(t *testing.T, p *testProxy, m *redistest.Server) {
	t.Helper()
	redistest.Eventually(t, syncTimeout, func() error {
		want := m.Info(t, "replication")["master_repl_offset"]
		if got := p.info("replication")["master_repl_offset"]; got != want {
			return fmt.Errorf("proxy at offset %s, master at %s", got, want)
		}
		return nil
	})
}

// waitDigest waits until every replica's link is up and its dataset has the digest want
// (for when the master cannot be asked: redistest.WaitInSync needs it).
func waitDigest(t *testing.T, want string, replicas ...*redistest.Server) {
	t.Helper()
	redistest.Eventually(t, syncTimeout, func() error {
		for _, r := range replicas {
			info, err := r.InfoErr("replication")
			if err != nil {
				return err
			}
			if s := info["master_link_status"]; s != "up" {
				return fmt.Errorf("replica %s: master_link_status:%s", r.Addr(), s)
			}
			v, err := r.Do("DEBUG", "DIGEST")
			if err != nil {
				return fmt.Errorf("replica %s: DEBUG DIGEST: %w", r.Addr(), err)
			}
			if got := v.String(); got != want {
				return fmt.Errorf("replica %s: digest %s, want %s", r.Addr(), got, want)
			}
		}
		return nil
	})
}
