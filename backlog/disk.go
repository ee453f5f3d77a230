package backlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FsyncPolicy says when appended bytes are made durable, like Redis's appendfsync.
type FsyncPolicy int

const (
	// FsyncEverySec syncs the files once a second from a goroutine of the disk: appends
	// never wait for the disk, and Synced() lags End() by about a second. It is the zero
	// value and the default.
	FsyncEverySec FsyncPolicy = iota
	// FsyncAlways syncs before every Append returns: Synced() == End() always.
	FsyncAlways
	// FsyncNo never syncs (but on Close): the operating system writes the bytes back when it
	// likes. Synced() is End(): the bytes survive a crash of the process, not of the machine.
	FsyncNo
)

func (p FsyncPolicy) String() string {
	switch p {
	case FsyncEverySec:
		return "everysec"
	case FsyncAlways:
		return "always"
	case FsyncNo:
		return "no"
	}
	return fmt.Sprintf("FsyncPolicy(%d)", int(p))
}

// ParseFsyncPolicy parses "always", "everysec" or "no", in any case, as Redis does.
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	for _, p := range []FsyncPolicy{FsyncEverySec, FsyncAlways, FsyncNo} {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("backlog: unknown fsync policy %q (want always, everysec or no)", s)
}

const (
	// DefaultSegmentSize is the data size at which a segment is sealed and a new one started.
	DefaultSegmentSize = 64 << 20
	// DefaultRAMTail is the default size of the in-memory tail.
	DefaultRAMTail = 64 << 20
	// minSegmentSize keeps tiny retention sizes from making a file per few bytes.
	minSegmentSize = 4 << 10
	// syncEvery is how many bytes FsyncEverySec lets pile up before it wakes its goroutine
	// early (as Redis's incremental fsync does), so that no fsync, the one of a seal above
	// all, has more than this to write back and stalls the writer long.
	syncEvery = 8 << 20
	// readSize is AppendFrom's buffer: one read of the master's socket, stored as one record.
	readSize = maxRecord
	// fileChunk is a lagging cursor's buffer when sendfile cannot be used: the only memory a
	// cursor reading the files holds, whatever the segment's size.
	fileChunk = 256 << 10
)

var (
	// ErrStorage marks every error of the files of a disk backlog: an I/O error, or a full
	// disk with nothing older left to delete. The underlying error is wrapped too
	// (errors.Is(err, syscall.ENOSPC) works). Nothing stored is ever damaged by one: the
	// failed append is cut back and is retried by the next.
	ErrStorage = errors.New("backlog: storage failure")
	// errNoHistory is returned by appends to a disk that recovered no history: a history
	// must be started with Reset (after a full sync) first. A Store never hands such a disk
	// out.
	errNoHistory = errors.New("backlog: no history on disk; call Reset")
)

