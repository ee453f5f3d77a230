package proxy

import (
	"strings"
	"testing"
)

// The guard passes whatever Redis accepts from a client, in pieces of any size, and stops at
// what Redis refuses, handing redcon the whole commands before it and never the bad one whole.
func TestRequestGuard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		good int // bytes passed on; len(in) when no error
		err  string
	}{
		{in: "PING\r\n*1\r\n$4\r\nPING\r\n\r\n\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\nINFO replication\n"},
		{in: "*0\r\n*-1\r\nset a b\r\n*1\r\n$3\r\nabc"},
		{in: "*99999999999\r\n", err: "length over 1048576"},
		{in: "PING\r\n*2\r\n$4\r\nECHO\r\n$9223372036854775807\r\n", good: 6, err: "length over 536870912"},
		{in: "*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n", good: 14, err: "unexpected 'x' in a number"},
		{in: "*1\r\n$4\r\nPINGxx", good: 0, err: "bulk data not followed by CRLF"},
		{in: "PING\r\n" + strings.Repeat("a", maxInline+1), good: 6, err: "too big inline request"},
	} {
		for _, piece := range []int{1, 3, 1 << 20} {
			g := newRequestGuard()
			good := 0
			var err error
			for in := tc.in; len(in) > 0 && err == nil; {
				p := in[:min(piece, len(in))]
				var k int
				if k, err = g.feed([]byte(p)); err == nil {
					k = len(p)
				}
				good += k
				in = in[len(p):]
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("%.40q in pieces of %d: %v", tc.in, piece, err)
			case tc.err != "" && (err == nil || g.detail != tc.err):
				t.Errorf("%.40q in pieces of %d: error %v, want %q", tc.in, piece, err, tc.err)
			case tc.err != "" && (good < tc.good || piece == 1<<20 && good != tc.good):
				// Pieces before the failing one were passed whole, but they end inside the
				// bad command, which redcon never completes.
				t.Errorf("%.40q in pieces of %d: %d bytes passed, want %d", tc.in, piece, good, tc.good)
			}
		}
	}
}
