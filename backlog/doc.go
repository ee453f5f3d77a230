// Package backlog keeps the master's replication stream addressed by absolute offset, like
// Redis's repl backlog, so that any replica can resume from any offset still held.
//
// # Use
//
// Open returns a Store for the process's lifetime, in memory or disk mode
// (--backlog-mode); in disk mode it also recovers the history the directory holds. After
// each full sync, Store.Start begins the new history and returns its Backlog: the upstream
// link stages and publishes the stream into it (Stage, Publish), and each replica reads it
// through its own StreamCursor (Backlog.Cursor). Store.SetIDs records a failover within
// the history, Store.Resize the retention, Store.Stats the figures for INFO. Callers never
// need to know which kind of backlog they hold.
//
// # Offsets
//
// Offsets follow Redis. Bytes are numbered from 1 (or from whatever offset the history starts
// at). End is the offset of the last byte appended (master_repl_offset); First is the offset
// of the oldest byte still held (repl_backlog_first_byte_offset). An empty backlog has
// First == End+1, and the bytes held are End-First+1 always. Both bounds only move forward.
//
// # Memory mode
//
// Each history is a bounded in-RAM ring (ring.go). Its storage is a queue of fixed-size
// blocks (1 MiB) ordered by offset, allocated as bytes arrive, so a large backlog costs
// nothing until it is used and held bytes are never moved: no append or resize pays for the
// ring's size. When it is full the oldest bytes are evicted, byte by byte: First moves
// forward and readers of those offsets get ErrTrimmed. A block whose bytes are all evicted
// is reused as the next new block, so a full ring allocates nothing; memory may exceed the
// size by about two blocks. The ring never serves other bytes in place of evicted ones, and
// a reader is never moved forward over bytes it did not receive: that is what makes a PSYNC
// +CONTINUE provable.
//
// # Disk mode
//
// The durable backlog keeps segment files under <dir>/backlog (format in FORMAT.md), with
// a ring as its in-RAM tail so replicas that keep up never touch the files. It fsyncs by
// policy (always, everysec, no), reports what is durable with Synced, and recovers after a
// crash by cutting a torn tail at the last whole record. The state file beside the
// segments holds the replication IDs and the epoch numbering the histories; the Store keeps
// the epoch, callers only name the replid. Retention deletes whole segments, oldest first.
// A full disk does the same: it shrinks the window, never stops the stream (diskfull.go).
//
// # Concurrency
//
// One goroutine appends (the upstream link); any number of goroutines read, usually one
// cursor per downstream replica. The writer never waits for a reader: it fills storage past
// End, which no reader looks at, and publishes it in a short critical section; readers copy
// out at most 64 KiB per lock hold, or pin the blocks they write from (WriteTo) and hold no
// lock while the socket write runs. First, End and Bounds take no lock. Readers waiting for
// new bytes are woken by a broadcast that costs nothing while nobody waits. A ring starts no
// goroutines; a disk backlog owns one for everysec fsyncs and the TTL, ended by Close.
package backlog