// disk is a backlog addressed by absolute offset, like ring, that keeps the stream in segment
// files under <dir>/backlog, retained by total size and optionally by age, and survives
// restarts. The newest bytes are also kept in a ring, the RAM tail: cursors that keep up are
// served from memory, lagging ones from the files (sendfile to a TCP or Unix socket, else
// pread into a fixed buffer; never a whole file in memory).
//
// Semantics follow ring: absolute offsets, First/End/Bounds moving only forward, one writer,
// cursors that never skip a byte (ErrTrimmed once their offset is deleted, ErrFuture,
// ErrClosed). Differences: appends return errors (ErrStorage, errNoHistory); the history
// must be started with Reset; Synced reports how far the stream is durable under the fsync
// policy; a full disk gives up the oldest segments (diskfull.go); and a disk owns one
// goroutine (fsync every second, TTL), stopped by Close.
//
// Append, AppendFrom and Reset must be called by one goroutine only (the writer); every
// other method is safe for concurrent use. Only one disk may use a directory at a time.
type disk struct {
	dir  string  // opt.Dir/backlog, holding the segments and the state file
	opt  Options // normalized for disk mode
	ring *ring   // the RAM tail; its End is the disk's End

	// wmu serializes the mutators: appends, rotation, retention, repair, Resize, Close and
	// the background goroutine's steps. Readers never take it.
	wmu sync.Mutex
	// segMu guards segs. The writer (holding wmu) changes segs and first with segMu held
	// exclusively; readers look segments up under segMu shared.
	segMu sync.RWMutex
	segs  []*segment // ordered by start, contiguous: segs[i+1].start == segs[i].last+1

	// first is the oldest offset held; with ring.End() it forms Bounds. Stored through seq, a
	// seqlock, so that Bounds returns a pair that existed at one instant (see Bounds).
	seq   atomic.Uint64
	first atomic.Int64

	synced atomic.Int64 // highest offset durable under the policy
	bufMem atomic.Int64 // size of rbuf once allocated, for Mem
	size   atomic.Int64 // retention, bytes
	space  atomic.Int64 // room the file system had for the backlog, 0 if unknown (measureSpace)
	closed atomic.Bool  // set once, with wmu held, before the files are closed

	// Writer state, guarded by wmu.
	history     bool       // a history exists: the writer may append
	act         *segment   // the segment being written; nil until the first append after a seal
	w           *segWriter // act's files
	sp          syncPoint  // the newest point known durable
	dirty       bool       // a failed write may have left bytes past w's sizes: cut them first
	epochReplid string     // written into new segment headers
	ibuf        []byte     // index entries of one append
	rbuf        []byte     // AppendFrom's read buffer
	stagedErr   error      // the read error that came with staged bytes AppendFrom could not store
	// sHead and sTail bound the bytes Stage read and Publish has not stored: rbuf[sHead:sTail]
	// (see stage.go).
	sHead, sTail int

	// syncMu serializes fsyncs with the closing of the files they sync, so that an fsync
	// error is seen by exactly the caller that got it: Linux reports a writeback error once,
	// and a second fsync may then succeed although the bytes never reached the disk.
	// syncErr is that error until a repair has written the bytes again and synced them; while
	// it is set no other sync may report success.
	syncMu  sync.Mutex
	syncErr atomic.Pointer[error]

	errMu   sync.Mutex
	lastErr error

	stateMu sync.Mutex
	state   State

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	kick     chan struct{} // wakes the goroutine for an early everysec sync; 1-buffered

	// faults, when set by a test, runs before file operations to inject errors.
	faults atomic.Pointer[faultFunc]
}

// syncPoint is a position known durable: w's files up to these sizes, stream up to end.
type syncPoint struct {
	w         *segWriter
	data, idx int64
	end       int64
}

// faultOp names the file operations a test can make fail.
type faultOp int

const (
	opWriteData faultOp = iota
	opWriteIndex
	opSync
	opTruncate
	opCreate
	opState
)

// faultFunc is the test hook: for op on n bytes it returns an error to fail the operation
// with, after writing only the first k bytes (a write to a full disk stops part way).
type faultFunc func(op faultOp, n int) (k int, err error)

func (d *disk) fault(op faultOp, n int) (int, error) {
	if f := d.faults.Load(); f != nil {
		return (*f)(op, n)
	}
	return n, nil
}

// openDisk opens (creating it if needed) the disk backlog in opt.Dir/backlog and recovers what it
// holds: the state file, then the segments of the state's epoch. The newest segment is checked
// record by record and a torn tail is cut at the last whole record, with a log line saying
// how many bytes were dropped; older segments are trusted by their seal (a trailer written
// and synced when they were closed). Segments that cannot belong to the history (another
// epoch, no state file, malformed files, or older than a gap) are deleted. I/O errors stop
// the recovery and are returned: they never cause stored bytes to be deleted.
//
// The returned disk serves the recovered bytes from the files; its RAM tail starts empty at
// End+1. If Recovery.History is false, appends fail with errNoHistory until Reset. opt.Mode
// is taken to be Disk.
func openDisk(opt Options) (*disk, Recovery, error) {
	opt.Mode = Disk
	opt, err := opt.normalize()
	if err != nil {
		return nil, Recovery{}, err
	}
	d := newDisk(opt)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, Recovery{}, fmt.Errorf("backlog: create %s: %w", d.dir, err)
	}
	rec, err := d.recover()
	if err != nil {
		d.closeFiles()
		return nil, rec, err
	}
	d.wmu.Lock()
	d.retainLocked(d.ring.End(), time.Now())
	d.measureSpace() // for the recovered active segment; rotateLocked measures for new ones
	d.wmu.Unlock()
	d.start()
	return d, rec, nil
}

