package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLaunchPortTaken checks that launch notices a port held by another
// redis-server (the race after FreePort) so that Start can retry.
func TestLaunchPortTaken(t *testing.T) {
	t.Parallel()
	s1 := Start(t)
	s2 := newServer(s1.bin, nil)
	s2.Port, s2.Dir = s1.Port, t.TempDir()
	s2.logPath = filepath.Join(s2.Dir, "redis.log")
	s2.outPath = filepath.Join(s2.Dir, "redis.out")
	portTaken, err := s2.launch()
	if err == nil || !portTaken {
		t.Fatalf("launch on a taken port: portTaken %v, err %v", portTaken, err)
	}
	if s2.Running() {
		t.Fatal("the second process still runs after a failed launch")
	}
	if got := s1.MustDo(t, "PING").String(); got != "PONG" {
		t.Fatalf("first server: PING = %q", got)
	}
}

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a", 3, "a"},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
	} {
		if got := lastLines([]byte(c.in), c.n); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestCompatScriptAbsent: without build.sh beside the module root,
// CompatBinary skips the test (or fails it, for a TB that cannot skip).
func TestCompatScriptAbsent(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := compatScript(); err == nil || !strings.Contains(err.Error(), "no go.mod") {
		t.Fatalf("without go.mod: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := compatScript()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(filepath.Dir(dir), "shared", "compat", "build.sh")+" is absent") {
		t.Fatalf("without build.sh: %v", err)
	}
	var skipped string
	done := make(chan struct{})
	go func() {
		defer close(done)
		CompatBinary(skipTB{T: t, skipped: &skipped}, Redis88)
	}()
	<-done
	if !strings.Contains(skipped, "no redis-8.8.0 server") {
		t.Fatalf("skip message %q", skipped)
	}
}

// skipTB records Skip and ends its goroutine as testing.T does.
type skipTB struct {
	*testing.T
	skipped *string
}

func (s skipTB) Skip(args ...any) {
	*s.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
