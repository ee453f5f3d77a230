package proxy

import (
	"io"
	"net"
	"os"
	"time"
)

// FastPaths reports which raw-socket paths the proxy would take on c, wrapped as it wraps
// every connection: sendfile and writev (rawTCP) and the upstream's ppoll reader.
func FastPaths(c net.Conn) (rawTCP, pollRead bool) {
	tc := newTrackedConn(c)
	_, rawTCP = tc.rawTCP()
	_, release, pollRead := upstreamReader(tc, time.Second)
	if pollRead {
		release()
	}
	return rawTCP, pollRead
}

// CopyFile sends n bytes of f to c as a full sync sends the snapshot.
func CopyFile(c net.Conn, f *os.File, n int64) (int64, error) {
	return io.CopyN(newTrackedConn(c), f, n)
}
