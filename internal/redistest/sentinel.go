package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sentinel is one redis-server process in Sentinel mode
// (redis-server sentinel.conf --sentinel) monitoring one master. Port is its
// loopback port and Dir its working directory (holding sentinel.conf, which
// Sentinel rewrites): fields of the instance it shares with Server, as are
// the methods Addr, Do, MustDo, Running, Kill, Restart and Log.
type Sentinel struct {
	instance

	MasterName string
	Password   string // its requirepass (taken from extraConf), sent by Do as AUTH

	confPath string
}

// StartSentinel starts a Sentinel on a free port that monitors master under
// masterName with the given quorum. Its sentinel.conf holds
//
//	port N, bind 127.0.0.1, dir, logfile, protected-mode no
//	sentinel monitor <masterName> 127.0.0.1 <master port> <quorum>
//	sentinel down-after-milliseconds <masterName> 1000
//	sentinel failover-timeout <masterName> 5000
//
// then extraConf, one config line each ("requirepass secret", "sentinel
// parallel-syncs mymaster 2"; a later line wins). A "requirepass" line also sets
// Password. StartSentinel waits until PING answers, then shortens TILT mode to
// 2 s (SENTINEL DEBUG tilt-period 2000; Restart does it again). t.Cleanup kills
// it and, if the test failed, logs the end of its log.
func StartSentinel(t TB, masterName string, master *Server, quorum int, extraConf ...string) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: masterName}
	for _, line := range extraConf {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && strings.EqualFold(k, "requirepass") {
			s.Password = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	s.label, s.bin, s.auth = "Sentinel ", findBinary(t, "redis-server"), s.Password
	s.argv = func() []string { return []string{s.confPath, "--sentinel"} }
	s.ready = s.started
	s.start(t, "sentinel", func() error {
		s.confPath = filepath.Join(s.Dir, "sentinel.conf")
		return os.WriteFile(s.confPath, []byte(s.config(master.Port, quorum, extraConf)), 0o644)
	})
	return s
}

func (s *Sentinel) config(masterPort, quorum int, extra []string) string {
	lines := []string{
		"port " + strconv.Itoa(s.Port),
		"bind 127.0.0.1",
		"dir " + s.Dir,
		"logfile " + s.logPath,
		"daemonize no",
		"protected-mode no",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", s.MasterName, masterPort, quorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", s.MasterName),
		fmt.Sprintf("sentinel failover-timeout %s 5000", s.MasterName),
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

// started shortens TILT mode once the Sentinel answers: a test machine that
// stalls for 2 s (Sentinel's tilt-trigger) sends Sentinel into TILT mode,
// where it takes no action for 30 s. 2 s of TILT still let it see the
// instances again before it judges them.
func (s *Sentinel) started(map[string]string) error {
	_, err := s.Do("SENTINEL", "DEBUG", "tilt-period", "2000")
	return err
}

// MasterInfo returns SENTINEL MASTER <MasterName> as a map (ip, port, flags,
// config-epoch, num-slaves, num-other-sentinels...).
func (s *Sentinel) MasterInfo() (map[string]string, error) {
	v, err := s.Do("SENTINEL", "MASTER", s.MasterName)
	if err != nil {
		return nil, err
	}
	a := v.Array()
	m := make(map[string]string, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		m[a[i].String()] = a[i+1].String()
	}
	return m, nil
}

// WaitSentinelsReady waits until every Sentinel knows all the others and at
// least replicas replicas of its master, so that a failover can be agreed.
func WaitSentinelsReady(t TB, timeout time.Duration, replicas int, sentinels ...*Sentinel) {
	t.Helper()
	Eventually(t, timeout, func() error {
		for _, s := range sentinels {
			m, err := s.MasterInfo()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != strconv.Itoa(len(sentinels)-1) {
				return fmt.Errorf("Sentinel %s: num-other-sentinels:%s, want %d", s.Addr(), m["num-other-sentinels"], len(sentinels)-1)
			}
			if n, _ := strconv.Atoi(m["num-slaves"]); n < replicas {
				return fmt.Errorf("Sentinel %s: num-slaves:%s, want %d", s.Addr(), m["num-slaves"], replicas)
			}
		}
		return nil
	})
}

// CountLog counts the log lines containing substr.
func (s *Sentinel) CountLog(t TB, substr string) int {
	t.Helper()
	return countLines(s.Log(t), []string{substr})
}

// WaitLog waits until the log contains substr at least n times (Fatal with
// the log tail after timeout).
func (s *Sentinel) WaitLog(t TB, substr string, n int, timeout time.Duration) {
	t.Helper()
	s.waitLog(t, strconv.Quote(substr), n, timeout, func() int { return s.CountLog(t, substr) })
}
