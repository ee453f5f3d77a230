package sentinel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	tresp "github.com/tidwall/resp"
)

// switchChannel is the Pub/Sub channel (and event name) Sentinel publishes a
// master's new address on, after a failover it led or learned from a peer
// (src/sentinel.c: sentinelFailoverSwitchToPromotedSlave, sentinelProcessHelloMessage).
const switchChannel = "+switch-master"

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// stableLink is how long a subscription must have lasted for the next
	// reconnection to start again from minBackoff.
	stableLink = time.Second
	// pingIdle is how long a quiet subscription waits before sending PING
	// (allowed in subscribed mode: the reply is ["pong", ""]). A Sentinel whose
	// host vanished without closing the connection is noticed within
	// pingIdle plus Config.Timeout.
	pingIdle = time.Second
)

// watch keeps a subscription to one Sentinel until ctx ends, reconnecting with
// backoff, and sends Run what it learns.
func (w *Watcher) watch(ctx context.Context, sentinel string, events chan<- event) {
	backoff := time.Duration(0)
	lastErr := ""
	for {
		began := time.Now()
		subscribed, err := w.subscribe(ctx, sentinel, events)
		if ctx.Err() != nil {
			return
		}
		if subscribed && time.Since(began) >= stableLink {
			backoff = 0
		}
		backoff = min(max(backoff*2, minBackoff), maxBackoff)
		switch {
		case subscribed:
			w.log.Warnf("Sentinel %s: connection lost, reconnecting in %v: %v", sentinel, backoff, err)
		case err.Error() != lastErr: // the same failure every 5 s says nothing new
			w.log.Warnf("Sentinel %s: cannot subscribe to %s, next attempt in %v: %v", sentinel, switchChannel, backoff, err)
		default:
			w.log.Debugf("Sentinel %s: cannot subscribe to %s, next attempt in %v: %v", sentinel, switchChannel, backoff, err)
		}
		lastErr = err.Error()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// subscribe connects, subscribes to +switch-master, asks the Sentinel where the
// master is (events may have been missed while not subscribed) and then passes
// on every +switch-master for our master until the link fails. subscribed says
// whether the subscription was confirmed.
func (w *Watcher) subscribe(ctx context.Context, sentinel string, events chan<- event) (subscribed bool, err error) {
	asked := false
	defer func() {
		if !asked { // Run's opening waits to hear from every Sentinel
			send(ctx, events, event{from: sentinel, failed: true})
		}
	}()
	c, err := w.dial(ctx, sentinel)
	if err != nil {
		return false, err
	}
	defer c.close()
	if err := c.send([]string{"SUBSCRIBE", switchChannel}); err != nil {
		return false, err
	}
	v, err := c.read(c.timeout)
	if err != nil {
		return false, fmt.Errorf("SUBSCRIBE %s: %w", switchChannel, err)
	}
	if err := checkSubscribed(v); err != nil {
		// Still ask: a user allowed to ask but not to subscribe then gets the
		// master's address at every retry, polling at maxBackoff.
		asked = true
		w.reask(ctx, sentinel, events)
		return false, fmt.Errorf("SUBSCRIBE %s: %w", switchChannel, err)
	}
	w.log.Infof("Sentinel %s: subscribed to %s", sentinel, switchChannel)
	asked = true
	w.reask(ctx, sentinel, events)
	return true, w.listen(ctx, c, sentinel, events)
}

// reask asks the Sentinel for the master and passes the answer, or the
// failure, to Run.
func (w *Watcher) reask(ctx context.Context, sentinel string, events chan<- event) {
	a, err := w.ask(ctx, sentinel)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warnf("Sentinel %s: cannot get the address of master %s: %v", sentinel, w.cfg.MasterName, err)
		}
		send(ctx, events, event{from: sentinel, failed: true})
		return
	}
	w.log.Debugf("Sentinel %s gives %s for master %s%s", sentinel, a.addr, w.cfg.MasterName, epochNote(a.epoch))
	send(ctx, events, event{from: sentinel, addr: a.addr, epoch: a.epoch})
}

func send(ctx context.Context, events chan<- event, ev event) {
	select {
	case events <- ev:
	case <-ctx.Done():
	}
}

