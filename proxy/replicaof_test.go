package proxy_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tresp "github.com/tidwall/resp"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// replyText is a reply as the do helper shows it: "-ERR ..." for errors, the string otherwise.
func replyText(v tresp.Value) string {
	if e := v.Error(); e != nil {
		return "-" + e.Error()
	}
	return v.String()
}

// The commands Sentinel and operators use to move the proxy, checked on their own: REPLICAOF
// and SLAVEOF (refused without admin, NO ONE refused, the same master a no-op with Redis's
// reply), MULTI/EXEC with Sentinel's exact reconfiguration, transaction errors as Redis gives
// them, and the pub/sub of Sentinel's hello channel.
func TestReplicaofCommands(t *testing.T) {
	m := redistest.Start(t)
	p := startProxy(t, m, proxy.Config{Users: []proxy.User{{Name: "ops", Password: "pw", Admin: true}, {Name: "viewer", Password: "pw"}}})

	c := redistest.Dial(t, p.Addr())
	defer c.Close()
	do := func(args ...string) string {
		t.Helper()
		c.Send(args...)
		v, err := c.ReadValue()
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return replyText(v)
	}
	host, port := "127.0.0.1", strconv.Itoa(m.Port)
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"AUTH", "viewer", "pw"}, "OK"},
		{[]string{"REPLICAOF", host, port}, "-NOPERM User viewer has no permissions to run the 'replicaof' command"},
		{[]string{"AUTH", "ops", "pw"}, "OK"},
		{[]string{"REPLICAOF", host, port}, "OK Already connected to specified master"},
		{[]string{"SLAVEOF", "127.0.0.1", port}, "OK Already connected to specified master"},
		{[]string{"REPLICAOF", "no", "one"}, "-ERR psync-proxy cannot become a master"},
		{[]string{"REPLICAOF", host, "x"}, "-ERR value is not an integer or out of range"},
		{[]string{"REPLICAOF", host, "70000"}, "-ERR Invalid master port"},
		{[]string{"EXEC"}, "-ERR EXEC without MULTI"},
		{[]string{"DISCARD"}, "-ERR DISCARD without MULTI"},
		{[]string{"MULTI"}, "OK"},
		{[]string{"MULTI"}, "-ERR MULTI calls can not be nested"},
		{[]string{"PING"}, "QUEUED"},
		{[]string{"NOSUCH"}, "-ERR unknown command 'NOSUCH'"},
		{[]string{"EXEC"}, "-EXECABORT Transaction discarded because of previous errors."},
		{[]string{"MULTI"}, "OK"},
		{[]string{"SUBSCRIBE", "ch"}, "-ERR Command not allowed inside a transaction"},
		{[]string{"DISCARD"}, "OK"},
		{[]string{"FAILOVER", "ABORT"}, "-ERR No failover in progress."},
	} {
		if got := do(step.args...); !strings.HasPrefix(got, step.want) {
			t.Errorf("%q: %q, want %q", step.args, got, step.want)
		}
	}

	// Sentinel's reconfiguration (src/sentinel.c: sentinelSendSlaveOf), pipelined as Sentinel
	// sends it, to the master followed now: every reply QUEUED, EXEC's array holds each reply.
	for _, cmd := range [][]string{{"MULTI"}, {"FAILOVER", "ABORT"}, {"SLAVEOF", host, port}, {"CONFIG", "REWRITE"},
		{"CLIENT", "KILL", "TYPE", "normal"}, {"CLIENT", "KILL", "TYPE", "pubsub"}, {"EXEC"}} {
		c.Send(cmd...)
	}
	var replies []string
	for range 6 {
		v, err := c.ReadValue()
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, replyText(v))
	}
	if want := []string{"OK", "QUEUED", "QUEUED", "QUEUED", "QUEUED", "QUEUED"}; strings.Join(replies, ",") != strings.Join(want, ",") {
		t.Errorf("replies %q, want %q", replies, want)
	}
	v, err := c.ReadValue()
	if err != nil {
		t.Fatal(err)
	}
	arr := v.Array()
	if v.Type() != tresp.Array || len(arr) != 5 || replyText(arr[0]) != "-ERR No failover in progress." ||
		replyText(arr[1]) != "OK Already connected to specified master" || arr[2].Error() == nil {
		t.Errorf("EXEC: %s %q", v.Type(), v.String())
	}
	if pi := p.info("replication"); pi["master_changes"] != "0" || pi["master_failover_state"] != "no-failover" ||
		pi["master_last_change_resync"] != "none" {
		t.Errorf("after no-op REPLICAOFs: %v", pi)
	}
	checkPubSub(t, p)
}

