package proxy

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/psync-proxy/psync-proxy/backlog"
)

// The acceptance test must be Redis's masterTryPartialResynchronization, case for case.
func TestTryPartial(t *testing.T) {
	id := strings.Repeat("a", 40)
	id2 := strings.Repeat("b", 40)
	ring := backlog.NewRing(64<<10, 101) // history before 101 is not held
	ring.Append(make([]byte, 100))       // holds 101..200
	p := &Proxy{log: zap.NewNop().Sugar(), replid: id, replid2: id2, secondOff: 151, ring: ring}
	r := &replica{addr: "test"}
	for _, tc := range []struct {
		replid string
		off    int64
		ok     bool
	}{
		{id, 101, true},                       // first byte held
		{id, 150, true},                       // middle
		{id, 201, true},                       // end+1: nothing to send, still a partial resync
		{strings.ToUpper(id), 150, true},      // IDs compare case-insensitively
		{id, 100, false},                      // before the backlog
		{id, 202, false},                      // past the end: never guess
		{id2, 151, true},                      // previous ID up to second_repl_offset
		{id2, 152, false},                     // past the fork point of the previous ID
		{id2, 100, false},                     // previous ID, but not in the backlog
		{"?", -1, false},                      // a fresh replica
		{strings.Repeat("c", 40), 150, false}, // unknown ID
		{zeroReplid, 150, false},              // zero ID never matches (replid2 unset case below)
	} {
		_, ok := p.tryPartialLocked(r, syncRequest{psync: true, replid: tc.replid, offset: tc.off})
		if ok != tc.ok {
			t.Errorf("PSYNC %s %d: partial=%v, want %v", tc.replid[:4], tc.off, ok, tc.ok)
		}
	}
	p.replid2, p.secondOff = zeroReplid, -1
	if _, ok := p.tryPartialLocked(r, syncRequest{psync: true, replid: zeroReplid, offset: 150}); ok {
		t.Errorf("unset replid2 matched")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1", 1, false}, {"100b", 100, false}, {"1k", 1000, false}, {"1kb", 1024, false},
		{"1KB", 1024, false}, {"2m", 2000000, false}, {"512mb", 512 << 20, false},
		{"1g", 1000000000, false}, {"4gb", 4 << 30, false}, {" 16mb ", 16 << 20, false},
		{"", 0, true}, {"mb", 0, true}, {"1.5gb", 0, true}, {"-1", 0, true}, {"1tb", 0, true},
		{"99999999999999999999", 0, true}, {"9999999999gb", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
