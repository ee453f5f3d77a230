// Package backoff holds the exponential backoff every retry loop of psync-proxy uses: the
// master link, a backlog that cannot store, the accept loop and snapshot fetches.
package backoff

import (
	"context"
	"time"
)

// Backoff doubles a delay from Min up to Max. The zero delay is where it starts and where
// Reset puts it back: the first Next returns Min.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay to wait now and doubles it for the next time, within [Min, Max].
func (b *Backoff) Next() time.Duration {
	b.cur = min(max(b.cur*2, b.Min), b.Max)
	return b.cur
}

// Current is the delay Next returned last; 0 after Reset.
func (b *Backoff) Current() time.Duration { return b.cur }

// Reset starts over from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends, and reports whether the whole delay passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
