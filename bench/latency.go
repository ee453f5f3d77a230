package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	tresp "github.com/tidwall/resp"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

const (
	latencyRate    = 500 // probes per second
	latencyChannel = "probe"
	// latencyDrain is how long the subscriber may take to receive the last probes after the
	// publisher's last one; under heavy load the replica can lag by seconds.
	latencyDrain = 30 * time.Second
)

// runLatency measures end-to-end replication latency with probes: PUBLISH is propagated in
// the replication stream, so a subscriber on the replica receives each message once the
// replica has applied that part of the stream. The message carries its send time; publisher
// and subscriber share this process's clock. Case "light" has no other load; case "heavy"
// runs redis-benchmark SET -P 16 on the master meanwhile.
func runLatency(e *env) error {
	dur := 10 * time.Second
	if e.cfg.quick {
		dur = 2 * time.Second
	}
	err := e.each("latency", func(r *run, topology string, rep int) {
		t := startTopo(r, topology, 1, nil, tierConfig{})
		// Right after its sync, a replica whose link is up may not get the stream for up to a
		// second (seen in every topology): one write seen on the replica proves it flows.
		t.master.MustDo(r, "SET", "latency:ready", "1")
		redistest.WaitInSync(r, 30*time.Second, t.master, t.replicas...)
		rec := func(kase, metric, unit string, v float64) {
			e.record(result{Scenario: "latency", Case: kase, Topology: topology, Rep: rep, Metric: metric, Unit: unit, Value: v})
		}
		recLat := func(kase string, lat []time.Duration) {
			rec(kase, "p50_us", "µs", latencyMicros(latencyPercentile(lat, 0.50)))
			rec(kase, "p99_us", "µs", latencyMicros(latencyPercentile(lat, 0.99)))
			rec(kase, "max_us", "µs", latencyMicros(lat[len(lat)-1]))
		}

		e.step("latency: %s #%d: light, %v of probes", topology, rep+1, dur)
		recLat("light", latencyProbe(r, t.master, t.replicas[0], dur))

		e.step("latency: %s #%d: heavy, %v of probes under redis-benchmark", topology, rep+1, dur)
		// One key (no -r) so the dataset stays small; -n large enough to outlast the probes.
		var stop func()
		r.asClient(func() {
			stop = redistest.BenchmarkAsync(r, t.master, "-P", "16", "-t", "set", "-d", "100", "-n", "1000000000")
		})
		time.Sleep(time.Second) // let the load ramp up before the first probe
		off0, t0 := latencyOffset(r, t.master), time.Now()
		lat := latencyProbe(r, t.master, t.replicas[0], dur)
		off1, t1 := latencyOffset(r, t.master), time.Now()
		stop()
		recLat("heavy", lat)
		// The load's stream rate, so a heavy case that ran lighter through the proxy shows.
		rec("heavy", "load_mb_s", "MB/s", float64(off1-off0)/(1<<20)/t1.Sub(t0).Seconds())
		redistest.WaitInSync(r, 2*time.Minute, t.master, t.replicas...)
	})

	latencyGoal(e)
	return err
}

// latencyGoal states the latency targets at light load: the proxy's added p50 over
// direct at or below the chain's, measured in the same run, and at most +20 µs; its added
// p99 at most +60 µs. The heavy case is shown for information.
func latencyGoal(e *env) {
	added := func(kase, topology, metric string) (float64, bool) {
		d, okd := e.median("latency", kase, "direct", metric)
		v, ok := e.median("latency", kase, topology, metric)
		return v - d, okd && ok
	}
	g := goal{Name: "latency: added over direct, light load",
		Target: "proxy p50 <= chain p50 (same run) and <= +20 µs; proxy p99 <= +60 µs", Measured: "no result"}
	p50, ok1 := added("light", "proxy", "p50_us")
	p99, ok2 := added("light", "proxy", "p99_us")
	if ok1 && ok2 {
		g.Measured = fmt.Sprintf("proxy %+.0f µs p50, %+.0f µs p99", p50, p99)
		g.Met = p50 <= 20 && p99 <= 60
		c50, ok3 := added("light", "chain", "p50_us")
		c99, ok4 := added("light", "chain", "p99_us")
		if ok3 && ok4 {
			g.Measured += fmt.Sprintf("; chain %+.0f µs p50, %+.0f µs p99", c50, c99)
		}
		// Without a chain in the run the comparison with it cannot be made: not met.
		g.Met = g.Met && ok3 && p50 <= c50
		var heavy []string
		for _, t := range []string{"chain", "proxy"} {
			h50, ok5 := added("heavy", t, "p50_us")
			h99, ok6 := added("heavy", t, "p99_us")
			if ok5 && ok6 {
				heavy = append(heavy, fmt.Sprintf("%s %+.0f µs p50, %+.0f µs p99", t, h50, h99))
			}
		}
		if len(heavy) > 0 {
			g.Measured += " (heavy load, for information: " + strings.Join(heavy, "; ") + ")"
		}
	}
	e.addGoal(g)
}

