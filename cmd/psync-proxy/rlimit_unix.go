//go:build unix

package main

import (
	"syscall"

	"go.uber.org/zap"
)

// adjustOpenFilesLimit makes room for maxclients connections plus the proxy's own files, as
// Redis does at start (adjustOpenFilesLimit in server.c): it raises the soft RLIMIT_NOFILE as
// far as needed and allowed, else lowers maxclients to fit and says so in Redis's words.
// Without it, running out of descriptors would refuse connections below maxclients.
func adjustOpenFilesLimit(maxclients int, log *zap.SugaredLogger) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warnf("Unable to obtain the current NOFILE limit (%v), assuming 1024 and setting the max clients configuration accordingly.", err)
		lim.Cur = 1024
	}
	want := uint64(maxclients) + reservedFDs
	if lim.Cur >= want {
		return maxclients
	}
	raised := lim
	raised.Cur = min(want, lim.Max)
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised)
	if err == nil && raised.Cur >= want {
		return maxclients
	}
	if err == nil {
		lim.Cur = raised.Cur
	}
	n, msg := fitMaxClients(maxclients, lim.Cur)
	log.Warnf("You requested maxclients of %d requiring at least %d max file descriptors.", maxclients, want)
	if err != nil {
		log.Warnf("Server can't set maximum open files to %d because of OS error: %v.", want, err)
	}
	log.Warn(msg)
	return n
}
