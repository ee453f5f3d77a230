// Package backlog keeps the master's replication stream addressed by absolute offset, like
// Redis's repl backlog, so that any replica can resume from any offset still held.
//
// # Offsets
//
// Offsets follow Redis. Bytes are numbered from 1 (or from whatever offset the epoch starts
// at). End is the offset of the last byte appended (master_repl_offset); First is the offset of
// the oldest byte still held (repl_backlog_first_byte_offset). An empty ring has
// First == End+1, and Histlen == End-First+1 always. Both bounds only move forward.
//
// # Ring
//
// Ring is a bounded in-RAM ring. Its storage is a queue of fixed-size blocks (1 MiB) ordered
// by offset, allocated as bytes arrive, so a large backlog costs nothing until it is used and
// held bytes are never moved: no Append or Resize pays for the ring's size. When it is full
// the oldest bytes are evicted, byte by byte: First moves forward and readers of those
// offsets get ErrTrimmed. A block whose bytes are all evicted is reused as the next new
// block, so a full ring allocates nothing; memory may exceed the size by about two blocks.
// The ring never serves other bytes in place of evicted ones, and a reader is never moved
// forward over bytes it did not receive: that is what makes a PSYNC +CONTINUE provable.
//
// # Disk
//
// Disk is the durable backlog: segment files under <dir>/backlog (format in FORMAT.md) behind
// the same interface (Backlog, StreamCursor), with a Ring as its in-RAM tail so replicas that
// keep up never touch the files. It fsyncs by policy (always, everysec, no), reports what is
// durable with Synced, and recovers after a crash by cutting a torn tail at the last whole
// record.
//
// # Concurrency
//
// One goroutine appends (the upstream link); any number of goroutines read, usually one
// cursor per downstream replica. The writer never waits for a reader: it fills storage past
// End, which no reader looks at, and publishes it in a short critical section; readers copy
// out at most 64 KiB per lock hold, or pin the blocks they write from (Cursor.WriteTo) and
// hold no lock while the socket write runs. First, End, Bounds and Histlen take no lock.
// Readers waiting for new bytes are woken by a broadcast that costs nothing while nobody
// waits. A Ring starts no goroutines; a Disk owns one for everysec fsyncs, ended by Close.
package backlog
