package redistest

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

const (
	writeValueSize = 8 << 10 // value size of the SETs WriteBytes sends
	writeBatch     = 64      // SETs per pipelined batch (about 512 KiB)
	writeRounds    = 10      // top-up rounds before WriteBytes gives up
)

func benchArgs(s *Server, args []string) []string {
	argv := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}
	if !slices.Contains(args, "--csv") {
		argv = append(argv, "-q")
	}
	return append(argv, args...)
}

// Benchmark runs redis-benchmark -h 127.0.0.1 -p <port> -q (no -q if args
// has --csv) with args against s, waits for it, Fatals on a non-zero exit
// with its output, and returns the output.
func Benchmark(t TB, s *Server, args ...string) string {
	t.Helper()
	cmd := exec.Command(findBinary(t, "redis-benchmark"), benchArgs(s, args)...)
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-benchmark %q against %s: %v\n%s", args, s.Addr(), err, out)
	}
	return string(out)
}

// BenchmarkAsync starts redis-benchmark in the background and returns a stop
// function that ends it (SIGKILL, if still running) and waits; t.Cleanup
// calls stop too. Used to keep writing while the test cuts links (add "-l"
// to loop). If redis-benchmark ended on its own with an error, stop logs its
// output; that is no failure, since tests often kill the server under it.
func BenchmarkAsync(t TB, s *Server, args ...string) (stop func()) {
	t.Helper()
	bin := findBinary(t, "redis-benchmark")
	outPath := filepath.Join(t.TempDir(), "redis-benchmark.out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	p, err := startProc(bin, benchArgs(s, args), "", out)
	out.Close()
	if err != nil {
		t.Fatalf("redistest: start redis-benchmark: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			early := p.exited()
			p.kill()
			if !p.wait(killTimeout) {
				t.Logf("redistest: redis-benchmark (pid %d) still running after SIGKILL", p.pid())
				return
			}
			if early && p.err != nil {
				b, _ := os.ReadFile(outPath)
				t.Logf("redistest: redis-benchmark %q against %s ended on its own: %v\n%s",
					args, s.Addr(), p.err, lastLines(b, tailLines))
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// WriteBytes writes about n bytes of replication stream to s and returns
// once its master_repl_offset has advanced by at least n. It pipelines
// SET wb:<call>:<i> <8 KiB value> over one connection; keys and values are
// the same from run to run, and each call writes new keys. s must keep a
// replication backlog (Redis creates it when the first replica attaches),
// or its offset does not move and WriteBytes Fatals.
func WriteBytes(t TB, s *Server, n int64) {
	t.Helper()
	if n <= 0 {
		return
	}
	start := replOffset(t, s)
	seq := s.writeSeq.Add(1)
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(seq))
	value := make([]byte, writeValueSize)
	_, _ = rand.NewChaCha8(seed).Read(value)
	w := &setWriter{prefix: "wb:" + strconv.FormatInt(seq, 10) + ":", value: string(value)}
	c, err := dialClient(s.Addr(), DefaultTimeout)
	if err != nil {
		t.Fatalf("redistest: WriteBytes: %v", err)
	}
	defer c.Close() // runs on Fatal too (runtime.Goexit)
	w.c = c

	per := int64(len(appendCommand(nil, "SET", w.prefix+"0", w.value)))
	want := start + n
	for off, round := start, 0; off < want; round++ {
		if round == writeRounds || (round > 0 && off == start) {
			t.Fatalf("redistest: master_repl_offset of %s went from %d to %d, want %d: no replication backlog (attach a replica first)?",
				s.Addr(), start, off, want)
		}
		w.write(t, (want-off+per-1)/per)
		off = replOffset(t, s)
	}
}

// setWriter sends pipelined SETs of one value to numbered keys.
type setWriter struct {
	c      *Client
	prefix string
	value  string
	next   int64 // number of the next key
	buf    []byte
}

func (w *setWriter) write(t TB, count int64) {
	t.Helper()
	for count > 0 {
		batch := min(count, writeBatch)
		w.buf = w.buf[:0]
		for range batch {
			w.buf = appendCommand(w.buf, "SET", w.prefix+strconv.FormatInt(w.next, 10), w.value)
			w.next++
		}
		if err := w.c.SendRaw(w.buf); err != nil {
			t.Fatalf("redistest: WriteBytes: %v", err)
		}
		for range batch {
			v, err := w.c.ReadValue()
			if err != nil || v.String() != "OK" {
				t.Fatalf("redistest: WriteBytes: SET replied %q, %v", v.String(), err)
			}
		}
		count -= batch
	}
}

func replOffset(t TB, s *Server) int64 {
	t.Helper()
	v := s.Info(t, "replication")["master_repl_offset"]
	off, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("redistest: %s master_repl_offset %q: %v", s.Addr(), v, err)
	}
	return off
}
