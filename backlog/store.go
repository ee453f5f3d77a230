package backlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backlog is one history's stream (one epoch), in RAM or on disk: what the proxy appends to
// and streams from. A Store starts them; callers never need the kind behind it.
type Backlog interface {
	// Stage, Publish, Staged and DropStaged are the writer's: see stage.go.
	Stage(rd io.Reader) ([]byte, error)
	Publish(end int64) ([]byte, error)
	Staged() int64
	DropStaged()
	ReadAt(p []byte, off int64) (int, error)
	Wait(ctx context.Context, off int64) error
	// Cursor returns a cursor whose next byte is off: ErrTrimmed for off < First(),
	// ErrFuture for off > End()+1, ErrClosed after Close. On error it is a nil interface.
	Cursor(off int64) (StreamCursor, error)
	First() int64
	End() int64
	Bounds() (first, end int64)
	// Synced is the highest offset durable under the fsync policy, the most the proxy may
	// acknowledge upstream; End() in memory mode.
	Synced() int64
	Size() int64
	// Close ends the backlog: waiters and cursors get ErrClosed. The Store closes the
	// current backlog itself at Start and Close; a second Close does nothing.
	Close() error
}

// StreamCursor reads a Backlog in order for one replica, never skipping a byte: once its
// offset is no longer held it fails with ErrTrimmed, for good. Not safe for concurrent use.
type StreamCursor interface {
	Read(ctx context.Context, p []byte) (int, error)
	WriteTo(ctx context.Context, w io.Writer, limit int) (int64, error)
	WaitAt(ctx context.Context, off int64) error
	Skip(n int64) error
	Offset() int64
	End() int64
	// On reports whether the cursor reads b, so that nothing is written for a cursor of a
	// backlog a new history replaced.
	On(b Backlog) bool
	// Close lets the cursor go: on disk it holds a segment file open until then.
	Close()
}

var (
	_ Backlog      = (*ring)(nil)
	_ Backlog      = (*disk)(nil)
	_ StreamCursor = (*cursor)(nil)
	_ StreamCursor = (*diskCursor)(nil)
)

// Mode says where a Store keeps the stream (--backlog-mode).
type Mode int

const (
	// Memory keeps each history in a RAM ring, lost on restart. The zero value.
	Memory Mode = iota
	// Disk keeps it in segment files under Options.Dir/backlog, recovered on restart.
	Disk
)

func (m Mode) String() string {
	switch m {
	case Memory:
		return "memory"
	case Disk:
		return "disk"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "memory" or "disk", in any case.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Memory, Disk} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("backlog: unknown mode %q (want memory or disk)", s)
}

// Options configure Open. Zero fields take the defaults given; memory mode uses only Size.
type Options struct {
	Mode Mode
	// Dir is the directory of the disk backlog: segments go in Dir/backlog. Required in
	// disk mode: an empty Dir is an error there, never a silent fall back to RAM.
	Dir string
	// Size is the retention, the most stream bytes kept (repl-backlog-size); at least
	// MinSize. On disk whole segments are deleted, oldest first, to stay under it (the
	// newest segment is never deleted, so one append larger than Size exceeds it); a full
	// disk keeps less (see Stats.EffectiveSize).
	Size int64
	// TTL, when positive, also deletes sealed segments whose newest byte is older than TTL
	// (--backlog-ttl). The segment being written is never deleted by age.
	TTL time.Duration
	// Fsync is the durability policy (--backlog-fsync); the zero value is FsyncEverySec.
	Fsync FsyncPolicy
	// RAMTail is the size of the in-memory copy of the newest bytes, a ring, from which
	// cursors that keep up are served. Default min(Size, DefaultRAMTail); at most Size.
	RAMTail int64
	// SegmentSize is the largest data size of a segment file. Default DefaultSegmentSize.
	// Segments are smaller for a small Size or a small file system (see disk.segLimit).
	SegmentSize int64
	// Logf receives the few events worth a log line: recovery results, torn tails cut,
	// storage errors and repairs, a full disk. Default: discard.
	Logf func(format string, args ...any)

	// tick is the period of the background goroutine (fsync for everysec, TTL); tests
	// shorten or lengthen it. Default one second.
	tick time.Duration
	// full collects the disk-full events of every disk a Store starts; normalize makes one
	// when it is nil.
	full *fullStats
	// statfs returns the bytes available on the file system holding dir; tests replace it.
	// Default freeSpace.
	statfs func(dir string) (int64, error)
}

