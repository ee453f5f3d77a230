package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/internal/atomicfile"
	"github.com/psync-proxy/psync-proxy/proxy/sentinel"
	"github.com/psync-proxy/psync-proxy/proxy/upstream"
)

// Which master the proxy follows, and how it changes: REPLICAOF (an operator, or Sentinel's
// reconfiguration of a replica, wrapped in MULTI/EXEC) and, in Sentinel mode, the proxy's own
// Sentinel watcher (+switch-master). Both go through Server.follow, where the master link
// ignores an address it already follows: one failover reported both ways is one switch.
// Every change is recorded in Dir/master.json, so a restart goes back to the master last
// followed rather than to a --master that failed over long ago.

// masterStateName is the file in Config.Dir that records the master followed.
const masterStateName = "master.json"

// lookupTimeout bounds the Sentinel lookup at start, over every Sentinel.
const lookupTimeout = 10 * time.Second

// masterState is master.json: the master followed since the last change, and how.
type masterState struct {
	Master string `json:"master"` // host:port
	// Configured is the --master (Config.MasterAddr) of the run that recorded the change: a
	// restart with another --master means the operator moved the proxy since, and --master wins.
	Configured string    `json:"configured"`
	Source     string    `json:"source"` // "replicaof" or "sentinel"
	By         string    `json:"by"`     // the client, or Sentinel's reason
	Time       time.Time `json:"time"`
}

func loadMasterState(dir string) (*masterState, error) {
	b, err := os.ReadFile(filepath.Join(dir, masterStateName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st masterState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", masterStateName, err)
	}
	if err := (upstream.Master{Addr: st.Master}).Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", masterStateName, err)
	}
	return &st, nil
}

// newWatcher returns the Sentinel watcher of cfg, nil without --sentinel.
func newWatcher(cfg Config) (*sentinel.Watcher, error) {
	if len(cfg.SentinelAddrs) == 0 {
		return nil, nil
	}
	w, err := sentinel.New(sentinel.Config{Addrs: cfg.SentinelAddrs, MasterName: cfg.SentinelMaster,
		User: cfg.SentinelUser, Password: cfg.SentinelPassword, Logger: cfg.Logger.Sugar()})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return w, nil
}

// initialMaster chooses the master to follow at start, and says why in the log: in Sentinel
// mode, the Sentinels' answer, else the master recorded, else --master, else none yet (the
// watcher names it); otherwise --master, unless master.json records a move away from this very
// --master (REPLICAOF, or Sentinel in an earlier run).
func (s *Server) initialMaster(w *sentinel.Watcher) string {
	cfg := s.cfg
	rec, err := loadMasterState(cfg.Dir)
	if err != nil {
		s.log.Warnf("Ignoring the master recorded in %s: %v", cfg.Dir, err)
	}
	if w != nil {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		addr, err := w.Lookup(ctx)
		cancel()
		switch {
		case err == nil:
			s.log.Infof("Sentinel gives MASTER %s for %q: following it", addr, cfg.SentinelMaster)
			if rec == nil || rec.Master != addr {
				s.saveMaster(addr, "sentinel", "SENTINEL GET-MASTER-ADDR-BY-NAME at start")
			}
			return addr
		case rec != nil:
			s.log.Warnf("No Sentinel answered (%v): following MASTER %s, the master last followed (%s, by %s)", err, rec.Master, rec.Time.Format(time.RFC3339), rec.Source)
			return rec.Master
		case cfg.MasterAddr != "":
			s.log.Warnf("No Sentinel answered (%v): following --master %s until one does", err, cfg.MasterAddr)
			return cfg.MasterAddr
		}
		s.log.Warnf("No Sentinel answered (%v) and no master is known: waiting for a Sentinel", err)
		return ""
	}
	if rec == nil || upstream.SameMaster(upstream.Master{Addr: rec.Master}, upstream.Master{Addr: cfg.MasterAddr}) {
		return cfg.MasterAddr
	}
	if rec.Configured == cfg.MasterAddr {
		s.log.Infof("Following MASTER %s, recorded in %s: it replaced --master %s (%s at %s, %s)",
			rec.Master, filepath.Join(cfg.Dir, masterStateName), cfg.MasterAddr, rec.Source, rec.Time.Format(time.RFC3339), rec.By)
		return rec.Master
	}
	s.log.Infof("Following --master %s: it changed since MASTER %s was recorded in %s (in place of --master %s)",
		cfg.MasterAddr, rec.Master, filepath.Join(cfg.Dir, masterStateName), rec.Configured)
	return cfg.MasterAddr
}

// follow makes addr the master, keeping the master's credentials; source and who say who
// asked. It reports false when addr is the master followed now. One change at a time, so
// that master.json ends with the last.
func (s *Server) follow(addr, source, who string) bool {
	s.followMu.Lock()
	defer s.followMu.Unlock()
	m := s.link.Master()
	from := m.Addr
	m.Addr = addr
	if err := m.Check(); err != nil {
		s.log.Warnf("Not following %q (%s): %v", addr, who, err)
		return false
	}
	if !s.link.Follow(m, source) {
		return false
	}
	s.log.Infof("Master changed from %s to %s (%s: %s)", from, addr, source, who)
	s.saveMaster(addr, source, who)
	return true
}

// saveMaster records addr in master.json. A failure only costs the choice at the next
// start, so it is logged and replication goes on.
func (s *Server) saveMaster(addr, source, who string) {
	st := masterState{Master: addr, Configured: s.cfg.MasterAddr, Source: source, By: who, Time: time.Now().UTC()}
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = atomicfile.Write(filepath.Join(s.cfg.Dir, masterStateName), append(b, '\n'))
	}
	if err != nil {
		s.log.Warnf("Cannot record MASTER %s in %s; a restart will not know it: %v", addr, s.cfg.Dir, err)
	}
}

// watchSentinels follows the master the Sentinels name until ctx ends. The watcher never
// reports the same address twice in a row, and follow ignores the address followed now, so
// Sentinel's own SLAVEOF and the watcher's report of one failover make one switch.
func (s *Server) watchSentinels(ctx context.Context) {
	err := s.watcher.Run(ctx, func(addr, why string) {
		if !s.follow(addr, "sentinel", why) {
			s.log.Infof("Sentinel names MASTER %s, the master followed now: nothing to do (%s)", addr, why)
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Errorf("The Sentinel watcher stopped: %v", err)
	}
}
