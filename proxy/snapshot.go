package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Snapshot file names inside Config.Dir.
const (
	snapshotName = "snapshot.rdb"
	metaName     = "snapshot.json"
)

// snapshot is an RDB file equal to the master's dataset at Offset under Replid: a replica that
// loads it needs the stream from Offset+1. It is immutable; a new one replaces it whole.
type snapshot struct {
	Replid  string    `json:"replid"`
	Offset  int64     `json:"offset"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	path    string
}

// open returns the snapshot file for serving. The caller holds the state lock, so the file at
// path is this snapshot's; the descriptor keeps it readable after a later rename replaces it.
func (s *snapshot) open() (*os.File, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	return f, nil
}

// snapshotWriter receives an RDB payload into a temporary file in dir.
type snapshotWriter struct {
	dir string
	f   *os.File
}

func newSnapshotWriter(dir string) (*snapshotWriter, error) {
	f, err := os.CreateTemp(dir, "temp-*.rdb")
	if err != nil {
		return nil, fmt.Errorf("create snapshot file: %w", err)
	}
	return &snapshotWriter{dir: dir, f: f}, nil
}

func (w *snapshotWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// abort removes the partial file.
func (w *snapshotWriter) abort() {
	name := w.f.Name()
	w.f.Close()
	os.Remove(name)
}

// commit makes the received RDB the snapshot for (replid, offset). The metadata is removed
// before the data file is replaced and written after it, so a crash in between leaves no
// snapshot rather than a file paired with the wrong offset.
func (w *snapshotWriter) commit(replid string, offset int64) (*snapshot, error) {
	size, err := w.f.Seek(0, io.SeekEnd)
	if err == nil {
		err = checkRDBMagic(w.f)
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.f.Name())
		return nil, err
	}
	snap := &snapshot{Replid: replid, Offset: offset, Size: size, Created: time.Now(),
		path: filepath.Join(w.dir, snapshotName)}
	meta := filepath.Join(w.dir, metaName)
	if err := os.Remove(meta); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Remove(w.f.Name())
		return nil, fmt.Errorf("remove snapshot metadata: %w", err)
	}
	if err := os.Rename(w.f.Name(), snap.path); err != nil {
		os.Remove(w.f.Name())
		return nil, fmt.Errorf("install snapshot: %w", err)
	}
	b, _ := json.Marshal(snap)
	if err := writeFileAtomic(meta, b); err != nil {
		return nil, err
	}
	return snap, nil
}

// checkRDBMagic rejects a payload that is not an RDB file: the first guard against serving
// garbage. (Checksums are verified by replicas as they load.)
func checkRDBMagic(f *os.File) error {
	var hdr [9]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return fmt.Errorf("snapshot is not an RDB file: %w", err)
	}
	if !bytes.HasPrefix(hdr[:], []byte("REDIS")) {
		return fmt.Errorf("snapshot is not an RDB file: header %q", hdr[:])
	}
	return nil
}

// loadSnapshot returns the snapshot left in dir by an earlier run, or nil when there is none
// or it does not match its metadata.
func loadSnapshot(dir string) (*snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot metadata: %w", err)
	}
	var s snapshot
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
	if err := checkRDBMagic(f); err != nil {
		return nil, err
	}
	return &s, nil
}

// writeFileAtomic writes data to path through a synced temporary file and a rename, then syncs
// the directory so the rename itself survives a crash.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
