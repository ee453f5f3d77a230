package streamrate

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// feed adds one sample a second from t0: offset off(i) in epoch epoch(i).
func feed(m *Meter, t0 time.Time, n int, off func(i int) int64, epoch func(i int) uint64) {
	for i := range n {
		m.Add(Sample{Time: t0.Add(time.Duration(i) * time.Second), Offset: off(i), Epoch: epoch(i), OK: true})
	}
}

func one(int) uint64 { return 1 }

func TestRates(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	m := New(time.Minute, time.Hour, time.Second)
	if r := m.Rates(); r.Rate != 0 || r.Covered != 0 || r.Peak != 0 {
		t.Fatalf("no samples: %+v", r)
	}
	// 20 s at 1000 B/s: the rate covers what was sampled.
	feed(m, t0, 21, func(i int) int64 { return int64(i) * 1000 }, one)
	if r := m.Rates(); !near(r.Rate, 1000) || r.Covered != 20*time.Second || !near(r.Peak, 1000) {
		t.Fatalf("20 s: %+v", r)
	}
	// Then 120 s at 3000 B/s: the rate is the last minute's, the peak too.
	m = New(time.Minute, time.Hour, time.Second)
	feed(m, t0, 200, func(i int) int64 {
		if i <= 80 {
			return int64(i) * 1000
		}
		return 80*1000 + int64(i-80)*3000
	}, one)
	if r := m.Rates(); !near(r.Rate, 3000) || r.Covered != time.Minute || !near(r.Peak, 3000) {
		t.Fatalf("3000 B/s: %+v", r)
	}
	// A burst of 30 s at 10 kB/s, then silence for two minutes: rate 0, the peak is the
	// best minute, which held the whole burst (300 kB / 60 s).
	m = New(time.Minute, time.Hour, time.Second)
	feed(m, t0, 300, func(i int) int64 { return int64(min(max(i-100, 0), 30)) * 10000 }, one)
	if r := m.Rates(); r.Rate != 0 || !near(r.Peak, 5000) {
		t.Fatalf("burst then silence: %+v", r)
	}
}

// A new epoch restarts the offsets elsewhere: the jump is no traffic, in either direction.
func TestRatesAcrossEpochs(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, jump := range []int64{-1 << 30, 1 << 40} {
		m := New(time.Minute, time.Hour, time.Second)
		feed(m, t0, 120, func(i int) int64 {
			if i < 60 {
				return int64(i) * 100
			}
			return 1<<40 + jump + int64(i)*100
		}, func(i int) uint64 { return uint64(1 + i/60) })
		if r := m.Rates(); !near(r.Rate, 100) || !near(r.Peak, 100) {
			t.Fatalf("jump %d: %+v", jump, r)
		}
	}
	// No history: no rate; a gap in sampling longer than a window is not averaged in.
	m := New(time.Minute, time.Hour, time.Second)
	m.Add(Sample{Time: t0})
	m.Add(Sample{Time: t0.Add(time.Second)})
	if r := m.Rates(); r.Rate != 0 || r.Covered != 0 || !r.Last.Equal(t0.Add(time.Second)) {
		t.Fatalf("no history: %+v", r)
	}
	m.Add(Sample{Time: t0.Add(2 * time.Second), Offset: 10, Epoch: 1, OK: true})
	m.Add(Sample{Time: t0.Add(time.Hour), Offset: 1 << 30, Epoch: 1, OK: true})
	if r := m.Rates(); r.Rate != 0 || r.Covered != 0 {
		t.Fatalf("gap: %+v", r)
	}
}

// The ring keeps an hour: a peak older than that is forgotten.
func TestPeakForgotten(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	m := New(time.Minute, time.Hour, time.Second)
	feed(m, t0, 2*3600, func(i int) int64 {
		if i < 600 {
			return int64(i) * 5000
		}
		return 600*5000 + int64(i-600)*1000
	}, one)
	if r := m.Rates(); !near(r.Rate, 1000) || !near(r.Peak, 1000) {
		t.Fatalf("after two hours: %+v", r)
	}
}

func TestCoverageAndSize(t *testing.T) {
	if c := Coverage(64<<20, 2<<20); c != 32 {
		t.Fatalf("coverage %v", c)
	}
	if c := Coverage(64<<20, 0); c != -1 {
		t.Fatalf("coverage with no writes %v", c)
	}
	if s := SizeFor(5*time.Minute, 2<<20); s != 600<<20 {
		t.Fatalf("size for 5 min %d", s)
	}
}

func TestRun(t *testing.T) {
	m := New(0, 0, 10*time.Millisecond)
	var off atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, func() (int64, uint64, bool) { return off.Add(1000), 1, true })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for m.Rates().Covered < 50*time.Millisecond && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if r := m.Rates(); r.Rate <= 0 {
		t.Fatalf("Run: %+v", r)
	}
}
