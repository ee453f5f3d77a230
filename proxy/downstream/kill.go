package downstream

import "time"

// Kill disconnects the replica whose client ID is id, as CLIENT KILL does; the replica
// reconnects and resumes with PSYNC from the backlog. It reports whether there was one.
func (s *Sessions) Kill(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.sessions {
		if r.ID == id {
			s.log.Infof("Disconnecting replica %s (CLIENT KILL): it will resume with PSYNC", r.addr)
			r.disconnect()
			return true
		}
	}
	return false
}

// Lag is how long ago an online replica last acknowledged, as INFO's lag=; 0 for a replica
// not streaming yet.
func (r ReplicaStatus) Lag(now time.Time) time.Duration {
	if r.State != "online" {
		return 0
	}
	return max(now.Sub(r.LastAck), 0)
}
