package redistest

import (
	"regexp"
	"strings"
)

// Flavor is the family of a server: Redis or Valkey.
type Flavor string

const (
	FlavorRedis  Flavor = "redis"
	FlavorValkey Flavor = "valkey"
)

// flavorOf reads the family and release from INFO server. Valkey reports
// server_name:valkey and valkey_version:9.0.4, beside a redis_version:7.2.4
// kept for clients that check it; Redis has only redis_version.
func flavorOf(info map[string]string) (Flavor, string) {
	if info["server_name"] == "valkey" {
		return FlavorValkey, info["valkey_version"]
	}
	return FlavorRedis, info["redis_version"]
}

// Flavor returns the family of the server, read from INFO server when it
// (re)started.
func (s *Server) Flavor() Flavor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flavor
}

// Version returns the server's release, such as "7.0.15", "8.8.0" or "9.0.4"
// (valkey_version for Valkey), read from INFO server when it (re)started.
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// masterWord matches the words Valkey replaced in its log lines.
var masterWord = regexp.MustCompile(`\b(MASTER|Master|master)\b`)

// LogPhrase returns a log phrase written in Redis's words as this server
// writes it. Valkey says "primary" where Redis says "master", keeping the
// case: "MASTER <-> REPLICA sync started" is "PRIMARY <-> REPLICA sync
// started", "Full resync from master" is "Full resync from primary",
// "Master accepted a Partial Resynchronization" is "Primary accepted a
// Partial Resynchronization". For Redis the phrase is returned unchanged.
func (s *Server) LogPhrase(phrase string) string {
	if s.Flavor() != FlavorValkey {
		return phrase
	}
	return masterWord.ReplaceAllStringFunc(phrase, func(w string) string {
		switch w {
		case "MASTER":
			return "PRIMARY"
		case "Master":
			return "Primary"
		}
		return "primary"
	})
}

// logMatch reports whether line holds one of the phrases.
func logMatch(line string, phrases []string) bool {
	for _, p := range phrases {
		if strings.Contains(line, p) {
			return true
		}
	}
	return false
}
