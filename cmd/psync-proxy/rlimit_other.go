//go:build !unix

package main

import "go.uber.org/zap"

// adjustOpenFilesLimit has nothing to adjust where there is no RLIMIT_NOFILE.
func adjustOpenFilesLimit(maxclients int, _ *zap.SugaredLogger) int { return maxclients }
