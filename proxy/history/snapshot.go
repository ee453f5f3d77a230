package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/internal/atomicfile"
	"github.com/psync-proxy/psync-proxy/resp"
)

// Snapshot file names inside Config.Dir.
const (
	snapshotName = "snapshot.rdb"
	metaName     = "snapshot.json"
)

// Snapshot is an RDB file equal to the master's dataset at Offset under Replid: a replica that
// loads it needs the stream from Offset+1. It is immutable; a new one replaces it whole.
type Snapshot struct {
	Replid  string    `json:"replid"`
	Offset  int64     `json:"offset"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	// Format is the RDB's header, such as "REDIS0011" or "VALKEY080"; Newer reports a version
	// above the newest the proxy knows for its magic: served all the same, with a warning.
	Format string `json:"-"`
	Newer  bool   `json:"-"`
	path   string
	// checked is the file's identity when its contents were last checked: serving re-checks
	// a file that changed on disk since.
	checked fileID
}

// fileID tells whether a file was rewritten: its inode, size and modification time.
type fileID struct {
	ino  uint64
	size int64
	mod  time.Time
}

func fileIDOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mod: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id
}

// open returns the snapshot file for serving. The caller holds the history's lock, so the
// file at path is this snapshot's; the descriptor keeps it readable after a later rename
// replaces it.
func (s *Snapshot) open() (*os.File, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	return f, nil
}

// Verify checks an open snapshot file before it is served: cheaply when the file is the one
// checked before (same inode, size and mtime), else by reading it all through the RDB checker.
func (s *Snapshot) Verify(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat snapshot: %w", err)
	}
	if fileIDOf(fi) == s.checked {
		return nil
	}
	if fi.Size() != s.Size {
		return fmt.Errorf("%w: the file has %d bytes, the snapshot had %d", resp.ErrBadRDB, fi.Size(), s.Size)
	}
	info, err := checkRDB(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return err
	}
	return s.matches(info)
}

// matches checks the RDB's own replication aux fields, when it has them, against the
// replication ID and offset it is served under.
func (s *Snapshot) matches(info resp.RDBInfo) error {
	if !info.HasRepl {
		return nil
	}
	if !strings.EqualFold(info.ReplID, s.Replid) || info.ReplOffset != s.Offset {
		return fmt.Errorf("%w: the RDB says it is %s:%d, it was received as %s:%d",
			resp.ErrBadRDB, info.ReplID, info.ReplOffset, s.Replid, s.Offset)
	}
	return nil
}

// checkRDB reads r through the RDB checker.
func checkRDB(r io.Reader) (resp.RDBInfo, error) {
	var c resp.RDBChecker
	if _, err := io.CopyBuffer(&c, r, make([]byte, 256<<10)); err != nil && !errors.Is(err, resp.ErrBadRDB) {
		return resp.RDBInfo{}, fmt.Errorf("read snapshot: %w", err)
	}
	return c.Finish()
}

// Writer receives an RDB payload into a temporary file in the history's directory, checking
// it as it arrives (resp.RDBChecker).
type Writer struct {
	f       *os.File
	check   resp.RDBChecker
	a       *Arriving // told of every write, when replicas follow the file as it grows
	written int64
	// makeRoom is called when the file system is full: it frees room (backlog segments the
	// new snapshot makes unnecessary) and reports whether it did. Nil: nothing to free.
	makeRoom func() bool
}

func newWriter(dir string, makeRoom func() bool) (*Writer, error) {
	f, err := os.CreateTemp(dir, "temp-*.rdb")
	if err != nil {
		return nil, fmt.Errorf("create snapshot file: %w", err)
	}
	return &Writer{f: f, makeRoom: makeRoom}, nil
}

// Write stores p. A payload the checker already rejects (bad magic or aux field) fails here,
// so a transfer of garbage stops early. On a full disk it has room made and writes the rest
// again, until it fits or nothing more can be freed (ErrNoRoom).
func (w *Writer) Write(p []byte) (int, error) {
	if _, err := w.check.Write(p); err != nil {
		return 0, err
	}
	n, err := w.f.Write(p)
	for err != nil && noSpace(err) && w.makeRoom != nil && w.makeRoom() {
		var m int
		m, err = w.f.Write(p[n:])
		n += m
	}
	w.written += int64(n)
	if err != nil && noSpace(err) {
		err = fmt.Errorf("%w (%d bytes of it written): %w", ErrNoRoom, w.written, err)
	}
	if w.a != nil && n > 0 {
		w.a.advance(int64(n))
	}
	return n, err
}

// ErrNoRoom is a snapshot that does not fit on the disk even once the backlog has given up
// every segment the new snapshot makes unnecessary: full syncs then wait for a snapshot,
// while partial resyncs go on from what the backlog holds.
var ErrNoRoom = errors.New("the disk is full: the snapshot does not fit beside the backlog's newest bytes")

// noSpace reports whether err says the file system (or the user's quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Abort removes the partial file.
func (w *Writer) Abort() {
	name := w.f.Name()
	w.f.Close()
	os.Remove(name)
}

// Finish checks the whole RDB (magic, version, EOF opcode, CRC64, and its repl-id and
// repl-offset aux fields against replid and offset), syncs it to disk and returns it as a
// snapshot still at its temporary path. A bad one is removed, never kept.
func (w *Writer) Finish(replid string, offset int64) (*Snapshot, error) {
	snap := &Snapshot{Replid: replid, Offset: offset, Created: time.Now(), path: w.f.Name()}
	info, err := w.check.Finish()
	if err == nil {
		err = snap.matches(info)
	}
	if err == nil {
		err = w.f.Sync()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = w.f.Stat()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.f.Name())
		return nil, err
	}
	snap.Size = fi.Size()
	snap.checked = fileIDOf(fi)
	snap.Format, snap.Newer = info.Header(), info.NewerVersion
	return snap, nil
}

// NewerFormat says, for a log warning, that the snapshot's RDB version is newer than the
// proxy knows, naming it; "" when it is a known one (or s is nil).
func (s *Snapshot) NewerFormat() string {
	if s == nil || !s.Newer {
		return ""
	}
	return fmt.Sprintf("its RDB format %s is newer than this proxy knows; its framing checks out (magic, version, aux fields, EOF, CRC64) and it is served as it is, but replicas of older releases will refuse to load it", s.Format)
}

// install moves a finished snapshot to its place in dir. The metadata is removed before the
// data file is replaced and written after it, so a crash in between leaves no snapshot rather
// than a file paired with the wrong offset. The caller holds the state lock (so no replica
// opens the path between the rename and the switch to s) and must switch to s when err is
// nil, since the old file is gone; metaErr means only that a restart will not find s.
func (s *Snapshot) install(dir string) (metaErr, err error) {
	tmp := s.path
	meta := filepath.Join(dir, metaName)
	if err := os.Remove(meta); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Remove(tmp)
		return nil, fmt.Errorf("remove snapshot metadata: %w", err)
	}
	path := filepath.Join(dir, snapshotName)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("install snapshot: %w", err)
	}
	s.path = path
	b, _ := json.Marshal(s)
	return atomicfile.Write(meta, b), nil
}

// loadSnapshot returns the snapshot left in dir by an earlier run, or nil when there is none
// or it does not match its metadata.
func loadSnapshot(dir string) (*Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot metadata: %w", err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot metadata: %w", err)
	}
	s.path = filepath.Join(dir, snapshotName)
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat snapshot: %w", err)
	}
	if st.Size() != s.Size || len(s.Replid) != 40 || s.Offset < 0 {
		return nil, fmt.Errorf("snapshot %s does not match its metadata (size %d, metadata says %d)", s.path, st.Size(), s.Size)
	}
	info, err := checkRDB(f)
	if err == nil {
		err = s.matches(info)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s fails its check: %w", s.path, err)
	}
	s.checked = fileIDOf(st)
	s.Format, s.Newer = info.Header(), info.NewerVersion
	return &s, nil
}

// Remove deletes the file of a snapshot that was never installed.
func (s *Snapshot) Remove() { os.Remove(s.path) }
