package backlog

import "testing"

func TestDbg(t *testing.T) {
	r := newRing(MinSize, 1, 5003)
	p := make([]byte, 3000)
	r.Append(make([]byte, MinSize+3*5003))
	for i := range 30 {
		m := r.Mem()
		r.Append(p)
		t.Logf("%d: first %d end %d base %d n %d spare %v mem %d -> %d", i, r.First(), r.End(), r.base, r.blocks.n, r.spare != nil, m, r.Mem())
	}
}