func newDisk(opt Options) *disk {
	d := &disk{
		dir:  filepath.Join(opt.Dir, "backlog"),
		opt:  opt,
		stop: make(chan struct{}),
		done: make(chan struct{}),
		kick: make(chan struct{}, 1),
	}
	d.size.Store(opt.Size)
	return d
}

// start launches the background goroutine. Close stops it.
func (d *disk) start() {
	go d.run()
}

func (d *disk) run() {
	defer close(d.done)
	if d.opt.Fsync != FsyncEverySec && d.opt.TTL <= 0 {
		<-d.stop
		return
	}
	t := time.NewTicker(d.opt.tick)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
			d.syncOnce()
		case now := <-t.C:
			if d.opt.Fsync == FsyncEverySec {
				d.syncOnce()
			}
			if d.opt.TTL > 0 {
				d.expire(now)
			}
		}
	}
}

// Reset closes d and starts a new history in its directory: the segments of the old one are
// deleted (oldest first), st is stored as the state, and an empty first segment at next is
// created, so that a restart at any point finds either the old history (possibly shorter),
// or no history, or the new one, but never a mix. It returns the new disk, with d's options
// and current size. Call it after a full sync: st.Replid is the replid of +FULLRESYNC, next
// is its offset + 1, and st.Epoch should differ from the old epoch.
//
// Like ring.Close for the old ring, d's cursors and waiters get ErrClosed. On error d is
// closed anyway (but on a bad argument, which changes nothing) and openDisk recovers
// whatever the directory holds. Removing the directory after Close, then openDisk and
// Reset, is equivalent.
func (d *disk) Reset(st State, next int64) (*disk, error) {
	if next < 0 {
		return nil, fmt.Errorf("backlog: reset: negative offset %d", next)
	}
	if len(st.Replid) > replidLen {
		return nil, fmt.Errorf("backlog: reset: replid %q longer than %d bytes", st.Replid, replidLen)
	}
	opt := d.opt
	opt.Size = d.size.Load()
	faults := d.faults.Load()
	d.Close()

	starts, files, err := listSegments(d.dir)
	if err != nil {
		return nil, err
	}
	for _, start := range starts {
		s := newSegment(d.dir, start)
		if has := files[start]; has[0] || has[1] {
			if err := s.remove(); err != nil {
				return nil, err
			}
		}
	}
	if err := syncDir(d.dir); err != nil {
		return nil, fmt.Errorf("backlog: reset: %w", err)
	}
	var ff faultFunc
	if faults != nil {
		ff = *faults
	}
	if err := writeState(d.dir, st, ff); err != nil {
		return nil, err
	}

	nd := newDisk(opt)
	nd.faults.Store(faults)
	nd.state = st
	nd.history = true
	nd.epochReplid = st.Replid
	nd.ring = newRing(opt.RAMTail, next)
	nd.first.Store(next)
	nd.synced.Store(next - 1)
	nd.wmu.Lock()
	err = nd.rotateLocked()
	nd.wmu.Unlock()
	if err != nil {
		nd.closeFiles()
		return nil, err
	}
	nd.start()
	return nd, nil
}

// State returns the stored replication state.
func (d *disk) State() State {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	return d.state
}

// SetState stores st atomically (temporary file, fsync, rename, directory fsync); it returns
// once st is durable, and on error the old state is still the stored one. On a full disk the
// oldest segments are deleted until the file fits, as for an append. The epoch cannot change
// here: a new epoch is a new history, started with Reset.
func (d *disk) SetState(st State) error {
	d.wmu.Lock() // the order is wmu, then stateMu (createSegment reads the state under wmu)
	defer d.wmu.Unlock()
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	switch {
	case d.closed.Load():
		return ErrClosed
	case st.Epoch != d.state.Epoch:
		return fmt.Errorf("backlog: SetState: epoch %d differs from the backlog's %d; use Reset", st.Epoch, d.state.Epoch)
	}
	var ff faultFunc
	if f := d.faults.Load(); f != nil {
		ff = *f
	}
	dropped := 0
	defer func() { d.diskFullLocked(dropped) }()
	for {
		err := writeState(d.dir, st, ff)
		if err == nil {
			break
		}
		if !noSpace(err) || !d.dropOldestLocked() {
			return err
		}
		dropped++
	}
	d.state = st
	return nil
}

