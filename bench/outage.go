package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// MB is 2^20 bytes throughout, as in Redis's units ("10mb").
const (
	outageTick      = 10 * time.Millisecond // the writer's pacing period
	outageValueSize = 1 << 10
	// outageKeys bounds the dataset (about 128 MB of values) whatever the outage length: a
	// real master overwrites its keys, and a full sync costs in proportion to the dataset,
	// not to the bytes written during the outage.
	outageKeys      = 128 << 10
	outageBefore    = 2 * time.Second // writing before the replica goes down
	outageAfter     = 2 * time.Second // master latency probed after the catch-up
	outageProbeGap  = time.Millisecond
	outageCatchUp   = 5 * time.Minute // longest acceptable catch-up
	outageSyncCheck = 2 * time.Minute
)

// runOutage takes a replica down for T seconds while a paced writer keeps writing W MB/s to
// the master (1mb backlog in every topology; the proxy's backlog and the chain's hold the
// run's stream), then starts it again and measures how it resyncs, how long it takes to
// catch up, and the master's PING latency meanwhile.
func runOutage(e *env) error {
	rate, outages := int64(2<<20), []int{2}
	if !e.cfg.quick {
		var err error
		if outages, err = outageLengths(e.cfg.outages); err != nil {
			return err
		}
		rate = 10 << 20
	}
	largest := slices.Max(outages)
	// Resync outcomes of the largest T, by topology, for the goal.
	type tally struct{ runs, partial, full int }
	tallies := map[string]*tally{"direct": {}, "chain": {}, "proxy": {}}

	var errs []error
	for _, T := range outages {
		kase := fmt.Sprintf("T=%ds W=%dMB/s", T, rate>>20)
		err := e.each("outage", func(r *run, topology string, rep int) {
			res := outageRun(e, r, topology, rep, time.Duration(T)*time.Second, rate)
			rec := func(metric, unit string, v float64) {
				e.record(result{Scenario: "outage", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
			}
			rec("partial", "", outageBool(res.partial))
			rec("full", "", outageBool(res.full))
			rec("catchup_ms", "ms", float64(res.catchUp)/float64(time.Millisecond))
			rec("p99_ms", "ms", float64(latencyPercentile(res.rtts, 0.99))/float64(time.Millisecond))
			rec("max_ms", "ms", float64(res.rtts[len(res.rtts)-1])/float64(time.Millisecond))
			rec("gap_mb", "MB", float64(res.gap)/(1<<20))
			rec("write_mb_s", "MB/s", res.writeRate/(1<<20))
			if T == largest {
				t := tallies[topology]
				t.runs++
				t.partial += int(outageBool(res.partial && !res.full))
				t.full += int(outageBool(res.full && !res.partial))
			}
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("outage of %ds: %w", T, err))
		}
	}

	g := goal{
		Name:   "outage of 120 s at >= 10 MB/s",
		Target: "partial resync through the proxy, full resync direct",
	}
	d, c, p := tallies["direct"], tallies["chain"], tallies["proxy"]
	g.Measured = fmt.Sprintf("T=%ds at %d MB/s: proxy partial in %d of %d runs, direct full in %d of %d runs",
		largest, rate>>20, p.partial, p.runs, d.full, d.runs)
	if c.runs > 0 {
		g.Measured += fmt.Sprintf(", chain (same backlog as the proxy) partial in %d of %d runs", c.partial, c.runs)
	}
	if largest < 120 || rate < 10<<20 {
		g.Measured += " (shorter or slower than the goal's case)"
	}
	g.Met = p.runs > 0 && d.runs > 0 && p.partial == p.runs && d.full == d.runs
	e.addGoal(g)
	return errors.Join(errs...)
}

// outageResult is what one (T, topology, repetition) measured.
type outageResult struct {
	partial, full bool            // resyncs seen in the replica's log after its restart
	catchUp       time.Duration   // restart until the replica is within one writer tick
	rtts          []time.Duration // master PING round trips from restart to catch-up + 2 s, sorted
	gap           int64           // stream bytes the master wrote while the replica was down
	writeRate     float64         // the writer's achieved bytes per second
}

func outageRun(e *env, r *run, topology string, rep int, T time.Duration, rate int64) outageResult {
	step := func(format string, a ...any) {
		e.step("outage T=%v: %s #%d: %s", T, topology, rep+1, fmt.Sprintf(format, a...))
	}
	step("starting")
	t := startTopo(r, topology, 1,
		[]string{"--repl-backlog-size", "1mb"},
		tierConfig{backlog: outageBacklogSize(rate, T)})
	replica := t.replicas[0]
	w := outageStartWriter(r, t.master, rate)

	time.Sleep(outageBefore)
	step("replica down for %v", T)
	replica.ShutdownSave(r)
	down := latencyOffset(r, t.master)
	time.Sleep(T)

	var res outageResult
	res.gap = latencyOffset(r, t.master) - down
	logBefore := len(replica.Log(r))
	step("replica restarting")
	start := time.Now()
	probe := outageStartProbe(r, t.master)
	replica.Restart(r)
	res.catchUp = outageWaitCaughtUp(r, t.master, replica, rate, start)
	step("caught up after %v; probing the master %v more", res.catchUp.Round(time.Millisecond), outageAfter)
	time.Sleep(outageAfter)
	res.rtts = probe.stop(r)
	var sent int64
	sent, res.writeRate = w.stop(r)
	r.Logf("writer: %d bytes at %.1f MB/s (target %d MB/s)", sent, res.writeRate/(1<<20), rate>>20)

	step("checking digests")
	redistest.WaitInSync(r, outageSyncCheck, t.master, replica)
	log := replica.Log(r)[logBefore:]
	partials := strings.Count(log, "Master accepted a Partial Resynchronization")
	fulls := strings.Count(log, "Full resync from master")
	res.partial, res.full = partials > 0, fulls > 0
	if partials+fulls != 1 {
		r.Logf("replica resynced %d times partially and %d times fully after its restart", partials, fulls)
	}
	if partials+fulls == 0 {
		r.Fatalf("no resync in the replica's log after its restart:\n%s", log)
	}
	return res
}

// outageBacklogSize is the proxy's --backlog-size and the chain's repl-backlog-size: the
// stream of the whole run (before, outage, catch-up) with 25% and 30 s to spare, in Redis
// units.
func outageBacklogSize(rate int64, T time.Duration) string {
	mb := rate * (int64(T/time.Second) + 30) * 5 / 4 >> 20
	return strconv.FormatInt(max(mb, 64), 10) + "mb"
}

// outageWaitCaughtUp polls until the replica's link is up and its offset is within one
// writer tick of the master's, and returns the time since start. The writer keeps running,
// so the replica must outpace it; one tick's bytes is the lag of a replica that keeps up.
func outageWaitCaughtUp(r *run, master, replica *redistest.Server, rate int64, start time.Time) time.Duration {
	slack := rate * int64(outageTick) / int64(time.Second)
	var last string
	wasUp := false
	for time.Since(start) < outageCatchUp {
		// The master is read first, so the replica's offset is never older than the master's.
		mi, err1 := master.InfoErr("replication")
		ri, err2 := replica.InfoErr("replication")
		at := time.Since(start)
		if err := errors.Join(err1, err2); err != nil {
			last = err.Error()
		} else {
			moff, _ := strconv.ParseInt(mi["master_repl_offset"], 10, 64)
			roff, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
			up := ri["master_link_status"] == "up" && ri["master_sync_in_progress"] == "0"
			if up && !wasUp {
				r.Logf("replica link up %v after its restart, %d bytes behind", at.Round(time.Millisecond), moff-roff)
				wasUp = true
			}
			if up && moff-roff <= slack {
				return at
			}
			last = fmt.Sprintf("link %s, sync in progress %s, master offset %d, replica offset %d",
				ri["master_link_status"], ri["master_sync_in_progress"], moff, roff)
		}
		time.Sleep(outageTick)
	}
	r.Fatalf("replica %s not caught up %v after its restart: %s", replica.Addr(), outageCatchUp, last)
	return 0
}

// outageWriter writes pipelined SETs of 1 KB values to the master at a fixed byte rate.
type outageWriter struct {
	stopc chan struct{}
	once  sync.Once
	done  chan struct{}
	// Set by the goroutine, read after done.
	sent    int64
	elapsed time.Duration
	err     error
}

func outageStartWriter(r *run, master *redistest.Server, rate int64) *outageWriter {
	c := redistest.Dial(r, master.Addr())
	// Random values, so RDB compression cannot make a full sync cheaper than it would be.
	value := make([]byte, outageValueSize)
	_, _ = rand.NewChaCha8([32]byte{'o', 'u', 't', 'a', 'g', 'e'}).Read(value)
	w := &outageWriter{stopc: make(chan struct{}), done: make(chan struct{})}
	go w.loop(c, rate, value)
	// Runs before Dial's cleanup closes c: the goroutine must end even if the run Fatals.
	r.Cleanup(func() { w.halt() })
	return w
}

func (w *outageWriter) loop(c *redistest.Client, rate int64, value []byte) {
	defer close(w.done)
	perTick := rate * int64(outageTick) / int64(time.Second)
	tick := time.NewTicker(outageTick)
	defer tick.Stop()
	start := time.Now()
	var buf []byte
	key := 0
	for {
		select {
		case <-w.stopc:
			w.elapsed = time.Since(start)
			return
		case <-tick.C:
		}
		// Whatever is due by the schedule, but at most four ticks' worth at once, so a
		// stalled master gets a bounded burst rather than everything it missed.
		due := int64(float64(rate)*time.Since(start).Seconds()) - w.sent
		budget := min(due, 4*perTick)
		buf = buf[:0]
		n := 0
		for int64(len(buf)) < budget {
			buf = outageAppendSet(buf, key, value)
			key = (key + 1) % outageKeys
			n++
		}
		if n == 0 {
			continue
		}
		if err := c.SendRaw(buf); err != nil {
			w.err = err
			return
		}
		for range n {
			line, err := c.ReadLine()
			if err != nil || line != "+OK" {
				w.err = fmt.Errorf("SET replied %q, %v", line, err)
				return
			}
		}
		w.sent += int64(len(buf))
	}
}

// halt ends the goroutine and waits for it.
func (w *outageWriter) halt() {
	w.once.Do(func() { close(w.stopc) })
	<-w.done
}

// stop ends the writer and returns the bytes it sent and its rate in bytes per second.
func (w *outageWriter) stop(r *run) (int64, float64) {
	w.halt()
	if w.err != nil {
		r.Fatalf("writer: %v", w.err)
	}
	return w.sent, float64(w.sent) / w.elapsed.Seconds()
}

// outageAppendSet appends SET outage:<key> <value> in RESP.
func outageAppendSet(b []byte, key int, value []byte) []byte {
	k := "outage:" + strconv.Itoa(key)
	b = fmt.Appendf(b, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(k), k, len(value))
	b = append(b, value...)
	return append(b, '\r', '\n')
}

// outageProbe sends PING to the master every millisecond over its own connection and keeps
// each round trip.
type outageProbe struct {
	stopc chan struct{}
	once  sync.Once
	done  chan struct{}
	rtts  []time.Duration // set by the goroutine, read after done
	err   error
}

func outageStartProbe(r *run, master *redistest.Server) *outageProbe {
	c := redistest.Dial(r, master.Addr())
	p := &outageProbe{stopc: make(chan struct{}), done: make(chan struct{})}
	go p.loop(c)
	r.Cleanup(func() { p.halt() })
	return p
}

func (p *outageProbe) loop(c *redistest.Client) {
	defer close(p.done)
	next := time.Now()
	for {
		select {
		case <-p.stopc:
			return
		default:
		}
		t0 := time.Now()
		if v, err := c.Do("PING"); err != nil || v.String() != "PONG" {
			p.err = fmt.Errorf("PING: %v %v", v, err)
			return
		}
		p.rtts = append(p.rtts, time.Since(t0))
		// One PING per millisecond; after a slow one the next goes at once, without a
		// burst to make up for the missed ones (a stall shows in max, not in extra samples).
		next = next.Add(outageProbeGap)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else {
			next = time.Now()
		}
	}
}

func (p *outageProbe) halt() {
	p.once.Do(func() { close(p.stopc) })
	<-p.done
}

// stop ends the probe and returns its round trips, sorted.
func (p *outageProbe) stop(r *run) []time.Duration {
	p.halt()
	if p.err != nil {
		r.Fatalf("master latency probe: %v", p.err)
	}
	if len(p.rtts) == 0 {
		r.Fatalf("master latency probe: no samples")
	}
	slices.Sort(p.rtts)
	return p.rtts
}

// outageLengths parses the -outages flag: comma-separated positive seconds.
func outageLengths(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-outages %q: %q is not a positive number of seconds", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func outageBool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
