package redistest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if a goroutine or a child process started by the
// package outlives the tests (t.Cleanup must end every one).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		for _, err := range []error{leftoverGoroutines(time.Second), leftoverChildren()} {
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// leftoverChildren lists live child processes of the test binary (Linux
// /proc only; elsewhere it checks nothing).
func leftoverChildren() error {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var left []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			left = append(left, strings.TrimSpace(s[:strings.LastIndexByte(s, ')')+1]))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("child processes left after the tests: %s", strings.Join(left, ", "))
	}
	return nil
}

func leftoverGoroutines(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "internal/redistest.") && !strings.Contains(g, "leftoverGoroutines") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("goroutines left after the tests:\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