// checkPubSub subscribes two clients to Sentinel's hello channel, publishes to it, checks
// PING and the commands refused in subscribed mode, and that a subscriber's leaving is counted.
func checkPubSub(t *testing.T, p *testProxy) {
	t.Helper()
	clients := func() string { return p.info("clients")["connected_clients"] }
	before := clients()
	subs := make([]*redistest.Client, 2)
	for i := range subs {
		subs[i] = redistest.Dial(t, p.Addr())
		defer subs[i].Close()
		subs[i].Send("AUTH", "viewer", "pw")
		subs[i].Send("SUBSCRIBE", "__sentinel__:hello")
		for _, want := range []string{"OK", "[subscribe __sentinel__:hello 1]"} {
			if v, err := subs[i].ReadValue(); err != nil || v.String() != want {
				t.Fatalf("subscriber %d: %q %v, want %q", i, v.String(), err, want)
			}
		}
	}
	pub := redistest.Dial(t, p.Addr())
	defer pub.Close()
	pub.Do("AUTH", "viewer", "pw")
	if _, err := pub.Do("PUBLISH", "__sentinel__:hello", "forged"); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("PUBLISH without admin: %v, want NOPERM", err)
	}
	pub.Do("AUTH", "ops", "pw")
	hello := "127.0.0.1,26379,0123456789abcdef0123456789abcdef01234567,0,mymaster,127.0.0.1,6379,0"
	if v, err := pub.Do("PUBLISH", "__sentinel__:hello", hello); err != nil || v.Integer() != 2 {
		t.Fatalf("PUBLISH: %v %v", v, err)
	}
	for i, s := range subs {
		if v, err := s.ReadValue(); err != nil || v.String() != "[message __sentinel__:hello "+hello+"]" {
			t.Errorf("subscriber %d got %q %v", i, v.String(), err)
		}
	}
	s := subs[0]
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "[pong ]"},
		{[]string{"PING", "x"}, "[pong x]"},
		{[]string{"INFO"}, "ERR Can't execute 'info'"},
		{[]string{"UNSUBSCRIBE"}, "[unsubscribe __sentinel__:hello 0]"},
	} {
		s.Send(c.args...)
		if v, err := s.ReadValue(); err != nil || !strings.HasPrefix(replyText(v), c.want) && !strings.HasPrefix(replyText(v), "-"+c.want) {
			t.Errorf("subscribed %q: %q %v, want %q", c.args, replyText(v), err, c.want)
		}
	}
	s.Send("QUIT")
	if v, err := s.ReadValue(); err != nil || v.String() != "OK" {
		t.Errorf("QUIT: %q %v", v.String(), err)
	}
	redistest.Eventually(t, 5*time.Second, func() error {
		if n, _ := strconv.Atoi(clients()); strconv.Itoa(n) != incr(before, 1+1) { // subs[1] and pub remain
			return errString("connected_clients " + clients() + ", before " + before)
		}
		return nil
	})
}

func incr(s string, d int) string {
	n, _ := strconv.Atoi(s)
	return strconv.Itoa(n + d)
}

