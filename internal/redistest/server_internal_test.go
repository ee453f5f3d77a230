package redistest

import (
	"path/filepath"
	"testing"
)

// TestLaunchPortTaken checks that launch notices a port held by another
// redis-server (the race after FreePort) so that Start can retry.
func TestLaunchPortTaken(t *testing.T) {
	t.Parallel()
	s1 := Start(t)
	s2 := &Server{bin: s1.bin, Port: s1.Port, Dir: t.TempDir()}
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
