package upstream

import (
	"fmt"
	"strconv"
	"strings"
)

// Valkey replicas announce their release with REPLCONF version (8.0 and later). A Valkey 9.1
// primary adapts the diskless RDB it sends to it: a replica that announces no version gets
// version 11, the format of Redis 7.2 and Valkey 8, instead of its own "VALKEY080"
// (protocol.md §13.3; Valkey 9.0 sends every replica its own format).
//
// The proxy announces no version by default. Its snapshot serves every replica behind it, so
// the oldest format the master will give is the one most of them can load (Valkey 8 and 9,
// Redis 7.2 and later). The cost: a Valkey 9.1 primary cannot write hashes with field expiry
// in version 11 and fails that sync, which the proxy then retries with backoff. An operator
// whose replicas all run Valkey 9 announces their version (--announce-replica-version 9.0.4)
// and gets the primary's own format. Redis masters ignore the announcement: they accept
// REPLCONF version, or refuse it as an unknown option, which the proxy logs and ignores.

// CheckReplicaVersion checks a version to announce as Valkey parses one (version2num): three
// dot-separated decimal numbers, each at most 255, such as "9.0.4".
func CheckReplicaVersion(v string) error {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return fmt.Errorf("replica version %q: want major.minor.patch, such as 9.0.4", v)
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return fmt.Errorf("replica version %q: each part must be a number from 0 to 255", v)
		}
	}
	return nil
}