func (o Options) normalize() (Options, error) {
	if o.Size <= 0 {
		return o, errors.New("backlog: size must be positive")
	}
	o.Size = max(o.Size, MinSize)
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	switch o.Mode {
	case Memory:
		return o, nil
	case Disk:
	default:
		return o, fmt.Errorf("backlog: invalid mode %d", int(o.Mode))
	}
	if o.Dir == "" {
		return o, errors.New("backlog: disk mode needs a directory")
	}
	if o.Fsync < FsyncEverySec || o.Fsync > FsyncNo {
		return o, fmt.Errorf("backlog: invalid fsync policy %d", int(o.Fsync))
	}
	if o.RAMTail <= 0 {
		o.RAMTail = min(o.Size, DefaultRAMTail)
	}
	o.RAMTail = max(min(o.RAMTail, o.Size), MinSize)
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.tick <= 0 {
		o.tick = time.Second
	}
	if o.full == nil {
		o.full = &fullStats{}
	}
	if o.statfs == nil {
		o.statfs = freeSpace
	}
	return o, nil
}

// Recovery reports what Open found in the directory (disk mode; empty in memory mode).
type Recovery struct {
	// Backlog is the recovered history, ready to append to at End+1 (PSYNC State.Replid
	// End+1), or nil when there is none (History false): the caller must full-sync and Start.
	Backlog  Backlog
	State    State // the stored replication state, when HasState
	HasState bool
	// History is true when segments of the state's epoch were found.
	History     bool
	EpochReplid string // the replid the history started with, from the segment headers
	First, End  int64  // bounds of the recovered stream; First == End+1 when it is empty
	Segments    int    // segments kept
	Discarded   int    // segments deleted: another epoch, no state, malformed, or cut off by a gap
	Dropped     int64  // stream bytes cut from torn tails
}

// Stats describe a Store's backlog for INFO and metrics.
type Stats struct {
	Mode Mode
	// Active is true while a history's backlog exists (after Start, or a recovered one).
	// The fields from Bytes to Mem describe it and are zero when it is false.
	Active bool
	// Size is the retention asked for (Options.Size, or the last Resize).
	Size int64
	// Bytes is the number of stream bytes held, End-First+1.
	Bytes      int64
	First, End int64
	Synced     int64 // durable under the fsync policy (End in memory mode)
	Segments   int   // segment files on disk (0 in memory mode)
	// OldestAge is how long ago the oldest held byte was stored, to a segment's precision;
	// OldestAgeOK is false when that is unknown (memory mode, or the oldest segment was
	// recovered from disk, where no file records when it began).
	OldestAge   time.Duration
	OldestAgeOK bool
	Mem         int64 // RAM holding stream bytes: the ring, or the disk's RAM tail and buffer
	// LastErr is the storage error that keeps the backlog from storing or syncing, or a
	// failed Start's; nil once an append (or the next Start) succeeds.
	LastErr error
	// DiskFullEvents counts the times, since Open, a write found the disk full and the
	// oldest segments were deleted to make room.
	DiskFullEvents int64
	// EffectiveSize is the number of stream bytes the backlog held just after the last
	// disk-full event made room (End-First+1 then): what the disk could actually hold of
	// the window asked for, when it was last found full. It is Size while the disk has
	// never been full since Open (and in memory mode).
	EffectiveSize int64
}

// zeroReplid is Redis's replid2 when there is no previous history.
var zeroReplid = strings.Repeat("0", replidLen)

// Store owns the backlog's storage for the proxy's lifetime and starts one Backlog per
// history (epoch). In memory mode each history is a new ring; in disk mode the one directory
// is reset to the new history, and the epoch numbering histories is kept in the state file.
// Every method is safe for concurrent use; Start and SetIDs come from the writer.
type Store struct {
	opt  Options
	size atomic.Int64 // retention for the current and future backlogs

	// mu serializes Start, SetIDs, Resize and Close, and guards what follows.
	mu     sync.Mutex
	closed bool
	epoch  uint64 // the current history's epoch; Start begins epoch+1
	// dk is the directory's one open handle in disk mode. After a failed Start it is nil (the
	// failure closed it) and the next Start opens the directory again.
	dk *disk

	// cur is the current history's backlog (*ring or *disk), nil before the first; Stats
	// reads it without mu, so that INFO never waits for a Start's file work.
	cur     atomic.Pointer[Backlog]
	failure atomic.Pointer[error] // a failed Start's error, until the next Start succeeds
}

// Open prepares the storage. In disk mode it opens (creating if needed) Dir/backlog and
// recovers what it holds (see FORMAT.md): Recovery.Backlog is the recovered history, or nil
// when there is none. In memory mode nothing is stored yet and the Recovery is empty. I/O
// errors during recovery are returned and never cause stored bytes to be deleted.
func Open(opt Options) (*Store, Recovery, error) {
	opt, err := opt.normalize()
	if err != nil {
		return nil, Recovery{}, err
	}
	s := &Store{opt: opt}
	s.size.Store(opt.Size)
	if opt.Mode == Memory {
		return s, Recovery{}, nil
	}
	d, rec, err := openDisk(opt)
	if err != nil {
		return nil, rec, err
	}
	s.dk, s.epoch = d, rec.State.Epoch
	if rec.History {
		rec.Backlog = d
		s.setCur(d)
	}
	return s, rec, nil
}