// A manual flip between two masters of one history and back, driven by REPLICAOF on the
// proxy: the master hands over to its replica with Redis's FAILOVER (no write lost, no PING
// after the switch point), the proxy is pointed at the new master, then all of it again the
// other way. Every switch is a partial resync: neither master forks for the proxy, its
// replicas never full-sync again, and the proxy's INFO counts every change as partial. A third flip
// leaves it on the replica, and a restart with the same --master goes back there (master.json).
func TestReplicaofFlip(t *testing.T) {
	a := redistest.Start(t, "--repl-ping-replica-period", "3600")
	b := redistest.Start(t, "--repl-ping-replica-period", "3600", "--replicaof", "127.0.0.1", strconv.Itoa(a.Port))
	dir := t.TempDir()
	p := startProxy(t, a, proxy.Config{Dir: dir, BacklogMode: proxy.BacklogDisk, BacklogSize: 16 << 20})
	replicas := []*redistest.Server{redistest.Start(t, p.replicaArgs()...), redistest.Start(t, p.replicaArgs()...)}
	redistest.WriteBytes(t, a, 1<<20)
	redistest.WaitInSync(t, syncTimeout, a, append(replicas, b)...)
	fullA, fullB := stat(t, a, "sync_full"), stat(t, b, "sync_full")

	cur, next := a, b
	for i := range 3 {
		handOver(t, cur, next)
		if got := p.do("REPLICAOF", "127.0.0.1", strconv.Itoa(next.Port)); got != "OK" {
			t.Fatalf("flip %d: REPLICAOF: %q", i, got)
		}
		next.MustDo(t, "SET", "flip", strconv.Itoa(i))
		redistest.WriteBytes(t, next, 256<<10)
		redistest.WaitInSync(t, syncTimeout, next, append(replicas, cur)...)
		cur, next = next, cur
	}
	pi := p.info("replication")
	if pi["master_changes"] != "3" || pi["master_changes_partial"] != "3" || pi["master_changes_full"] != "0" ||
		pi["master_last_change_resync"] != "partial" || pi["master_last_change_source"] != "replicaof" {
		t.Errorf("proxy INFO after three flips: %v", pi)
	}
	if fa, fb := stat(t, a, "sync_full"), stat(t, b, "sync_full"); fa != fullA || fb != fullB {
		t.Errorf("sync_full went from %d and %d to %d and %d: a master forked", fullA, fullB, fa, fb)
	}
	for i, r := range replicas {
		if n := r.CountLog(t, "Full resync from master"); n != 1 {
			t.Errorf("replica %d: %d full resyncs, want only the first", i, n)
		}
	}
	checkMasterState(t, dir, b.Addr())

	// Restarted with the same --master, the proxy goes to b, where REPLICAOF moved it.
	p.stop()
	p.start(p.port)
	p.waitLinkUp()
	if pi := p.info("replication"); pi["master_port"] != strconv.Itoa(b.Port) {
		t.Errorf("restarted proxy follows port %s, want %d (b)", pi["master_port"], b.Port)
	}
	b.MustDo(t, "SET", "after", "restart")
	redistest.WaitInSync(t, syncTimeout, b, replicas...)
	if fa, fb := stat(t, a, "sync_full"), stat(t, b, "sync_full"); fa != fullA || fb != fullB {
		t.Errorf("after the restart sync_full went from %d and %d to %d and %d", fullA, fullB, fa, fb)
	}
}

// handOver makes next, a replica of cur, the master with Redis's FAILOVER, and waits for it.
func handOver(t *testing.T, cur, next *redistest.Server) {
	t.Helper()
	cur.MustDo(t, "FAILOVER", "TO", "127.0.0.1", strconv.Itoa(next.Port))
	redistest.Eventually(t, syncTimeout, func() error {
		if r := next.Info(t, "replication")["role"]; r != "master" {
			return errString("the new master's role is " + r)
		}
		if ci := cur.Info(t, "replication"); ci["role"] != "slave" || ci["master_link_status"] != "up" {
			return errString("the old master is " + ci["role"] + " with link " + ci["master_link_status"])
		}
		return nil
	})
}

// checkMasterState checks that master.json in dir records want as the master followed.
func checkMasterState(t *testing.T, dir, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "master.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Master, Source string }
	if err := json.Unmarshal(b, &st); err != nil || st.Master != want {
		t.Errorf("master.json: %s (%v), want master %s", b, err, want)
	}
}

