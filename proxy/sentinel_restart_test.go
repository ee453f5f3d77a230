//go:build linux

package proxy_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// The proxy binary in --sentinel mode with a disk backlog: no --master, it asks the
// Sentinels. A first failover (the master killed, R0 promoted) reaches it both ways, from
// Sentinel's SLAVEOF and from its own +switch-master subscription, and makes one partial
// switch. Then the proxy is killed with SIGKILL, and while it is down R0 is killed too and
// Sentinel promotes R1. Restarted, the proxy finds R1 through Sentinel (not the R0 it
// recorded) and resumes its history from the disk backlog with PSYNC2: no full sync
// anywhere, upstream or downstream.
func TestSentinelModeRestart(t *testing.T) {
	began := time.Now()
	bin := buildProxyBinary(t, false) // first: a build takes the machine's cores, and a Sentinel that stalls 2 s goes into TILT
	ping := []string{"--repl-ping-replica-period", "3600"}
	m := redistest.Start(t, ping...)
	replicaOfM := append(ping, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	r0 := redistest.Start(t, append(replicaOfM, "--replica-priority", "10")...)
	r1 := redistest.Start(t, append(replicaOfM, "--replica-priority", "20")...)
	ss := make([]*redistest.Sentinel, 3)
	for i := range ss {
		ss[i] = redistest.StartSentinel(t, sentinelName, m, 2)
	}
	px := startProxyProc(t, bin, "", "--sentinel", strings.Join(sentinelAddrs(ss), ","),
		"--sentinel-master", sentinelName, "--backlog-mode", "disk", "--backlog-size", "64mb")
	px.waitServing(syncTimeout)
	waitProcLink(t, px, m.Port)
	_, pport, _ := strings.Cut(px.addr, ":")
	replicas := []*redistest.Server{redistest.Start(t, "--replicaof", "127.0.0.1", pport), redistest.Start(t, "--replicaof", "127.0.0.1", pport)}
	redistest.WriteBytes(t, m, 1<<20)
	redistest.WaitInSync(t, syncTimeout, m, append(replicas, r0, r1)...)
	redistest.WaitSentinelsReady(t, 30*time.Second, 3, ss...)
	waitSentinelMaster(t, ss, m.Addr(), r0.Addr(), r1.Addr(), px.addr)

	m.Kill(t)
	waitSentinelMaster(t, ss, r0.Addr(), r1.Addr(), px.addr)
	redial(r0)
	r0.MustDo(t, "SET", "after", "first")
	redistest.WriteBytes(t, r0, 256<<10)
	redistest.WaitInSync(t, syncTimeout, r0, append(replicas, r1)...)
	pi, err := rawInfo(px.addr, "", "replication")
	if err != nil || pi["master_changes"] != "1" || pi["master_changes_partial"] != "1" {
		t.Errorf("proxy after the first failover: %v %v; want one partial master change", pi, err)
	}
	if n := stat(t, r0, "sync_full"); n != 0 {
		t.Errorf("R0 sync_full = %d, want 0", n)
	}
	checkBothWays(t, px.log(), r0.Addr())

	px.kill()
	redistest.WriteBytes(t, r0, 256<<10) // the replicas behind the proxy miss these
	redistest.WaitInSync(t, syncTimeout, r0, r1)
	r0.Kill(t)
	waitSentinelMaster(t, ss, r1.Addr())
	redial(r1)
	r1.MustDo(t, "SET", "after", "second")
	px.start()
	px.waitServing(syncTimeout)
	waitProcLink(t, px, r1.Port)
	redistest.WaitInSync(t, syncTimeout, r1, replicas...)

	if n := stat(t, r1, "sync_full"); n != 0 {
		t.Errorf("R1 sync_full = %d, want 0", n)
	}
	checkOneFullSync(t, replicas)
	log := px.log()
	if n := strings.Count(log, "Full resync from master"); n != 1 {
		t.Errorf("the proxy full-synced %d times from a master, want 1 (its first sync)", n)
	}
	if !strings.Contains(log, "Sentinel gives MASTER "+r1.Addr()) {
		t.Errorf("the restarted proxy did not take R1 from Sentinel:\n%s", grepLines(log, "MASTER", 20))
	}
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}

// checkBothWays checks that Sentinel's SLAVEOF and the proxy's own watcher both named addr,
// and that only the first of them moved the proxy.
func checkBothWays(t *testing.T, log, addr string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	slaveof := strings.Count(log, "REPLICAOF "+addr+" enabled")
	slaveofNoop := strings.Count(log, "REPLICAOF would result into synchronization")
	watcher := strings.Count(log, "to "+addr+" (sentinel: ")
	watcherNoop := strings.Count(log, "Sentinel names MASTER "+addr+", the master followed now")
	changes := strings.Count(log, "Master changed from ")
	if changes != 1 || slaveof+watcher != 1 || slaveof+slaveofNoop < 1 || watcher+watcherNoop != 1 {
		t.Errorf("switch to %s:%s: %d changes; SLAVEOF %d (+%d no-op), watcher %d (+%d no-op); want one change, reported both ways:\n%s",
			host, port, changes, slaveof, slaveofNoop, watcher, watcherNoop, grepLines(log, "MASTER", 30))
	}
	t.Logf("the switch to %s came first from %s", addr, map[bool]string{true: "Sentinel's SLAVEOF", false: "the watcher's +switch-master"}[slaveof == 1])
}

// waitProcLink waits until the proxy process streams from the master on port.
func waitProcLink(t *testing.T, px *proxyProc, port int) {
	t.Helper()
	redistest.Eventually(t, syncTimeout, func() error {
		pi, err := rawInfo(px.addr, "", "replication")
		if err != nil {
			return err
		}
		if pi["master_port"] != strconv.Itoa(port) || pi["master_link_status"] != "up" {
			return fmt.Errorf("proxy follows port %s, link %s; want %d and up", pi["master_port"], pi["master_link_status"], port)
		}
		return nil
	})
}
