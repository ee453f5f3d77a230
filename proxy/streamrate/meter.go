// Package streamrate measures how fast the master writes its replication stream, the way
// the troubleshooting guide has operators do it by hand: sample master_repl_offset, divide
// the bytes by the seconds. From the rate follow the backlog's coverage (how many seconds of
// stream it holds) and the guide's sizing rule (rate x the longest outage to survive).
//
// A Meter keeps one sample a second for an hour: the rate is the average over the last
// minute, the peak the highest one-minute average of the hour.
package streamrate

import (
	"context"
	"sync"
	"time"
)

// Defaults of New.
const (
	// Window is what the rate is averaged over, as the guide measures it: a minute.
	Window = time.Minute
	// Keep is how far back the peak rate looks.
	Keep = time.Hour
	// Every is how often Run samples the offset.
	Every = time.Second
)

// Sample is the stream's offset at one time. Offsets of different epochs (a full resync
// upstream restarts the stream elsewhere) are not comparable; OK false means there was no
// stream to sample (no history yet).
type Sample struct {
	Time   time.Time
	Offset int64
	Epoch  uint64
	OK     bool
}

// Meter holds the samples of the last Keep. Its methods are safe for concurrent use.
type Meter struct {
	window, keep, every time.Duration

	mu   sync.Mutex
	ring []Sample // ring[(head+i)%len] for i < n, oldest first
	head int
	n    int
}

// New returns a Meter averaging over window and keeping samples for keep (window and keep
// of zero take Window and Keep), sized for one sample each every.
func New(window, keep, every time.Duration) *Meter {
	if window <= 0 {
		window = Window
	}
	if keep < window {
		keep = max(Keep, window)
	}
	if every <= 0 {
		every = Every
	}
	return &Meter{window: window, keep: keep, every: every, ring: make([]Sample, int(keep/every)+2)}
}

// Run samples read once every New's interval until ctx ends. read returns the stream's
// current offset and epoch, ok false when there is none.
func (m *Meter) Run(ctx context.Context, read func() (off int64, epoch uint64, ok bool)) {
	tick := time.NewTicker(m.every)
	defer tick.Stop()
	for {
		off, epoch, ok := read()
		m.Add(Sample{Time: time.Now(), Offset: off, Epoch: epoch, OK: ok})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Add records a sample, newer than the ones before it.
func (m *Meter) Add(s Sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == len(m.ring) {
		m.head = (m.head + 1) % len(m.ring)
		m.n--
	}
	m.ring[(m.head+m.n)%len(m.ring)] = s
	m.n++
}

// Rates are the stream's rates as of the last sample.
type Rates struct {
	// Rate is the average in bytes per second over the last Window, or over the time sampled
	// so far when shorter (Covered says how long). 0 with no writes.
	Rate float64
	// Covered is the time Rate averages over: Window once sampling has run that long in one
	// epoch; 0 when there is no rate yet.
	Covered time.Duration
	// Peak is the highest Window average of the last Keep (Rate until one Window has passed).
	Peak float64
	// Last is the time of the last sample; zero before the first.
	Last time.Time
}

// interval is the stream between two consecutive samples of one epoch.
type interval struct {
	end   time.Time
	dt    time.Duration
	bytes int64
}

// Rates returns the rates measured from the samples held.
func (m *Meter) Rates() Rates {
	m.mu.Lock()
	ivs := m.intervalsLocked()
	var last time.Time
	if m.n > 0 {
		last = m.ring[(m.head+m.n-1)%len(m.ring)].Time
	}
	m.mu.Unlock()
	r := Rates{Last: last}
	if len(ivs) == 0 {
		return r
	}
	// Slide a window over the intervals: its average at each end is a candidate peak, the
	// one at the last end is the rate.
	var bytes int64
	var dt time.Duration
	lo, full := 0, false
	for hi, iv := range ivs {
		bytes += iv.bytes
		dt += iv.dt
		for lo < hi && iv.end.Sub(ivs[lo].end) >= m.window {
			bytes -= ivs[lo].bytes
			dt -= ivs[lo].dt
			lo++
		}
		if dt <= 0 {
			continue
		}
		r.Rate, r.Covered = float64(bytes)/dt.Seconds(), dt
		// Only whole windows compete for the peak: the first seconds alone would make a
		// burst look like a minute of it.
		if span := iv.end.Sub(ivs[lo].end.Add(-ivs[lo].dt)); span >= m.window*9/10 {
			r.Peak, full = max(r.Peak, r.Rate), true
		}
	}
	if !full {
		r.Peak = r.Rate
	}
	return r
}

// intervalsLocked returns the intervals between consecutive samples of the same epoch in
// which the offset did not go back. A gap in sampling longer than a window (the process was
// stopped) is left out too, rather than averaged into a window. Caller holds mu.
func (m *Meter) intervalsLocked() []interval {
	ivs := make([]interval, 0, m.n)
	for i := 1; i < m.n; i++ {
		a, b := m.ring[(m.head+i-1)%len(m.ring)], m.ring[(m.head+i)%len(m.ring)]
		dt := b.Time.Sub(a.Time)
		if !a.OK || !b.OK || a.Epoch != b.Epoch || b.Offset < a.Offset || dt <= 0 || dt > m.window {
			continue
		}
		ivs = append(ivs, interval{end: b.Time, dt: dt, bytes: b.Offset - a.Offset})
	}
	return ivs
}

// Coverage is how many seconds of stream held bytes are at rate: how long ago a replica
// could have left and still resume now, and once the backlog is full, how long one leaving
// now can stay away. -1 when there is no rate (no writes).
func Coverage(held int64, rate float64) float64 {
	if rate <= 0 {
		return -1
	}
	return float64(max(held, 0)) / rate
}

// SizeFor is the guide's backlog size for an outage: rate x its length, in bytes.
func SizeFor(outage time.Duration, rate float64) int64 {
	return int64(rate * outage.Seconds())
}