// A failover under write load where the promoted replica had not received everything the
// proxy had: R0 replicates through a link paced to 256 KB/s and lags while the proxy keeps
// up; the master dies, R0 is promoted, and the proxy is pointed at it. The proxy holds bytes
// R0's history never had, so R0 refuses to continue it: the proxy full-syncs from R0 (the
// only correct answer) and its replicas full-sync from the new snapshot, all ending equal
// to R0. The proxy shows its link up as soon as R0 answered, while the RDB arrives.
func TestFailoverProxyAhead(t *testing.T) {
	m := redistest.Start(t, "--repl-ping-replica-period", "3600")
	slow := startThrottledForwarder(t, m.Addr(), 256<<10)
	_, slowPort, _ := net.SplitHostPort(slow.ln.Addr().String())
	r0 := redistest.Start(t, "--replicaof", "127.0.0.1", slowPort)
	p := startProxy(t, m, proxy.Config{BacklogSize: 64 << 20})
	replicas := []*redistest.Server{redistest.Start(t, p.replicaArgs()...), redistest.Start(t, p.replicaArgs()...)}
	redistest.WriteBytes(t, m, 128<<10)
	redistest.WaitInSync(t, syncTimeout, m, append(replicas, r0)...)

	redistest.WriteBytes(t, m, 4<<20) // about 16 s of R0's link
	end := m.Info(t, "replication")["master_repl_offset"]
	redistest.Eventually(t, syncTimeout, func() error {
		if got := p.info("replication")["master_repl_offset"]; got != end {
			return errString("proxy at " + got + ", master at " + end)
		}
		return nil
	})
	slow.retarget("") // R0 keeps what it got
	m.Kill(t)
	r0.ReplicaOf(t, "")
	ri := r0.Info(t, "replication")
	if atoi64(ri["second_repl_offset"])-1 >= atoi64(end) {
		t.Fatalf("R0 was promoted at offset %s, not behind the proxy's %s: the link was not slow enough", ri["second_repl_offset"], end)
	}
	t.Logf("R0 promoted at offset %d, %d bytes behind the proxy", atoi64(ri["second_repl_offset"])-1, atoi64(end)-atoi64(ri["second_repl_offset"])+1)
	// The proxy reaches R0 through a slow link, so that its full resync takes seconds: its
	// link shows up meanwhile (Sentinel's reconfiguration is done), with the sync in progress.
	viaSlow := startThrottledForwarder(t, r0.Addr(), 96<<10)
	host, port, _ := net.SplitHostPort(viaSlow.ln.Addr().String())
	if got := p.do("REPLICAOF", host, port); got != "OK" {
		t.Fatalf("REPLICAOF: %q", got)
	}
	seen := false
	redistest.Eventually(t, syncTimeout, func() error {
		pi := p.info("replication")
		if pi["master_link_status"] == "up" && pi["master_sync_in_progress"] == "1" && pi["master_failover_state"] == "no-failover" {
			seen = true
		}
		if pi["master_sync_in_progress"] != "0" || pi["master_link_status"] != "up" {
			return errString("sync in progress")
		}
		return nil
	})
	if !seen {
		t.Errorf("the link was never shown up during the full resync from the new master")
	}
	r0.MustDo(t, "SET", "after", "failover")
	redistest.WriteBytes(t, r0, 32<<10)
	redistest.WaitInSync(t, syncTimeout, r0, replicas...)
	checkProxyChanges(t, p, 1, 0, 1)
	if n := stat(t, r0, "sync_full"); n != 1 {
		t.Errorf("R0 sync_full = %d, want 1 (the proxy's)", n)
	}
	for i, r := range replicas {
		if n := r.CountLog(t, "Full resync from master"); n != 2 {
			t.Errorf("replica %d: %d full resyncs, want 2 (the first, and from the new snapshot)", i, n)
		}
	}
}

// Sentinel mode with no Sentinel answering and no --master: the proxy starts without a
// master and waits; REPLICAOF gives it one, and it syncs from there.
func TestSentinelModeNoAnswer(t *testing.T) {
	m := redistest.Start(t)
	dead := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	dir := t.TempDir()
	p := startProxyAddr(t, proxy.Config{Dir: dir, SentinelAddrs: []string{dead}, SentinelMaster: "mymaster"})
	if pi := p.info("replication"); pi["master_link_status"] != "down" || pi["master_host"] != "" {
		t.Fatalf("without a master: %v", pi)
	}
	if got := p.do("REPLICAOF", "127.0.0.1", strconv.Itoa(m.Port)); got != "OK" {
		t.Fatalf("REPLICAOF: %q", got)
	}
	p.waitLinkUp()
	r := redistest.Start(t, p.replicaArgs()...)
	m.MustDo(t, "SET", "k", "v")
	redistest.WaitInSync(t, syncTimeout, m, r)
	checkMasterState(t, dir, m.Addr())
}