func (d *disk) setErr(err error) {
	d.errMu.Lock()
	d.lastErr = err
	d.errMu.Unlock()
}

// Err returns the storage error that keeps the backlog from storing or syncing, or nil when
// the last append (or the last repair) succeeded.
func (d *disk) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.lastErr
}

// Synced returns the highest offset that is durable under the fsync policy: End() after
// every Append with FsyncAlways; the end as of the last one-second sync with FsyncEverySec;
// End() with FsyncNo (written to the operating system). The proxy acknowledges at most this.
func (d *disk) Synced() int64 { return d.synced.Load() }

// First returns the offset of the oldest byte held; End()+1 when empty.
func (d *disk) First() int64 { return d.first.Load() }

// End returns the offset of the last byte appended (master_repl_offset).
func (d *disk) End() int64 { return d.ring.End() }

// Bounds returns First and End as a pair that held at one instant, without locking: First is
// read under a seqlock and End during it, so First was current when End was read.
func (d *disk) Bounds() (first, end int64) {
	for {
		s := d.seq.Load()
		if s&1 == 0 {
			first, end = d.first.Load(), d.ring.End()
			if d.seq.Load() == s {
				return first, end
			}
		}
		runtime.Gosched()
	}
}

// Histlen returns the number of bytes held, End()-First()+1.
func (d *disk) Histlen() int64 {
	first, end := d.Bounds()
	return end - first + 1
}

// Size returns the retention size.
func (d *disk) Size() int64 { return d.size.Load() }

// Mem returns the memory the disk holds for data: the RAM tail's storage and the read
// buffer. Cursors reading the files hold a fixed buffer each on top of this.
func (d *disk) Mem() int64 {
	if d.closed.Load() {
		return 0
	}
	return d.ring.Mem() + d.bufMem.Load()
}

// Segments returns the number of segments on disk.
func (d *disk) Segments() int {
	d.segMu.RLock()
	defer d.segMu.RUnlock()
	return len(d.segs)
}

// OldestAge returns how long ago the oldest held byte was stored, to the precision of a
// segment (the time its segment began), and false when that is unknown (the oldest segment
// was recovered from disk, where no file records when it began).
func (d *disk) OldestAge() (time.Duration, bool) {
	d.segMu.RLock()
	defer d.segMu.RUnlock()
	if len(d.segs) == 0 || d.segs[0].began.IsZero() {
		return 0, false
	}
	return time.Since(d.segs[0].began), true
}

// Resize changes the retention size at runtime (CONFIG SET repl-backlog-size), deleting the
// oldest segments at once if the held bytes exceed it. A size below MinSize is raised to
// MinSize. The RAM tail is never larger than the size: it shrinks with it, and grows back
// up to Options.RAMTail.
func (d *disk) Resize(size int64) {
	size = max(size, MinSize)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closed.Load() {
		return
	}
	d.size.Store(size)
	d.ring.Resize(min(d.opt.RAMTail, size))
	d.retainLocked(d.ring.End(), time.Time{})
}

// Close stops the background goroutine, syncs the active segment (under every policy, as
// Redis does at shutdown), and closes the files and the RAM tail: waiters and cursors get
// ErrClosed, appends fail with it. First and End keep their last values. It returns the
// error of the final sync. Idempotent.
func (d *disk) Close() error {
	d.stopOnce.Do(func() { close(d.stop) })
	<-d.done
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closed.Load() {
		return nil
	}
	var err error
	if w := d.w; w != nil {
		if d.dirty || d.syncErr.Load() != nil {
			err = d.repairLocked()
		} else {
			err = d.syncWriter(w, false)
		}
		if err == nil {
			d.synced.Store(d.ring.End())
		}
	}
	d.closed.Store(true)
	d.ring.Close()
	d.closeFiles()
	return err
}

// closeFiles closes the writer's files and retires every segment: readers still holding one
// finish their current call, new ones get ErrClosed.
func (d *disk) closeFiles() {
	if w := d.w; w != nil {
		d.syncMu.Lock()
		if !w.closed {
			w.closed = true
			w.data.Close()
			w.idx.Close()
		}
		d.syncMu.Unlock()
	}
	d.segMu.RLock()
	for _, s := range d.segs {
		s.retire()
	}
	d.segMu.RUnlock()
}
