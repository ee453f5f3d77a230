package sentinel

import "fmt"

// event is what a Sentinel link tells Run: an answer to
// GET-MASTER-ADDR-BY-NAME or a +switch-master for our master.
type event struct {
	from     string // the Sentinel's address
	addr     string // the master's address, host:port
	epoch    int64  // answers: the Sentinel's config epoch for the master, -1 if unknown
	switched bool   // a +switch-master message rather than an answer
	failed   bool   // no answer: the Sentinel could not be asked (only from and failed are set)
	payload  string // the +switch-master payload, for the reason
}

// tracker decides which events change the master to follow. It is used by
// Run's goroutine only.
type tracker struct {
	name string // the master's name, for the reasons
	addr string // the address last reported, "" before the first report
	// epoch is a lower bound on the config epoch of addr, -1 when unknown.
	// After a +switch-master it is the previous epoch plus one: every
	// +switch-master comes from a failover, whose epoch is greater than that of
	// every earlier configuration.
	epoch int64
}

// apply reports whether ev moves the master (then t.addr is the new address and
// why says why) and, if ev was set aside as stale, a line saying so.
func (t *tracker) apply(ev event) (why string, moved bool, ignored string) {
	if ev.switched {
		return t.applySwitch(ev)
	}
	switch {
	case t.addr == "":
		why = fmt.Sprintf("Sentinel %s gives %s for master %s (SENTINEL GET-MASTER-ADDR-BY-NAME%s)",
			ev.from, ev.addr, t.name, epochNote(ev.epoch))
	case ev.addr == t.addr:
		t.epoch = max(t.epoch, ev.epoch)
		return "", false, ""
	case ev.epoch >= 0 && t.epoch >= 0 && ev.epoch <= t.epoch:
		return "", false, fmt.Sprintf("Sentinel %s still gives %s with config epoch %d; following %s (config epoch %d or later) instead",
			ev.from, ev.addr, ev.epoch, t.addr, t.epoch)
	default:
		why = fmt.Sprintf("Sentinel %s gives %s, no longer %s, on re-asking (SENTINEL GET-MASTER-ADDR-BY-NAME%s)",
			ev.from, ev.addr, t.addr, epochNote(ev.epoch))
	}
	t.addr, t.epoch = ev.addr, ev.epoch
	return why, true, ""
}

func (t *tracker) applySwitch(ev event) (why string, moved bool, ignored string) {
	if ev.addr == t.addr {
		return "", false, ""
	}
	t.addr = ev.addr
	if t.epoch >= 0 {
		t.epoch++
	}
	return fmt.Sprintf("+switch-master %s (from Sentinel %s)", ev.payload, ev.from), true, ""
}

func epochNote(epoch int64) string {
	if epoch < 0 {
		return ", config epoch unknown"
	}
	return fmt.Sprintf(", config epoch %d", epoch)
}

// opening gathers the Sentinels' first answers, so that Run starts from the
// most recent configuration rather than from whichever Sentinel is fastest.
type opening struct {
	n     int             // Sentinels configured
	heard map[string]bool // Sentinels that answered or could not be asked
	best  event           // the answer with the greatest epoch, the first of equals
	has   bool            // best is set
	done  bool            // the opening is over
}

// offer takes an event during the opening and reports whether the opening is
// over: every Sentinel was heard from and one answered, or a +switch-master
// came (a failover is under way: waiting for the others is no use).
func (o *opening) offer(ev event) bool {
	if ev.switched {
		return true
	}
	o.heard[ev.from] = true
	if !ev.failed && (!o.has || ev.epoch > o.best.epoch) {
		o.best, o.has = ev, true
	}
	return o.has && len(o.heard) == o.n
}
