//go:build !linux

package proxy

import (
	"io"
	"time"
)

// upstreamReader: elsewhere the stream loop reads through the bufio.Reader and the netpoller.
func upstreamReader(conn *trackedConn, timeout time.Duration) (io.Reader, func(), bool) {
	return nil, nil, false
}
