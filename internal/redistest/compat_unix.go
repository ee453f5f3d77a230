//go:build unix

package redistest

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path, logging when it must wait for
// another holder, and returns the unlock function. build.sh is locked while
// it runs: two runs building the same server at once would each replace the
// other's result (rm -rf, then mv) under tests already using it.
func lockFile(t TB, path string) (unlock func(), err error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		t.Logf("redistest: waiting for another run of %s to end (a build takes 1 to 3 minutes)", path)
		for err = syscall.Flock(fd, syscall.LOCK_EX); errors.Is(err, syscall.EINTR); {
			err = syscall.Flock(fd, syscall.LOCK_EX)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
