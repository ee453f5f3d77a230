package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
	"github.com/psync-proxy/psync-proxy/resp"
)

// BenchmarkHop measures one hop of the stream through the proxy in one process: a scripted
// master writes one small command, a raw replica reads it, and the next goes only then, so
// ns/op is the time from the master's write to the replica's read. The proxy is the binary. BenchmarkHopDirect is the
// same exchange over one loopback connection, the floor the network and the Go runtime give;
// the difference is what the proxy adds on its path (read, scan, publish, inline write).
func BenchmarkHop(b *testing.B) {
	master, replica := hopSetup(b)
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

func hopLoop(b *testing.B, master net.Conn, replica *bufio.Reader) {
	buf := make([]byte, len(hopCommand))
	b.ResetTimer()
	for range b.N {
		if _, err := master.Write(hopCommand); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(replica, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// hopSetup starts a proxy between a scripted master and a raw replica that has full-synced,
// and returns the master's connection and the replica's reader, at the stream's start.
func hopSetup(b *testing.B) (net.Conn, *bufio.Reader) {
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mln.Close() })
	// The proxy runs as its own process, as deployed: in this one its goroutines would
	// compete with the benchmark's for the same two Ps.
	port := redistest.FreePort(b)
	bin := os.Getenv("PSYNC_PROXY_HOP_BIN") // another build to compare, e.g. an earlier commit's
	if bin == "" {
		bin = buildProxyBinary(b, false)
	}
	cmd := exec.Command(bin, "--master", mln.Addr().String(), "--dir", b.TempDir(),
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--log-level", "error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

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
	go io.Copy(io.Discard, mr) // the proxy's ACKs
	m.SetDeadline(time.Time{})

	rc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rc.Close() })
	rc.SetDeadline(time.Now().Add(10 * time.Second))
	rc.Write(resp.AppendCommand(nil, "PSYNC", "?", "-1"))
	rr := bufio.NewReader(rc)
	for {
		line, err := rr.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(line, "$") {
			break
		}
	}
	if _, err := io.ReadFull(rr, make([]byte, len(rdb))); err != nil {
		b.Fatal(err)
	}
	rc.SetDeadline(time.Time{})
	return m, rr
}

// hopExpect reads one command from the proxy and checks its name.
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
		return fmt.Errorf("the proxy sent %q, want %s", args, name)
	}
	return nil
}
