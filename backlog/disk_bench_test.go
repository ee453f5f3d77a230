package backlog

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// The disk benchmarks run beside their baselines in one run, on the same files system (the
// test's temporary directory), with the same 16 KiB pieces as bench_test.go:
//
//	BenchmarkDiskAppend/file          plain sequential os.File writes (dd-like), a new file
//	                                  every segment size, old ones deleted as retention does
//	BenchmarkDiskAppend/file-fsync    the same with an fsync after every piece (dd oflag=dsync)
//	BenchmarkDiskAppend/ring          Ring.Append into a full 64 MiB ring
//	BenchmarkDiskAppend/disk-<policy> Disk.Append, 64 MiB segments, 256 MiB retention
//
//	BenchmarkDiskCatchUp/*            a cursor reading 128 MiB held on disk (page cache hot)
//	                                  from the oldest byte to the end, to a TCP socket or a
//	                                  buffer, beside a plain file sent or read the same way
//	                                  and a ring cursor.
//
// Compare the MB/s columns: the ratios to the plain file are what matter, the absolute
// figures depend on the machine.
const (
	benchSegment   = 64 << 20
	benchRetention = 256 << 20
	benchCatchUp   = 128 << 20
)

func BenchmarkDiskAppend(b *testing.B) {
	b.Run("file", func(b *testing.B) { benchFileAppend(b, false) })
	b.Run("file-fsync", func(b *testing.B) { benchFileAppend(b, true) })
	b.Run("ring", func(b *testing.B) {
		piece := benchSource()
		r := fullRing(piece)
		defer r.Close()
		b.SetBytes(benchPiece)
		i := 0
		for b.Loop() {
			r.Append(piece(i))
			i++
		}
	})
	for _, pol := range []FsyncPolicy{FsyncNo, FsyncEverySec, FsyncAlways} {
		b.Run("disk-"+pol.String(), func(b *testing.B) { benchDiskAppend(b, pol) })
	}
}

// benchFileAppend writes the pieces to plain files, starting a new one every benchSegment
// bytes and deleting the one that falls out of benchRetention, as the disk does.
func benchFileAppend(b *testing.B, fsync bool) {
	dir := b.TempDir()
	piece := benchSource()
	var files []string
	var f *os.File
	var written int64
	open := func() {
		if f != nil {
			f.Close()
		}
		name := filepath.Join(dir, fmt.Sprintf("%020d", written))
		var err error
		if f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, name)
		if len(files) > benchRetention/benchSegment {
			os.Remove(files[0])
			files = files[1:]
		}
	}
	open()
	b.SetBytes(benchPiece)
	i := 0
	for b.Loop() {
		if written > 0 && written%benchSegment == 0 {
			open()
		}
		if _, err := f.Write(piece(i)); err != nil {
			b.Fatal(err)
		}
		if fsync {
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		written += benchPiece
		i++
	}
	f.Close()
}

func benchDisk(b *testing.B, pol FsyncPolicy, ram int64) *disk {
	d, _, err := openDir(b.TempDir(), Options{Size: benchRetention, SegmentSize: benchSegment, RAMTail: ram, Fsync: pol})
	if err != nil {
		b.Fatal(err)
	}
	d, err = d.Reset(State{Replid: testReplid, Epoch: 1}, 1)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func benchDiskAppend(b *testing.B, pol FsyncPolicy) {
	d := benchDisk(b, pol, 64<<20)
	defer d.Close()
	piece := benchSource()
	b.SetBytes(benchPiece)
	i := 0
	for b.Loop() {
		if err := d.Append(piece(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(d.Segments()), "segments")
}

func BenchmarkDiskCatchUp(b *testing.B) {
	piece := benchSource()
	d := benchDisk(b, FsyncNo, MinSize) // everything is read from the files
	defer d.Close()
	for i := 0; d.End() < benchCatchUp; i++ {
		if err := d.Append(piece(i)); err != nil {
			b.Fatal(err)
		}
	}
	// The baseline: the same bytes in one plain file.
	plain := filepath.Join(b.TempDir(), "plain")
	pf, err := os.Create(plain)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i*benchPiece < benchCatchUp; i++ {
		pf.Write(piece(i))
	}
	pf.Close()

	b.Run("file-tcp-sendfile", func(b *testing.B) {
		conn := tcpSink(b)
		b.SetBytes(benchCatchUp)
		for b.Loop() {
			f, _ := os.Open(plain)
			if n, err := io.Copy(conn, f); err != nil || n != benchCatchUp {
				b.Fatal(n, err)
			}
			f.Close()
		}
	})
	b.Run("disk-tcp-sendfile", func(b *testing.B) {
		conn := tcpSink(b)
		benchCursor(b, d, conn)
	})
	b.Run("disk-tcp-pread", func(b *testing.B) {
		conn := tcpSink(b)
		benchCursor(b, d, struct{ io.Writer }{conn}) // hides the socket: buffered path
	})
	b.Run("ring-tcp-writev", func(b *testing.B) {
		r := newRing(benchCatchUp, 1)
		defer r.Close()
		for i := 0; r.End() < benchCatchUp; i++ {
			r.Append(piece(i))
		}
		conn := tcpSink(b)
		b.SetBytes(benchCatchUp)
		for b.Loop() {
			c, _ := r.newCursor(1)
			for c.Offset() <= r.End() {
				if _, err := c.WriteTo(context.Background(), conn, 1<<20); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("file-read", func(b *testing.B) {
		p := make([]byte, fileChunk)
		b.SetBytes(benchCatchUp)
		for b.Loop() {
			f, _ := os.Open(plain)
			var n int64
			for {
				k, err := f.Read(p)
				n += int64(k)
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if n != benchCatchUp {
				b.Fatal(n)
			}
			f.Close()
		}
	})
	b.Run("disk-read", func(b *testing.B) {
		p := make([]byte, fileChunk)
		b.SetBytes(benchCatchUp)
		for b.Loop() {
			c, _ := d.newCursor(1)
			for c.Offset() <= d.End() {
				if _, err := c.Read(context.Background(), p); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
		}
	})
}

// benchCursor streams the whole disk backlog to w with a fresh cursor per iteration.
func benchCursor(b *testing.B, d *disk, w io.Writer) {
	b.SetBytes(d.End() - d.First() + 1)
	for b.Loop() {
		c, err := d.newCursor(d.First())
		if err != nil {
			b.Fatal(err)
		}
		for c.Offset() <= d.End() {
			if _, err := c.WriteTo(context.Background(), w, 1<<20); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
	}
}

// tcpSink returns a loopback TCP connection whose far end reads and discards everything in
// 1 MiB reads; both ends are closed when the benchmark ends.
func tcpSink(b *testing.B) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := make([]byte, 1<<20)
		for {
			if _, err := peer.Read(p); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() {
		conn.Close()
		peer.Close()
		<-done
	})
	return conn
}
