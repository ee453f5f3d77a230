package backlog

import (
	"io"
	"net"
	"os"
	"syscall"
)

// sendFile writes count bytes of f from position pos to w with sendfile(2) when w is a TCP or
// Unix socket, so the bytes go from the page cache to the socket without a copy through user
// space. The position is passed explicitly, so the descriptor, shared by every cursor
// reading the segment, has no file position to race on. The wait for a full socket goes
// through the runtime poller, which honours w's write deadline. handled is false when
// nothing was done and the caller should copy instead.
func sendFile(w io.Writer, f *os.File, pos, count int64) (written int64, handled bool, err error) {
	switch c := w.(type) {
	case *net.TCPConn:
		return sendFileTo(c, f, pos, count)
	case *net.UnixConn:
		return sendFileTo(c, f, pos, count)
	}
	return 0, false, nil
}

// sendFileTo is sendFile on a socket. It is separate so that the variables its closures
// capture, which escape, cost nothing to callers that cannot use sendfile.
func sendFileTo(dst syscall.Conn, f *os.File, pos, count int64) (written int64, handled bool, err error) {
	drc, err := dst.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	src, err := f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var serr error
	unsupported := false
	rerr := src.Read(func(sfd uintptr) bool {
		werr := drc.Write(func(dfd uintptr) bool {
			for written < count {
				off := pos + written
				n, e := syscall.Sendfile(int(dfd), int(sfd), &off, int(min(count-written, 1<<30)))
				if n > 0 {
					written += int64(n)
				}
				switch {
				case e == syscall.EINTR:
				case e == syscall.EAGAIN:
					return false // wait until the socket takes more
				case e != nil:
					if written == 0 && (e == syscall.EINVAL || e == syscall.ENOSYS || e == syscall.EOPNOTSUPP) {
						unsupported = true
					}
					serr = os.NewSyscallError("sendfile", e)
					return true
				case n == 0:
					serr = io.ErrUnexpectedEOF // the file ends before count bytes
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
		return true
	})
	if unsupported {
		return 0, false, nil
	}
	if serr == nil {
		serr = rerr
	}
	return written, true, serr
}
