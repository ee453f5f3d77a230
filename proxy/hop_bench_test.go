package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/resp"
)

// BenchmarkHop measures one hop of the stream through the proxy binary: a scripted master
// (this process) writes one small command, a raw replica (this process) reads it, and the next
// goes only then, so ns/op is the time from the master's write to the replica's read.
// BenchmarkHopDirect is the same exchange over one loopback connection, the floor the network
// and the Go runtime give; the difference is what the proxy adds on its path (read, scan,
// publish, inline write).
func BenchmarkHop(b *testing.B) {
	master, replica := hopSetup(b, hopProxy)
	hopLoop(b, master, replica)
}

// BenchmarkHopChain is the same hop through a Redis chained replica in the proxy's place:
// the peer the proxy is measured against (redis-server, repl-diskless-sync as a chained
// replica's default).
func BenchmarkHopChain(b *testing.B) {
	master, replica := hopSetup(b, hopChain)
	hopLoop(b, master, replica)
}

func BenchmarkHopDirect(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	hopLoop(b, w, bufio.NewReader(r))
}

// hopCommand is what the master writes each time: a PING as a master sends it.
var hopCommand = resp.AppendCommand(nil, "PING")

// hopLoop times each exchange and reports the p50 and p99 beside the mean (ns/op): the
// latency goals are percentiles.
func hopLoop(b *testing.B, master net.Conn, replica *bufio.Reader) {
	buf := make([]byte, len(hopCommand))
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := master.Write(hopCommand); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(replica, buf); err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
}

// hopSetup starts a middle tier (mid: the proxy or a chained replica) between a scripted
// master and a raw replica that has full-synced, and returns the master's connection and the
// replica's reader, at the stream's start.
func hopSetup(b *testing.B, mid func(b *testing.B, master string) (port int)) (net.Conn, *bufio.Reader) {
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mln.Close() })
	port := mid(b, mln.Addr().String())

	m, err := mln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	m.SetDeadline(time.Now().Add(10 * time.Second))
	mr := bufio.NewReader(m)
	const id = "8de1787ba490483314a4d30f1c628bc5025eb761"
	rdb := "REDIS0010\xff\x00\x00\x00\x00\x00\x00\x00\x00"
	for _, want := range []string{"PING", "REPLCONF", "REPLCONF", "PSYNC"} {
		if err := hopExpect(mr, want); err != nil {
			b.Fatal(err)
		}
		switch want {
		case "PING":
			m.Write([]byte("+PONG\r\n"))
		case "REPLCONF":
			m.Write([]byte("+OK\r\n"))
		case "PSYNC":
			fmt.Fprintf(m, "+FULLRESYNC %s 0\r\n$%d\r\n%s", id, len(rdb), rdb)
		}
	}
	go io.Copy(io.Discard, mr) // the middle tier's ACKs
	m.SetDeadline(time.Time{})

	rc, rr := hopReplica(b, port)
	rc.SetDeadline(time.Time{})
	return m, rr
}

// hopReplica connects a raw replica to the middle tier and reads its full sync. A chained
// replica refuses PSYNC until its own link is up (-NOMASTERLINK): it asks again then.
func hopReplica(b *testing.B, port int) (net.Conn, *bufio.Reader) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rc.Close() })
		rc.SetDeadline(deadline)
		rc.Write(resp.AppendCommand(nil, "PSYNC", "?", "-1"))
		rr := bufio.NewReader(rc)
		var line string
		for line == "" || line == "\n" || strings.HasPrefix(line, "+") {
			if line, err = rr.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
		if strings.HasPrefix(line, "-") && time.Now().Before(deadline) {
			rc.Close()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !strings.HasPrefix(line, "$") {
			b.Fatalf("the middle tier answered PSYNC with %q", line)
		}
		// The middle tier's own RDB: the proxy's is the master's, a chained replica's its own.
		if _, err := io.ReadFull(rr, make([]byte, hopPayloadLen(b, line))); err != nil {
			b.Fatal(err)
		}
		return rc, rr
	}
}

// hopProxy runs the proxy binary, as deployed: in this process its goroutines would compete
// with the benchmark's for the same two Ps. PSYNC_PROXY_HOP_BIN names another build to
// compare, e.g. an earlier commit's.
func hopProxy(b *testing.B, master string) int {
	port := redistest.FreePort(b)
	bin := os.Getenv("PSYNC_PROXY_HOP_BIN")
	if bin == "" {
		bin = buildProxyBinary(b, false)
	}
	cmd := exec.Command(bin, "--master", master, "--dir", b.TempDir(),
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--log-level", "error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return port
}

// hopChain runs a Redis replica of master, which its replicas chain to.
func hopChain(b *testing.B, master string) int {
	host, port, _ := net.SplitHostPort(master)
	return redistest.Start(b, "--replicaof", host, port).Port
}

// hopPayloadLen reads the length of a "$<len>" payload line.
func hopPayloadLen(b *testing.B, line string) int {
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		b.Fatalf("payload line %q: %v", line, err)
	}
	return n
}

// hopExpect reads one command from the middle tier and checks its name.
func hopExpect(br *bufio.Reader, name string) error {
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	var n int
	fmt.Sscanf(line, "*%d", &n)
	var args []string
	for range n {
		if _, err := br.ReadString('\n'); err != nil {
			return err
		}
		a, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		args = append(args, strings.TrimSpace(a))
	}
	if len(args) == 0 || !strings.EqualFold(args[0], name) {
		return fmt.Errorf("the middle tier sent %q, want %s", args, name)
	}
	return nil
}
