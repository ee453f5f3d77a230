package main

import "fmt"

// reservedFDs are descriptors kept for the proxy's own use (the master link, the snapshot,
// backlog segments, listeners), as Redis's CONFIG_MIN_RESERVED_FDS.
const reservedFDs = 32

// fitMaxClients is the maxclients that fits a limit of limit open files, never below 1, and
// the warning that says so.
func fitMaxClients(maxclients int, limit uint64) (int, string) {
	n := 1
	if limit > reservedFDs+1 {
		n = int(min(limit-reservedFDs, uint64(maxclients)))
	}
	return n, fmt.Sprintf("Current maximum open files is %d. maxclients has been reduced to %d to compensate for low ulimit. If you need higher maxclients increase 'ulimit -n'.", limit, n)
}
