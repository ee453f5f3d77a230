//go:build !unix

package clientport

import "time"

// cpuTimes is unknown here.
func cpuTimes() (user, sys time.Duration) { return 0, 0 }
