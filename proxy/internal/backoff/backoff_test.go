package backoff

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond}
	for i, want := range []time.Duration{100, 200, 400, 500, 500} {
		if got := b.Next(); got != want*time.Millisecond {
			t.Fatalf("step %d: %v, want %v", i, got, want*time.Millisecond)
		}
	}
	b.Reset()
	if b.Current() != 0 || b.Next() != 100*time.Millisecond {
		t.Fatal("Reset does not start over from Min")
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Sleep(ctx, time.Millisecond) {
		t.Fatal("a whole delay reported as cut short")
	}
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("a cancelled sleep reported as whole")
	}
}
