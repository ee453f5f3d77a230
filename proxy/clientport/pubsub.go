package clientport

import (
	"strings"
	"sync"

	"github.com/tidwall/redcon"
)

// Pub/Sub, as much of Redis's as Sentinel uses: every Sentinel subscribes to
// __sentinel__:hello on each instance it monitors, the proxy included (it is a replica of the
// master), and publishes its hello message there every two seconds; a link where SUBSCRIBE or
// PUBLISH fails is dropped and redialled over and over. Any channel works; patterns and
// RESP3 push messages do not. A subscribed connection is taken over from redcon (Detach) and
// served by two goroutines of its own: a reader of its commands and a writer of its queue,
// so that PUBLISH never waits for a subscriber. redcon's own PubSub writes to every
// subscriber from the publisher's goroutine, so one stuck subscriber would stall PUBLISH.

// Limits of one subscriber.
const (
	maxSubscriberChannels = 128     // channels one connection may subscribe to
	maxSubscriberPending  = 1 << 20 // bytes queued for it; past this it is disconnected, as Redis's client-output-buffer-limit pubsub does
)

// hub is the port's channels and subscribers. Port.Close closes it.
type hub struct {
	mu     sync.Mutex
	chans  map[string]map[*subscriber]struct{}
	subs   map[*subscriber]struct{}
	closed bool
	wg     sync.WaitGroup // the subscribers' goroutines
}

// subscriber is one subscribed connection.
type subscriber struct {
	p     *Port
	c     *client
	dc    redcon.DetachedConn // its reader goroutine reads, its writer goroutine writes
	chans map[string]bool     // guarded by hub.mu

	qmu     sync.Mutex
	queue   [][]byte
	pending int
	ending  bool          // no more writes after the queue: the writer closes the connection
	wake    chan struct{} // cap 1: the queue changed
}

// cmdSubscribe takes the connection over as a subscriber (SUBSCRIBE channel [channel ...]).
func cmdSubscribe(x *call) {
	p := x.p
	s := &subscriber{p: p, c: x.c, chans: make(map[string]bool), wake: make(chan struct{}, 1)}
	// Redis never closes a subscriber for idleness; the commands it may still send are few.
	x.c.conn.SetIdleTimeout(0)
	// It stays in the registry (CLIENT LIST, CLIENT KILL TYPE pubsub) until its writer ends.
	x.c.info.pubsub.Store(true)
	s.dc = x.conn.Detach()
	if !p.pubsub.add(s) {
		x.c.conn.Close()
		p.clients.Add(-1)
		p.reg.remove(x.c)
		return
	}
	s.subscribe(x.args)
	go s.read()
	go s.write()
}

// add registers s and its two goroutines, unless the hub is closed.
func (h *hub) add(s *subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if h.subs == nil {
		h.subs, h.chans = make(map[*subscriber]struct{}), make(map[string]map[*subscriber]struct{})
	}
	h.subs[s] = struct{}{}
	h.wg.Add(2)
	return true
}

// close disconnects every subscriber and waits until their goroutines have ended.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	for s := range h.subs {
		s.c.conn.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// remove forgets s and its channels.
func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range s.chans {
		h.unsubscribeLocked(s, ch)
	}
	delete(h.subs, s)
}

func (h *hub) unsubscribeLocked(s *subscriber, ch string) {
	delete(s.chans, ch)
	if m := h.chans[ch]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.chans, ch)
		}
	}
}

// publish queues msg for every subscriber of ch and returns how many there are.
func (h *hub) publish(ch, msg string) int {
	var b []byte
	b = redcon.AppendArray(b, 3)
	b = redcon.AppendBulkString(b, "message")
	b = redcon.AppendBulkString(b, ch)
	b = redcon.AppendBulkString(b, msg)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.chans[ch] {
		s.send(b)
	}
	return len(h.chans[ch])
}

func cmdPublish(x *call) {
	x.conn.WriteInt(x.p.pubsub.publish(string(x.args[0]), string(x.args[1])))
}

// subscribe adds the channels and queues one confirmation each, with the count after it.
func (s *subscriber) subscribe(chans [][]byte) {
	h := &s.p.pubsub
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range chans {
		ch := string(a)
		if !s.chans[ch] && len(s.chans) >= maxSubscriberChannels {
			s.send(redcon.AppendError(nil, "ERR psync-proxy allows at most 128 channels per subscriber"))
			continue
		}
		s.chans[ch] = true
		m := h.chans[ch]
		if m == nil {
			m = make(map[*subscriber]struct{})
			h.chans[ch] = m
		}
		m[s] = struct{}{}
		s.send(confirmation("subscribe", ch, len(s.chans)))
	}
}

