//go:build linux

package proxy_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// The fault injection test's master-failover fault: the master hands over to its standby
// replica with Redis's FAILOVER (a promoted replica of the same history taking over), the
// proxy is moved to the standby by REPLICAOF, and after a while all of it happens again the
// other way, so that the other faults keep acting on the master's link. Sentinel would send
// the proxy the standby's own address rather than the fault-injecting link's, so here the
// test plays Sentinel's part with the same command (TestSentinelFailover covers Sentinel).

// switchCounts counts how the proxy resynced after each switch of master.
type switchCounts struct {
	partial, full, unresolved int
	skipped                   int // faults that could not hand over (FAILOVER refused or timed out)
}

func (s switchCounts) String() string {
	return fmt.Sprintf("master switches: partial=%d full=%d unresolved=%d (failovers skipped: %d)",
		s.partial, s.full, s.unresolved, s.skipped)
}

// failover hands the master over to the standby, moves the proxy there, holds, and hands
// back. Writes to the old master meanwhile are refused (READONLY), as clients would see.
func (f *faultRun) failover(kind string, hold time.Duration) string {
	if err := handOverErr(f.m, f.standby); err != nil {
		f.switches.skipped++
		return fmt.Sprintf("%s: no failover to the standby (%v)", kind, err)
	}
	to := f.moveProxy(f.standbyLink.addr)
	time.Sleep(hold)
	if err := handOverErr(f.standby, f.m); err != nil {
		f.t.Fatalf("%s: the standby cannot hand back to the master: %v", kind, err)
	}
	back := f.moveProxy(f.master.addr)
	return fmt.Sprintf("%s: master handed over to the standby (proxy resync: %s), held %v, handed back (proxy resync: %s)",
		kind, to, hold.Round(time.Millisecond), back)
}

// moveProxy sends REPLICAOF addr to the proxy and waits for the new master's first answer
// to its PSYNC; it returns and counts the outcome.
func (f *faultRun) moveProxy(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	c, err := dialRaw(f.px.addr)
	if err != nil {
		f.t.Fatalf("REPLICAOF: %v", err)
	}
	reply, err := c.do("REPLICAOF", host, port)
	c.Close()
	if err != nil || reply != "+OK" {
		f.t.Fatalf("REPLICAOF %s: %q %v", addr, reply, err)
	}
	outcome := "unresolved"
	deadline := time.Now().Add(syncTimeout)
	for time.Now().Before(deadline) {
		pi, err := rawInfo(f.px.addr, "", "replication")
		if err == nil && pi["master_last_change_resync"] != "pending" {
			outcome = pi["master_last_change_resync"]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	switch outcome {
	case "partial":
		f.switches.partial++
	case "full":
		f.switches.full++
	default:
		f.switches.unresolved++
	}
	return outcome
}

// handOverErr makes to, a replica of from, the master with FAILOVER TO, and waits until
// the roles have swapped and from streams from to.
func handOverErr(from, to *redistest.Server) error {
	if _, err := from.Do("FAILOVER", "TO", "127.0.0.1", strconv.Itoa(to.Port), "TIMEOUT", "10000"); err != nil {
		return fmt.Errorf("FAILOVER: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ti, err1 := to.InfoErr("replication")
		fi, err2 := from.InfoErr("replication")
		if err := errors.Join(err1, err2); err == nil && ti["role"] == "master" && fi["role"] == "slave" && fi["master_link_status"] == "up" {
			return nil
		} else if time.Now().After(deadline) {
			if fi["role"] == "master" {
				return fmt.Errorf("the failover was aborted (%s is still the master; failover state %s)", from.Addr(), fi["master_failover_state"])
			}
			return fmt.Errorf("roles not swapped after 30s: %s is %s, %s is %s with link %s (%v)",
				to.Addr(), ti["role"], from.Addr(), fi["role"], fi["master_link_status"], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
