package proxy_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

const sentinelName = "mymaster"

// failoverTimeout bounds one Sentinel failover in these tests: down-after 1 s, the
// election, the promotion and the reconfiguration of the replicas (failover-timeout 5 s).
// A failover takes 2 to 4 s here; on a loaded machine a Sentinel may find no replica whose
// INFO is fresh enough, abort, and try again only 2 x failover-timeout later.
const failoverTimeout = 60 * time.Second

// startSentinels starts three Sentinels (quorum 2) on master and waits until each knows
// the others and replicas replicas.
func startSentinels(t *testing.T, master *redistest.Server, replicas int) []*redistest.Sentinel {
	t.Helper()
	ss := make([]*redistest.Sentinel, 3)
	for i := range ss {
		ss[i] = redistest.StartSentinel(t, sentinelName, master, 2)
	}
	redistest.WaitSentinelsReady(t, 30*time.Second, replicas, ss...)
	return ss
}

func sentinelAddrs(ss []*redistest.Sentinel) []string {
	var a []string
	for _, s := range ss {
		a = append(a, s.Addr())
	}
	return a
}

// sentinelReplicas returns SENTINEL REPLICAS <name> of s, one map per replica, keyed by
// ip:port.
func sentinelReplicas(t *testing.T, s *redistest.Sentinel) map[string]map[string]string {
	t.Helper()
	v := s.MustDo(t, "SENTINEL", "REPLICAS", sentinelName)
	out := map[string]map[string]string{}
	for _, r := range v.Array() {
		kv := r.Array()
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].String()] = kv[i+1].String()
		}
		out[m["ip"]+":"+m["port"]] = m
	}
	return out
}

// waitSentinelMaster waits until every Sentinel names addr as the master and counts
// every replica in want as a healthy replica of it (flags exactly "slave": neither down
// nor disconnected, and so reconfigured).
func waitSentinelMaster(t *testing.T, ss []*redistest.Sentinel, addr string, want ...string) {
	t.Helper()
	redistest.Eventually(t, failoverTimeout, func() error {
		for _, s := range ss {
			v, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelName)
			if err != nil {
				return err
			}
			if a := v.Array(); len(a) != 2 || a[0].String()+":"+a[1].String() != addr {
				return fmt.Errorf("Sentinel %s names %s, want %s", s.Addr(), v.String(), addr)
			}
			reps := sentinelReplicas(t, s)
			for _, w := range want {
				if r := reps[w]; r["flags"] != "slave" || r["master-link-status"] != "ok" || r["master-host"]+":"+r["master-port"] != addr {
					return fmt.Errorf("Sentinel %s: replica %s is %v", s.Addr(), w, r)
				}
			}
		}
		return nil
	})
}