// unsubscribe removes the channels named, or all of them, with one confirmation each.
func (s *subscriber) unsubscribe(chans [][]byte) {
	h := &s.p.pubsub
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(chans))
	for _, a := range chans {
		names = append(names, string(a))
	}
	if len(chans) == 0 {
		for ch := range s.chans {
			names = append(names, ch)
		}
		if len(names) == 0 {
			b := redcon.AppendArray(nil, 3)
			b = redcon.AppendBulkString(b, "unsubscribe")
			s.send(redcon.AppendInt(redcon.AppendNull(b), 0))
			return
		}
	}
	for _, ch := range names {
		h.unsubscribeLocked(s, ch)
		s.send(confirmation("unsubscribe", ch, len(s.chans)))
	}
}

func confirmation(kind, ch string, count int) []byte {
	b := redcon.AppendArray(nil, 3)
	b = redcon.AppendBulkString(b, kind)
	b = redcon.AppendBulkString(b, ch)
	return redcon.AppendInt(b, int64(count))
}

// read serves the commands a subscribed connection may send until it ends.
func (s *subscriber) read() {
	defer s.p.pubsub.wg.Done()
	defer s.end()
	for {
		cmd, err := s.dc.ReadCommand()
		if err != nil || !s.command(cmd.Args) {
			return
		}
	}
}

// command runs one command of a subscribed connection; false ends the connection.
func (s *subscriber) command(args [][]byte) bool {
	if len(args) == 0 {
		return true
	}
	switch name := strings.ToLower(string(args[0])); name {
	case "subscribe", "unsubscribe":
		if name == "subscribe" && len(args) < 2 {
			s.send(redcon.AppendError(nil, "ERR wrong number of arguments for 'subscribe' command"))
		} else if name == "subscribe" {
			s.subscribe(args[1:])
		} else {
			s.unsubscribe(args[1:])
		}
	case "ping":
		if len(args) > 2 {
			s.send(redcon.AppendError(nil, "ERR wrong number of arguments for 'ping' command"))
			return true
		}
		b := redcon.AppendBulkString(redcon.AppendArray(nil, 2), "pong")
		if len(args) == 2 {
			s.send(redcon.AppendBulk(b, args[1]))
		} else {
			s.send(redcon.AppendBulkString(b, ""))
		}
	case "quit":
		s.send(redcon.AppendOK(nil))
		return false
	default:
		s.send(redcon.AppendError(nil, "ERR Can't execute '"+truncate(name, 128)+
			"': only SUBSCRIBE / UNSUBSCRIBE / PING / QUIT are allowed in this context"))
	}
	return true
}

// send queues b for the writer. A subscriber that does not read what it is sent is
// disconnected once maxSubscriberPending bytes wait for it.
func (s *subscriber) send(b []byte) {
	s.qmu.Lock()
	if s.ending {
		s.qmu.Unlock()
		return
	}
	if s.pending+len(b) > maxSubscriberPending {
		s.ending, s.queue = true, nil
		s.qmu.Unlock()
		s.p.log.Warnf("Client id=%d addr=%s closed for overcoming of output buffer limits (subscriber)", s.c.id, s.c.conn.RemoteAddr())
		s.c.conn.Close()
		return
	}
	s.queue = append(s.queue, b)
	s.pending += len(b)
	s.qmu.Unlock()
	s.notify()
}

func (s *subscriber) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// end stops the connection once the reader is done: the writer sends what is queued (QUIT's
// +OK) and closes it.
func (s *subscriber) end() {
	s.p.pubsub.remove(s)
	s.qmu.Lock()
	s.ending = true
	s.qmu.Unlock()
	s.notify()
}

// write sends the queue until the connection ends, then closes it and counts the client out.
func (s *subscriber) write() {
	defer s.p.pubsub.wg.Done()
	defer s.p.reg.remove(s.c)
	defer s.p.clients.Add(-1)
	defer s.c.conn.Close()
	for range s.wake {
		s.qmu.Lock()
		q, ending := s.queue, s.ending
		s.queue, s.pending = nil, 0
		s.qmu.Unlock()
		for _, b := range q {
			s.dc.WriteRaw(b)
		}
		if err := s.dc.Flush(); err != nil || ending {
			return
		}
	}
}