// latencyProbe publishes latencyRate probes per second for dur on master and returns the
// latency of each as received by a subscriber on replica, sorted. It Fatals unless every
// probe arrives, once and in order.
func latencyProbe(r *run, master, replica *redistest.Server, dur time.Duration) []time.Duration {
	sub := redistest.Dial(r, replica.Addr())
	defer sub.Close()
	if v, err := sub.Do("SUBSCRIBE", latencyChannel); err != nil || len(v.Array()) != 3 || v.Array()[0].String() != "subscribe" {
		r.Fatalf("SUBSCRIBE on %s: %v %v", replica.Addr(), v, err)
	}
	pub := redistest.Dial(r, master.Addr())
	defer pub.Close()

	// Timestamps are Unix nanoseconds taken from the monotonic clock (base plus elapsed), so
	// a wall-clock step during the run cannot distort a latency.
	base := time.Now()
	now := func() int64 { return base.UnixNano() + int64(time.Since(base)) }
	n := int(dur.Seconds() * latencyRate)

	type received struct {
		lat []time.Duration
		err error
	}
	done := make(chan received, 1)
	go func() {
		var res received
		defer func() { done <- res }()
		last := int64(0)
		for len(res.lat) < n {
			v, err := sub.ReadValue()
			at := now()
			if err != nil {
				res.err = fmt.Errorf("after %d of %d probes: %w", len(res.lat), n, err)
				return
			}
			sent, err := latencyMessage(v)
			if err != nil {
				res.err = err
				return
			}
			if sent <= last {
				res.err = fmt.Errorf("probe %d arrived after probe %d", sent, last)
				return
			}
			last = sent
			res.lat = append(res.lat, time.Duration(at-sent))
		}
	}()
	// The reader must have ended before this function returns, also when it Fatals.
	var res received
	gotRes := false
	defer func() {
		if !gotRes {
			sub.Close()
			<-done
		}
	}()

	interval := time.Second / latencyRate
	start := time.Now()
	for i := range n {
		// Probes are sent on a fixed schedule, so a slow reply does not thin out later ones.
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		if _, err := pub.Do("PUBLISH", latencyChannel, strconv.FormatInt(now(), 10)); err != nil {
			r.Fatalf("PUBLISH on %s: %v", master.Addr(), err)
		}
	}
	// ReadValue's own 10 s deadline would end the reader too, but only per message; this
	// bounds the whole drain.
	timer := time.NewTimer(latencyDrain)
	defer timer.Stop()
	select {
	case res = <-done:
	case <-timer.C:
		sub.Close()
		res = <-done
	}
	gotRes = true
	if res.err != nil {
		r.Fatalf("subscriber on %s: %v", replica.Addr(), res.err)
	}
	if len(res.lat) != n {
		r.Fatalf("subscriber on %s received %d of %d probes", replica.Addr(), len(res.lat), n)
	}
	slices.Sort(res.lat)
	return res.lat
}

// latencyMessage returns the send time carried by a pub/sub message.
func latencyMessage(v tresp.Value) (int64, error) {
	a := v.Array()
	if len(a) != 3 || a[0].String() != "message" || a[1].String() != latencyChannel {
		return 0, fmt.Errorf("unexpected message %v", v)
	}
	sent, err := strconv.ParseInt(a[2].String(), 10, 64)
	if err != nil {
		return 0, errors.New("probe payload " + strconv.Quote(a[2].String()))
	}
	return sent, nil
}

// latencyPercentile is the nearest-rank percentile (0 < p <= 1) of sorted values.
func latencyPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func latencyMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func latencyOffset(r *run, s *redistest.Server) int64 {
	v := s.Info(r, "replication")["master_repl_offset"]
	off, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.Fatalf("%s master_repl_offset %q: %v", s.Addr(), v, err)
	}
	return off
}
