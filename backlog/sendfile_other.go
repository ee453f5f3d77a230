//go:build !linux

package backlog

import (
	"io"
	"os"
)

// sendFile is only implemented on Linux, where sendfile takes an explicit file offset on any
// socket; elsewhere lagging cursors copy through their buffer.
func sendFile(w io.Writer, f *os.File, pos, count int64) (int64, bool, error) {
	return 0, false, nil
}
