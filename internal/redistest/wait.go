package redistest

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// pollInterval is how often Eventually and the Wait helpers poll.
const pollInterval = 20 * time.Millisecond

// Eventually polls fn every 20ms until it returns nil or timeout passes, then
// Fatals with the last error. fn runs at least once.
func Eventually(t TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: not done after %v: %v", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// WaitOnline waits until the replica reports master_link_status:up and
// master_sync_in_progress:0.
func WaitOnline(t TB, replica *Server, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		m, err := replica.InfoErr("replication")
		if err != nil {
			return err
		}
		if m["master_link_status"] != "up" || m["master_sync_in_progress"] != "0" {
			return fmt.Errorf("replica %s: role:%s master_host:%s master_port:%s master_link_status:%s master_sync_in_progress:%s",
				replica.Addr(), m["role"], m["master_host"], m["master_port"], m["master_link_status"], m["master_sync_in_progress"])
		}
		return nil
	})
}

// WaitInSync waits until every replica's slave_repl_offset and
// master_repl_offset equal the master's master_repl_offset and every DEBUG
// DIGEST equals the master's, and returns that digest. It retries until all
// agree (expiries and the master's periodic PINGs move things briefly), and
// Fatals with each replica's offsets and digest on timeout. The master
// must not be written to meanwhile.
func WaitInSync(t TB, timeout time.Duration, master *Server, replicas ...*Server) string {
	t.Helper()
	var digest string
	Eventually(t, timeout, func() error {
		var err error
		digest, err = syncState(master, replicas)
		return err
	})
	return digest
}

// syncState returns the master's digest, and an error describing every
// server unless all replicas match the master.
func syncState(master *Server, replicas []*Server) (string, error) {
	mi, err := master.InfoErr("replication")
	if err != nil {
		return "", err
	}
	off := mi["master_repl_offset"]
	digest, err := digestErr(master)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "not in sync:\n  master  %s master_repl_offset:%s digest:%s", master.Addr(), off, digest)
	ok := true
	for _, r := range replicas {
		ri, err := r.InfoErr("replication")
		if err != nil {
			fmt.Fprintf(&b, "\n  replica %s: %v", r.Addr(), err)
			ok = false
			continue
		}
		d, err := digestErr(r)
		if err != nil {
			d = err.Error()
		}
		match := ri["slave_repl_offset"] == off && ri["master_repl_offset"] == off && d == digest
		ok = ok && match
		fmt.Fprintf(&b, "\n  replica %s master_link_status:%s slave_repl_offset:%s master_repl_offset:%s digest:%s",
			r.Addr(), ri["master_link_status"], ri["slave_repl_offset"], ri["master_repl_offset"], d)
		if !match {
			b.WriteString(" (differs)")
		}
	}
	if !ok {
		return digest, errors.New(b.String())
	}
	// The master must not have moved while the replicas were read.
	mi, err = master.InfoErr("replication")
	if err != nil {
		return "", err
	}
	if mi["master_repl_offset"] != off {
		return digest, fmt.Errorf("master %s moved from offset %s to %s while checking", master.Addr(), off, mi["master_repl_offset"])
	}
	return digest, nil
}

func digestErr(s *Server) (string, error) {
	v, err := s.Do("DEBUG", "DIGEST")
	if err != nil {
		return "", err
	}
	return v.String(), nil
}
