package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Names of the reference servers that CompatBinary builds, from the
// archives in ../shared/compat beside the repository.
const (
	Redis88  = "redis-8.8.0"  // redis-server 8.8.0: RDB version 14, rdb-channel replication
	Valkey90 = "valkey-9.0.4" // valkey-server 9.0.4: RDB "VALKEY080", logs say "primary"
)

// CompatScript is build.sh's path relative to the repository root: the
// shared directory is the checkout's sibling.
const CompatScript = "../shared/compat/build.sh"

// CompatBinary returns the path of the reference server name (Redis88,
// Valkey90), running build.sh, which builds it once into a cache (1 to 3
// minutes on 2 cores) and prints its path at once afterwards. build.sh's
// progress lines are logged, so a build shows in the test log. If build.sh
// is absent the test is skipped (or fails, if t cannot skip); a failed build
// fails the test. Concurrent calls, from this or another test process, run
// build.sh one at a time.
func CompatBinary(t TB, name string) string {
	t.Helper()
	script, err := compatScript()
	if err != nil {
		skip(t, fmt.Sprintf("redistest: no %s server: %v", name, err))
	}
	unlock, err := lockFile(t, script)
	if err != nil {
		t.Fatalf("redistest: lock %s: %v", script, err)
	}
	defer unlock()
	var stdout bytes.Buffer
	cmd := exec.Command(script, name)
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("redistest: %s %s: %v", script, name, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: %s %s: %v", script, name, err)
	}
	var errText strings.Builder
	for sc := bufio.NewScanner(stderr); sc.Scan(); {
		t.Logf("redistest: %s", sc.Text()) // "build.sh: building ..." when it builds
		errText.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("redistest: %s %s failed: %v\n%s", script, name, err, errText.String())
	}
	bin := strings.TrimSpace(stdout.String())
	if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("redistest: %s %s printed %q, not an executable (%v)", script, name, bin, err)
	}
	return bin
}

// StartCompat is StartBin with CompatBinary(t, name).
func StartCompat(t TB, name string, args ...string) *Server {
	t.Helper()
	return StartBin(t, CompatBinary(t, name), args...)
}

// compatScript finds build.sh from the module root (the nearest directory
// above the working directory holding go.mod: a test runs in its package's
// directory).
func compatScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory, so no repository root to find " + CompatScript + " from")
		}
		dir = parent
	}
	script := filepath.Join(dir, filepath.FromSlash(CompatScript))
	if _, err := os.Stat(script); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s is absent (it sits beside the checkout, with the release archives)", script)
		}
		return "", err
	}
	return script, nil
}

// skip skips the test with msg, or fails it when t cannot skip (the bench
// harness's TB).
func skip(t TB, msg string) {
	t.Helper()
	if s, ok := t.(interface{ Skip(args ...any) }); ok {
		s.Skip(msg)
	}
	t.Fatalf("%s", msg)
}