// A master, its replica R0, the proxy and two replicas behind it, three Sentinels. SIGKILL
// the master: Sentinel promotes R0 (never the proxy: slave_priority 0) and reconfigures the
// proxy with its MULTI/SLAVEOF/.../EXEC. The proxy continues with PSYNC2: R0 never forks
// (sync_full stays 0), the replicas behind the proxy never full-sync again and end equal to
// R0. The old master comes back and Sentinel makes it a replica of R0: nothing behind the
// proxy notices. Then SENTINEL FAILOVER (graceful: writes paused on R0) moves the master
// back: partial again.
func TestSentinelFailover(t *testing.T) {
	began := time.Now()
	m := redistest.Start(t, "--repl-ping-replica-period", "3600")
	r0 := redistest.Start(t, "--repl-ping-replica-period", "3600", "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	p := startProxy(t, m, proxy.Config{BacklogSize: 16 << 20})
	replicas := []*redistest.Server{redistest.Start(t, p.replicaArgs()...), redistest.Start(t, p.replicaArgs()...)}
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, append(replicas, r0)...)
	ss := startSentinels(t, m, 2)
	waitSentinelMaster(t, ss, m.Addr(), r0.Addr(), p.Addr())

	killed := time.Now()
	m.Kill(t)
	waitSentinelMaster(t, ss, r0.Addr(), p.Addr())
	switched := time.Since(killed)
	redial(r0)
	r0.MustDo(t, "SET", "after", "failover")
	redistest.WriteBytes(t, r0, 512<<10)
	redistest.WaitInSync(t, syncTimeout, r0, replicas...)
	t.Logf("master killed: Sentinel switched in %v, the replicas behind the proxy had R0's writes %v after the kill",
		switched.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if n := stat(t, r0, "sync_full"); n != 0 {
		t.Errorf("R0 sync_full = %d, want 0: the proxy must continue with PSYNC2", n)
	}
	checkProxyChanges(t, p, 1, 1, 0)
	checkOneFullSync(t, replicas)
	for _, s := range ss {
		if n := s.CountLog(t, "+fix-slave-config"); n != 0 {
			t.Errorf("Sentinel %s had to fix a replica's configuration %d times", s.Addr(), n)
		}
	}

	// The old master comes back empty; Sentinel makes it a replica of R0 (it full-syncs from
	// R0, as it must). The proxy and its replicas are left alone.
	partial := countPartial(t, replicas)
	m.Restart(t)
	redistest.Eventually(t, failoverTimeout, func() error {
		mi, err := m.InfoErr("replication") // Sentinel's CLIENT KILL may close the test's connection
		if err != nil {
			return err
		}
		if mi["role"] != "slave" || mi["master_port"] != strconv.Itoa(r0.Port) || mi["master_link_status"] != "up" {
			return fmt.Errorf("old master: role %s, master port %s, link %s", mi["role"], mi["master_port"], mi["master_link_status"])
		}
		return nil
	})
	redistest.WaitInSync(t, syncTimeout, r0, append(replicas, m)...)
	checkProxyChanges(t, p, 1, 1, 0)
	if got := countPartial(t, replicas); got != partial {
		t.Errorf("the old master's return made the replicas behind the proxy resync (%d partial resyncs, were %d)", got, partial)
	}

	// A graceful failover back to the old master. Sentinel publishes its hello on the master
	// every 2 s, and PUBLISH enters the replication stream: any hello the old master takes
	// after the promotion puts its replicas (the proxy, a Redis replica alike) past the
	// point where the new master's history branched, and costs them a full sync. So writes
	// are paused on the old master first, as Redis's own FAILOVER does.
	t.Logf("the old master is R0's replica %v after the kill", time.Since(killed).Round(time.Millisecond))
	// The Sentinel asked to fail over must count the old master as a good replica.
	waitSentinelMaster(t, ss[:1], r0.Addr(), m.Addr(), p.Addr())
	r0.MustDo(t, "CLIENT", "PAUSE", "10000", "WRITE")
	ss[0].MustDo(t, "SENTINEL", "FAILOVER", sentinelName)
	redistest.Eventually(t, failoverTimeout, func() error {
		if pi := p.info("replication"); pi["master_port"] != strconv.Itoa(m.Port) || pi["master_link_status"] != "up" {
			return fmt.Errorf("proxy follows port %s, link %s", pi["master_port"], pi["master_link_status"])
		}
		return nil
	})
	redial(r0)
	r0.MustDo(t, "CLIENT", "UNPAUSE")
	waitSentinelMaster(t, ss, m.Addr(), r0.Addr(), p.Addr())
	redial(m)
	m.MustDo(t, "SET", "after", "graceful")
	redistest.WriteBytes(t, m, 256<<10)
	redistest.WaitInSync(t, syncTimeout, m, append(replicas, r0)...)
	checkProxyChanges(t, p, 2, 2, 0)
	checkOneFullSync(t, replicas)
	if n := m.CountLog(t, "Partial resynchronization request from 127.0.0.1:"+strconv.Itoa(p.port)+" accepted"); n != 1 {
		t.Errorf("the new master accepted %d partial resyncs from the proxy, want 1", n)
	}
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}

// redial makes s's cached test connection usable again: Sentinel's CLIENT KILL TYPE normal
// closed it when it promoted s.
func redial(s *redistest.Server) { _, _ = s.Do("PING") }

// checkProxyChanges checks the proxy's count of master changes and how they went.
func checkProxyChanges(t *testing.T, p *testProxy, changes, partial, full int) {
	t.Helper()
	pi := p.info("replication")
	if pi["master_changes"] != strconv.Itoa(changes) || pi["master_changes_partial"] != strconv.Itoa(partial) ||
		pi["master_changes_full"] != strconv.Itoa(full) || pi["master_link_status"] != "up" {
		t.Errorf("proxy: master_changes:%s partial:%s full:%s link:%s, want %d, %d, %d and up",
			pi["master_changes"], pi["master_changes_partial"], pi["master_changes_full"], pi["master_link_status"], changes, partial, full)
	}
}

// checkOneFullSync checks that each replica full-synced once only: its first sync.
func checkOneFullSync(t *testing.T, replicas []*redistest.Server) {
	t.Helper()
	for i, r := range replicas {
		if n := r.CountLog(t, "Full resync from master"); n != 1 {
			t.Errorf("replica %d behind the proxy: %d full resyncs, want 1 (the first)", i, n)
		}
	}
}

func countPartial(t *testing.T, replicas []*redistest.Server) int {
	n := 0
	for _, r := range replicas {
		n += r.CountLog(t, "Master accepted a Partial Resynchronization")
	}
	return n
}
