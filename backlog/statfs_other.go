//go:build !unix

package backlog

import "errors"

// freeSpace is unknown here: segments are then bounded by the size alone.
func freeSpace(string) (int64, error) {
	return 0, errors.New("backlog: free space unknown on this system")
}
