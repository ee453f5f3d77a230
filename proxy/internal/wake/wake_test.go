package wake

import "testing"

func TestBroadcast(t *testing.T) {
	var b Broadcast
	b.Notify() // nobody waits: nothing to close
	w1, w2 := b.Wait(), b.Wait()
	if w1 != w2 {
		t.Fatal("two waiters before a change got different channels")
	}
	select {
	case <-w1:
		t.Fatal("closed before Notify")
	default:
	}
	b.Notify()
	<-w1
	select {
	case <-b.Wait():
		t.Fatal("a wait after Notify is already closed")
	default:
	}
}
