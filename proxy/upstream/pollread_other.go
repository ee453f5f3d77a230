//go:build !linux

package upstream

import (
	"io"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/internal/conn"
)

// upstreamReader: elsewhere the stream loop reads through the bufio.Reader and the netpoller.
func upstreamReader(c *conn.Conn, timeout time.Duration) (io.Reader, func(), bool) {
	return nil, nil, false
}