func (s *Store) setCur(b Backlog) {
	if b == nil {
		s.cur.Store(nil)
		return
	}
	s.cur.Store(&b)
}

func (s *Store) current() Backlog {
	if p := s.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// Start begins a new history after a full sync: replid is the +FULLRESYNC replid and next
// its offset + 1, the first offset the new backlog will hold. The previous backlog is
// closed (its cursors and waiters get ErrClosed). In disk mode the directory is reset (the
// old segments deleted, the new state stored, replid2 zero, no second offset) in the next
// epoch, so that a restart finds the old history or the new one, never a mix; if that
// fails, the history is gone (Stats.LastErr says why) and the next Start reopens the
// directory and tries again.
func (s *Store) Start(replid string, next int64) (Backlog, error) {
	if next < 0 {
		return nil, fmt.Errorf("backlog: start: negative offset %d", next)
	}
	if len(replid) > replidLen {
		return nil, fmt.Errorf("backlog: start: replid %q longer than %d bytes", replid, replidLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.opt.Mode == Memory {
		r := newRing(s.size.Load(), next)
		old := s.current()
		s.setCur(r)
		s.epoch++
		if old != nil {
			old.Close()
		}
		return r, nil
	}
	d, err := s.resetLocked(replid, next)
	if err != nil {
		s.failure.Store(&err)
		return nil, err
	}
	s.failure.Store(nil)
	return d, nil
}

// resetLocked is Start in disk mode. The caller holds mu.
func (s *Store) resetLocked(replid string, next int64) (*disk, error) {
	if s.dk == nil {
		opt := s.opt
		opt.Size = s.size.Load()
		d, rec, err := openDisk(opt)
		if err != nil {
			return nil, fmt.Errorf("backlog: start: reopen after a failed start: %w", err)
		}
		s.dk, s.epoch = d, max(s.epoch, rec.State.Epoch)
	}
	st := State{Replid: replid, Replid2: zeroReplid, SecondOff: -1, Epoch: s.epoch + 1}
	s.setCur(nil) // Reset closes the old history whatever happens
	d, err := s.dk.Reset(st, next)
	if err != nil {
		if s.dk.closed.Load() {
			s.dk = nil
		}
		return nil, fmt.Errorf("backlog: start a history at %d: %w", next, err)
	}
	s.dk, s.epoch = d, st.Epoch
	s.setCur(d)
	return d, nil
}

// SetIDs stores the replication IDs of a failover within the current history (+CONTINUE
// with a new replid): replid the new ID, replid2 the old one, valid below secondOff. In disk
// mode they are durable when it returns nil, and on error the stored IDs are the old ones;
// a full disk gives up its oldest segments for them. In memory mode, and when there is no
// history to go with them, it stores nothing and returns nil.
func (s *Store) SetIDs(replid, replid2 string, secondOff int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.opt.Mode == Memory || s.dk == nil || s.current() == nil:
		return nil
	}
	st := s.dk.State()
	st.Replid, st.Replid2, st.SecondOff = replid, replid2, secondOff
	return s.dk.SetState(st)
}

// Resize changes the retention (CONFIG SET repl-backlog-size) of the current backlog and of
// the ones Start makes later. A size below MinSize is raised to MinSize.
func (s *Store) Resize(size int64) {
	size = max(size, MinSize)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size.Store(size)
	if s.dk != nil {
		s.dk.Resize(size) // the current backlog, or the handle the next Start resets
	} else if r, ok := s.current().(*ring); ok {
		r.Resize(size)
	}
}

// Stats returns the current figures. It takes no lock a Start holds.
func (s *Store) Stats() Stats {
	st := Stats{Mode: s.opt.Mode, Size: s.size.Load(), EffectiveSize: s.size.Load()}
	if f := s.opt.full; f != nil {
		if st.DiskFullEvents = f.events.Load(); st.DiskFullEvents > 0 {
			st.EffectiveSize = f.effective.Load()
		}
	}
	switch b := s.current().(type) {
	case *ring:
		st.Active = true
		st.First, st.End = b.Bounds()
		st.Synced, st.Mem = st.End, b.Mem()
	case *disk:
		st.Active = true
		st.First, st.End = b.Bounds()
		st.Synced, st.Mem, st.Segments = b.Synced(), b.Mem(), b.Segments()
		st.OldestAge, st.OldestAgeOK = b.OldestAge()
		st.LastErr = b.Err()
	}
	if st.Active {
		st.Bytes = max(st.End-st.First+1, 0)
	}
	if p := s.failure.Load(); p != nil {
		st.LastErr = *p
	}
	return st
}

// Close closes the current backlog (waiters and cursors get ErrClosed); in disk mode it
// syncs the active segment first, whatever the policy, so a clean stop loses nothing, and
// returns that sync's error. Later Starts fail with ErrClosed. Idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.dk != nil {
		return s.dk.Close()
	}
	if b := s.current(); b != nil {
		return b.Close()
	}
	return nil
}