// listen reads the subscription until it fails, keeping it alive with PING.
func (w *Watcher) listen(ctx context.Context, c *conn, sentinel string, events chan<- event) error {
	pinged := false
	for {
		wait := pingIdle
		if pinged {
			wait = c.timeout
		}
		v, err := c.read(wait)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !pinged {
			if err := c.send([]string{"PING"}); err != nil {
				return err
			}
			pinged = true
			continue
		}
		if err != nil {
			if pinged && errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("no reply to PING within %v", c.timeout)
			}
			return err
		}
		pinged = false
		ev, err := w.message(v, sentinel)
		if err != nil {
			return err
		}
		if ev.addr != "" {
			send(ctx, events, ev)
		}
	}
}

// message interprets one value read on the subscription: a pong, a message
// for another master (ignored), or a +switch-master for ours (ev.addr set).
// Only a value that is no Pub/Sub frame at all is an error, ending the link.
func (w *Watcher) message(v tresp.Value, sentinel string) (event, error) {
	if v.Type() == tresp.Error {
		// The reply to our PING from a user without +ping: the link is alive.
		w.log.Debugf("Sentinel %s: error reply on the subscription: %s", sentinel, v.String())
		return event{}, nil
	}
	a := v.Array()
	if v.Type() != tresp.Array || len(a) == 0 || !isText(a[0]) {
		return event{}, fmt.Errorf("unexpected reply on the subscription: %s", describe(v))
	}
	switch kind := strings.ToLower(a[0].String()); {
	case kind == "pong":
		return event{}, nil
	case kind != "message" || len(a) != 3 || !isText(a[1]) || !isText(a[2]):
		return event{}, fmt.Errorf("unexpected reply on the subscription: %s", describe(v))
	case a[1].String() != switchChannel:
		w.log.Debugf("Sentinel %s: ignoring a message on channel %q", sentinel, a[1].String())
		return event{}, nil
	}
	payload := a[2].String()
	sw, err := parseSwitchMaster(payload)
	switch {
	case err != nil:
		w.log.Warnf("Sentinel %s: ignoring a malformed %s message %q: %v", sentinel, switchChannel, payload, err)
		return event{}, nil
	case sw.name != w.cfg.MasterName:
		w.log.Debugf("Sentinel %s: %s %s (another master)", sentinel, switchChannel, payload)
		return event{}, nil
	}
	w.log.Infof("Sentinel %s: %s %s", sentinel, switchChannel, payload)
	return event{from: sentinel, addr: sw.newAddr, switched: true, payload: payload}, nil
}

// checkSubscribed checks the confirmation ["subscribe", "+switch-master", 1].
func checkSubscribed(v tresp.Value) error {
	if v.Type() == tresp.Error {
		return errors.New(v.String())
	}
	a := v.Array()
	if len(a) != 3 || !strings.EqualFold(a[0].String(), "subscribe") || a[1].String() != switchChannel {
		return fmt.Errorf("unexpected reply %s", describe(v))
	}
	return nil
}

// switchMaster is a parsed +switch-master payload.
type switchMaster struct {
	name, oldAddr, newAddr string
}

// parseSwitchMaster parses "<master name> <old ip> <old port> <new ip> <new port>"
// (src/sentinel.c: the "%s %s %d %s %d" of the +switch-master event). The
// fields are taken from the right, so a name holding spaces still parses.
func parseSwitchMaster(payload string) (switchMaster, error) {
	f := strings.Split(payload, " ")
	if len(f) < 5 {
		return switchMaster{}, fmt.Errorf("%d fields, want 5", len(f))
	}
	n := len(f) - 4
	name := strings.Join(f[:n], " ")
	if name == "" {
		return switchMaster{}, errors.New("empty master name")
	}
	for _, hp := range [][2]string{{f[n], f[n+1]}, {f[n+2], f[n+3]}} {
		if err := checkHostPort(hp[0], hp[1]); err != nil {
			return switchMaster{}, err
		}
	}
	return switchMaster{
		name:    name,
		oldAddr: net.JoinHostPort(f[n], f[n+1]),
		newAddr: net.JoinHostPort(f[n+2], f[n+3]),
	}, nil
}
