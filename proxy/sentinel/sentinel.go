// Package sentinel finds a Redis master through Redis Sentinel and follows its
// failovers, the way Sentinel-aware clients do (redis-py's Sentinel, Jedis's
// JedisSentinelPool): ask the Sentinels for the master's address with
// SENTINEL GET-MASTER-ADDR-BY-NAME, subscribe to +switch-master on every one of
// them, and ask again after every (re)subscription, because events published
// while a link was down are lost.
//
// Sentinels do not learn of a failover at the same moment. For a few seconds one
// may still name the old master while another has announced the new one, and a
// Sentinel restarted from an old config file answers with the old master until
// its peers' hello messages correct it. A Watcher therefore also reads each
// answer's config epoch (SENTINEL MASTER, field config-epoch; every failover
// raises it, and Sentinels themselves let the greater epoch win) and does not
// move to an address named with an epoch not greater than the one it follows.
// Together with never reporting the address it already follows, that means every
// failover is reported once, although each Sentinel publishes +switch-master.
package sentinel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultTimeout bounds dialing a Sentinel and waiting for each of its replies
// when Config.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// Config says which Sentinels to ask about which master.
type Config struct {
	Addrs      []string // host:port of each Sentinel, asked in this order
	MasterName string   // the name in the Sentinels' "sentinel monitor <name> ..."
	// User and Password authenticate to the Sentinels (their requirepass, or an
	// ACL user: AUTH <user> <password>). The user needs +sentinel|get-master-addr-by-name,
	// +subscribe on &+switch-master, +ping and, to compare config epochs, +sentinel|master.
	User, Password string
	Timeout        time.Duration // dial and each reply; 0 means DefaultTimeout
	Logger         *zap.SugaredLogger
}

// Watcher finds the master through the Sentinels and reports its changes.
// Its methods may be called concurrently.
type Watcher struct {
	cfg Config
	log *zap.SugaredLogger

	noEpochOnce sync.Once // warn once when a Sentinel hides config epochs
}

// New checks cfg and returns a Watcher. It does not connect.
func New(cfg Config) (*Watcher, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("sentinel: no Sentinel address")
	}
	seen := make(map[string]bool, len(cfg.Addrs))
	for _, a := range cfg.Addrs {
		if err := checkAddr(a); err != nil {
			return nil, fmt.Errorf("sentinel: Sentinel address %q: %w", a, err)
		}
		if seen[a] {
			return nil, fmt.Errorf("sentinel: Sentinel address %q listed twice", a)
		}
		seen[a] = true
	}
	if cfg.MasterName == "" {
		return nil, errors.New("sentinel: no master name")
	}
	if cfg.User != "" && cfg.Password == "" {
		return nil, errors.New("sentinel: a Sentinel user needs a password")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("sentinel: negative timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop().Sugar()
	}
	return &Watcher{cfg: cfg, log: log}, nil
}

// checkAddr accepts host:port with a non-empty host and a port in 1..65535.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	return checkHostPort(host, port)
}

func checkHostPort(host, port string) error {
	if host == "" {
		return errors.New("empty host")
	}
	if len(host) > maxHostLen {
		return fmt.Errorf("host longer than %d bytes", maxHostLen)
	}
	if strings.ContainsAny(host, " \r\n\t") {
		return fmt.Errorf("host %q holds white space", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// maxHostLen is Redis's NET_HOST_STR_LEN less its NUL: no Sentinel sends a
// longer host name.
const maxHostLen = 255

// Lookup asks the Sentinels in order and returns the master address (host:port)
// given by the first that answers, as Sentinel clients do. A Sentinel that does
// not know the master (a null reply) counts as not answering.
func (w *Watcher) Lookup(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range w.cfg.Addrs {
		a, err := w.ask(ctx, s)
		if err == nil {
			return a.addr, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %w", s, err))
	}
	return "", fmt.Errorf("sentinel: no Sentinel gave the address of master %q: %w", w.cfg.MasterName, joinErrors(errs))
}

// Run reports the address (host:port) of the master to follow, with the reason,
// until ctx ends; then it returns ctx.Err(). It reports:
//   - at start: every Sentinel is asked as soon as it is subscribed to, and
//     the answer with the greatest config epoch is reported once all have
//     answered or failed, or Config.Timeout after the first answer;
//   - after a +switch-master for our master naming another address;
//   - after a re-ask (done on every new subscription to a Sentinel) that finds
//     another address with a greater config epoch, or when epochs are unknown.
//
// It never reports the same address twice in a row. follow is called from
// Run's goroutine, one call at a time; events wait while it runs, so it should
// not block for long. Every goroutine Run starts has ended when it returns.
func (w *Watcher) Run(ctx context.Context, follow func(addr, why string)) error {
	if follow == nil {
		return errors.New("sentinel: Run without a follow function")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	events := make(chan event)
	for _, s := range w.cfg.Addrs {
		wg.Go(func() { w.watch(ctx, s, events) })
	}
	t := tracker{name: w.cfg.MasterName, epoch: -1}
	o := opening{n: len(w.cfg.Addrs), heard: make(map[string]bool)}
	var grace <-chan time.Time // the opening's end, Timeout after its first answer
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-grace:
			o.done, grace = true, nil
			w.apply(&t, o.best, follow)
		case ev := <-events:
			if !o.done {
				over := o.offer(ev)
				if o.has && grace == nil {
					grace = time.After(w.cfg.Timeout)
				}
				if !over {
					continue
				}
				o.done, grace = true, nil
				if o.has {
					w.apply(&t, o.best, follow)
				}
				if !ev.switched {
					continue
				}
			}
			if !ev.failed {
				w.apply(&t, ev, follow)
			}
		}
	}
}

// apply passes ev to t and calls follow if the master moved.
func (w *Watcher) apply(t *tracker, ev event, follow func(addr, why string)) {
	why, moved, ignored := t.apply(ev)
	if ignored != "" {
		w.log.Infof("%s", ignored)
	}
	if moved {
		follow(t.addr, why)
	}
}

// joinErrors is errors.Join on one line, for log lines.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return multiError(errs)
}

type multiError []error

func (m multiError) Error() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (m multiError) Unwrap() []error { return m }
