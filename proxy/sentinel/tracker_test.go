package sentinel

import (
	"strings"
	"testing"
)

// TestTracker feeds sequences of events and checks what is reported.
func TestTracker(t *testing.T) {
	const s1, s2, s3 = "10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"
	const m, r0, r1 = "10.0.1.1:6379", "10.0.1.2:6379", "10.0.1.3:6379"
	ans := func(from, addr string, epoch int64) event { return event{from: from, addr: addr, epoch: epoch} }
	sw := func(from, addr string) event {
		return event{from: from, addr: addr, epoch: -1, switched: true, payload: "mymaster 10.0.1.1 6379 " + strings.Replace(addr, ":", " ", 1)}
	}
	type step struct {
		ev   event
		want string // the address reported, "" for none
		why  string // a part of the reason
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"start, then the same answer from every Sentinel", []step{
			{ans(s1, m, 0), m, "Sentinel 10.0.0.1:26379 gives 10.0.1.1:6379 for master mymaster (SENTINEL GET-MASTER-ADDR-BY-NAME, config epoch 0)"},
			{ans(s2, m, 0), "", ""},
			{ans(s3, m, 0), "", ""},
		}},
		{"a failover announced by three Sentinels is reported once", []step{
			{ans(s1, m, 0), m, ""},
			{sw(s1, r0), r0, "+switch-master mymaster 10.0.1.1 6379 10.0.1.2 6379 (from Sentinel 10.0.0.1:26379)"},
			{sw(s2, r0), "", ""},
			{sw(s3, r0), "", ""},
		}},
		{"a stale Sentinel asked after the failover does not move us back", []step{
			{ans(s1, m, 0), m, ""},
			{sw(s1, r0), r0, ""},
			{ans(s3, m, 0), "", ""}, // restarted from an old config
			{ans(s2, r0, 1), "", ""},
			{ans(s3, m, 0), "", ""},
			{sw(s3, r0), "", ""}, // it learns, from its peers' hellos
		}},
		{"an answer with a greater epoch moves us (a failover missed while unsubscribed)", []step{
			{ans(s1, m, 3), m, ""},
			{ans(s2, r0, 4), r0, "no longer 10.0.1.1:6379"},
			{ans(s1, m, 3), "", ""},
			{ans(s1, m, 4), "", ""}, // equal epoch, other address: not newer
		}},
		{"a second failover after the first", []step{
			{ans(s1, m, 0), m, ""},
			{sw(s1, r0), r0, ""},
			{ans(s2, r0, 1), "", ""},
			{sw(s2, r1), r1, ""},
			{ans(s3, r0, 1), "", ""}, // epoch 1 is older than r1's (2 at least)
			{ans(s3, r1, 2), "", ""},
		}},
		{"without epochs every different answer is followed (ACL without +sentinel|master)", []step{
			{ans(s1, m, -1), m, "config epoch unknown"},
			{sw(s1, r0), r0, ""},
			{ans(s3, m, -1), m, ""},
			{ans(s3, m, -1), "", ""},
		}},
		{"a +switch-master before any answer", []step{
			{sw(s2, r0), r0, ""},
			{ans(s1, m, 5), m, ""}, // epoch unknown after a bare +switch-master: follow
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tracker{name: "mymaster", epoch: -1}
			for i, st := range tc.steps {
				prev := tr.addr
				why, moved, _ := tr.apply(st.ev)
				switch {
				case st.want == "" && moved:
					t.Fatalf("step %d %+v: reported %s (%s), want nothing", i, st.ev, tr.addr, why)
				case st.want == "" && tr.addr != prev:
					t.Fatalf("step %d: address changed from %s to %s without a report", i, prev, tr.addr)
				case st.want != "" && (!moved || tr.addr != st.want):
					t.Fatalf("step %d %+v: moved=%v to %s, want %s", i, st.ev, moved, tr.addr, st.want)
				case !strings.Contains(why, st.why):
					t.Fatalf("step %d: why %q, want it to contain %q", i, why, st.why)
				}
			}
		})
	}
}

// TestOpening: the opening ends once every Sentinel was heard from, and picks
// the greatest epoch, the first of equals.
func TestOpening(t *testing.T) {
	const s1, s2, s3 = "10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"
	const m, r0 = "10.0.1.1:6379", "10.0.1.2:6379"
	for _, tc := range []struct {
		name   string
		events []event
		over   int    // index of the event that ends the opening, -1 if none
		best   string // the Sentinel whose answer is chosen, "" for none
	}{
		{"stale first", []event{{from: s3, addr: m, epoch: 0}, {from: s1, addr: r0, epoch: 1}, {from: s2, addr: r0, epoch: 1}}, 2, s1},
		{"equal epochs: the first", []event{{from: s2, addr: m, epoch: 4}, {from: s1, addr: r0, epoch: 4}, {from: s3, addr: m, epoch: 4}}, 2, s2},
		{"failures count as heard", []event{{from: s1, failed: true}, {from: s2, addr: m, epoch: 0}, {from: s3, failed: true}}, 2, s2},
		{"all failed: wait for an answer", []event{{from: s1, failed: true}, {from: s2, failed: true}, {from: s3, failed: true}, {from: s1, addr: m, epoch: -1}}, 3, s1},
		{"unknown epochs lose to known ones", []event{{from: s1, addr: m, epoch: -1}, {from: s2, addr: r0, epoch: 0}, {from: s3, failed: true}}, 2, s2},
		{"a +switch-master ends it", []event{{from: s1, addr: m, epoch: 0}, {from: s2, addr: r0, switched: true}}, 1, s1},
		{"a Sentinel still silent", []event{{from: s1, addr: m, epoch: 0}, {from: s1, addr: m, epoch: 0}, {from: s2, failed: true}}, -1, s1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opening{n: 3, heard: make(map[string]bool)}
			over := -1
			for i, ev := range tc.events {
				if o.offer(ev) {
					over = i
					break
				}
			}
			if over != tc.over {
				t.Fatalf("opening over at event %d, want %d", over, tc.over)
			}
			if got := o.best.from; o.has != (tc.best != "") || got != tc.best {
				t.Fatalf("best from %q (has %v), want %q", got, o.has, tc.best)
			}
		})
	}
}
