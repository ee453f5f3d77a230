package backlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The on-disk format is described in FORMAT.md. In short, a segment is two files named by the
// offset of its first byte: <start>.data holds the stream bytes and nothing else, so the byte
// at offset o is at position o-start and can be sent with sendfile; <start>.idx holds a header
// and then one entry (length, CRC32C) per record, the unit the writer appends and recovery
// checks. A sealed segment ends its index with a trailer giving the data size.

const (
	idxMagic      = "PSBLIDX\n"
	formatVersion = 1
	headerSize    = 80
	entrySize     = 8
	trailerSize   = 16
	// sealMark is an entry length that no record has (records are at most maxRecord bytes):
	// it starts the trailer of a sealed segment.
	sealMark = 0xFFFFFFFF
	// maxRecord bounds a record, so that recovery can tell a garbage length at once. Appends
	// longer than this are stored as several records.
	maxRecord = 1 << 20
	// replidLen is the room for the replid in the header: Redis IDs are 40 hex characters.
	replidLen = 40

	dataExt = ".data"
	idxExt  = ".idx"
)

// castagnoli is the CRC32C table. It is read-only after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the start of every index file.
type header struct {
	start  int64  // offset of the segment's first byte
	epoch  uint64 // State.Epoch of the history the segment belongs to
	replid string // the replid the history started with (diagnostics only)
}

// marshal returns the header's headerSize bytes:
//
//	0  magic "PSBLIDX\n"   8  version u32   12 flags u32 (0)
//	16 start i64           24 epoch u64     32 replid [40]byte, zero padded
//	72 CRC32C of bytes 0..72, u32           76 zero u32
func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, idxMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.start))
	binary.LittleEndian.PutUint64(b[24:], h.epoch)
	copy(b[32:32+replidLen], h.replid)
	binary.LittleEndian.PutUint32(b[72:], crc32.Checksum(b[:72], castagnoli))
	return b
}

func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, errors.New("short header")
	}
	if string(b[:8]) != idxMagic {
		return header{}, errors.New("bad magic")
	}
	if crc32.Checksum(b[:72], castagnoli) != binary.LittleEndian.Uint32(b[72:]) {
		return header{}, errors.New("header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return header{}, fmt.Errorf("unknown format version %d", v)
	}
	return header{
		start:  int64(binary.LittleEndian.Uint64(b[16:])),
		epoch:  binary.LittleEndian.Uint64(b[24:]),
		replid: strings.TrimRight(string(b[32:32+replidLen]), "\x00"),
	}, nil
}

// appendEntry appends the index entry of record p: its length and CRC32C.
func appendEntry(b, p []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(p, castagnoli))
}

// trailer returns the seal of a segment holding size data bytes: sealMark, the CRC32C of
// the size's 8 bytes, and the size.
func trailer(size int64) []byte {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], uint64(size))
	b := binary.LittleEndian.AppendUint32(nil, sealMark)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(s[:], castagnoli))
	return append(b, s[:]...)
}

// parseTrailer returns the size a trailer seals, or false if b is not a valid trailer.
func parseTrailer(b []byte) (int64, bool) {
	if len(b) != trailerSize || binary.LittleEndian.Uint32(b) != sealMark ||
		binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:], castagnoli) {
		return 0, false
	}
	size := int64(binary.LittleEndian.Uint64(b[8:]))
	return size, size >= 0
}

// segName returns the base name of the segment starting at start. Zero padding to 20 digits
// makes lexical order numeric order, which keeps directory listings readable.
func segName(start int64) string { return fmt.Sprintf("%020d", start) }

// segment is one pair of files. start never changes. Readers find segments in disk.segs and
// read the data file through a descriptor shared by all of them, opened on the first acquire
// and closed when the last reader releases it, so idle segments hold no descriptor however
// many there are.
type segment struct {
	start int64
	path  string // the files' path without extension

	// last is the offset of the last byte in the data file that readers may use; the writer
	// stores it after the bytes are written and before they are published.
	last atomic.Int64
	// sealedAt is when the newest byte was stored: set when the segment is sealed (or from the
	// file's mtime at recovery), zero while it is written. Only wmu holders use it.
	sealedAt time.Time
	// began is when the segment's first byte was stored, as far as known: set when the writer
	// creates it; at recovery, the sealing time of the segment before it (zero for the oldest
	// recovered one, whose start time no file records). Set before the segment is published
	// in disk.segs and never changed, so segMu readers may read it.
	began time.Time

	mu   sync.Mutex
	f    *os.File // read-only descriptor, nil while refs == 0
	refs int
	gone bool // deleted or closed: no new reader may open it
}

func newSegment(dir string, start int64) *segment {
	return &segment{start: start, path: filepath.Join(dir, segName(start))}
}

// acquire returns the shared read descriptor, opening it if needed, and counts a reference.
// errGone means the segment was deleted (its bytes are trimmed) or the disk was closed.
func (s *segment) acquire() (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return nil, errGone
	}
	if s.f == nil {
		f, err := os.Open(s.path + dataExt)
		if err != nil {
			return nil, fmt.Errorf("backlog: open segment for reading: %w", err)
		}
		s.f = f
	}
	s.refs++
	return s.f, nil
}

// release drops a reference taken by acquire and closes the descriptor with the last one. A
// segment deleted while read stays readable until then: the descriptor keeps the unlinked file.
func (s *segment) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs--
	if s.refs == 0 && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// retire forbids new readers; readers holding a reference finish with the bytes they have.
func (s *segment) retire() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

// remove retires the segment and deletes its files, the index first: a data file alone is
// discarded at recovery, so a crash between the two unlinks cannot bring the segment back.
func (s *segment) remove() error {
	s.retire()
	err := os.Remove(s.path + idxExt)
	if e := os.Remove(s.path + dataExt); err == nil {
		err = e
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backlog: delete segment %s: %w", filepath.Base(s.path), err)
	}
	return nil
}

// errGone is returned by acquire on a deleted or closed segment.
var errGone = errors.New("backlog: segment deleted")

// segWriter is the active segment's write side. The sizes are what is stored and valid
// (published, or about to be once the append succeeds); bytes past them are partial writes
// that a repair cuts. Only wmu holders use the sizes; closed is guarded by disk.syncMu,
// which also covers every Sync and Close of the two files.
type segWriter struct {
	data, idx         *os.File
	dataSize, idxSize int64
	closed            bool
}

// listSegments returns the starts of every file pair or lone file in dir that has a segment
// name, in order, with which of the two files exist.
func listSegments(dir string) ([]int64, map[int64][2]bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("backlog: list %s: %w", dir, err)
	}
	files := make(map[int64][2]bool)
	for _, e := range ents {
		name := e.Name()
		ext := filepath.Ext(name)
		if ext != dataExt && ext != idxExt {
			continue
		}
		base := strings.TrimSuffix(name, ext)
		start, err := strconv.ParseInt(base, 10, 64)
		if err != nil || len(base) != 20 || start < 0 {
			continue
		}
		has := files[start]
		if ext == dataExt {
			has[0] = true
		} else {
			has[1] = true
		}
		files[start] = has
	}
	starts := make([]int64, 0, len(files))
	for s := range files {
		starts = append(starts, s)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	return starts, files, nil
}

// scan is what checking a segment found.
type scan struct {
	hdr      header
	dataSize int64 // size of the data file
	idxSize  int64 // size of the index file
	good     int64 // data bytes covered by whole, valid records
	idxGood  int64 // index bytes up to the last valid entry (header included)
	sealed   bool  // a valid trailer follows the last entry and seals exactly good bytes
	modTime  time.Time
}

// readHeader opens a segment's index and checks its header.
func readHeader(path string) (header, *os.File, error) {
	f, err := os.Open(path + idxExt)
	if err != nil {
		return header{}, nil, err
	}
	b := make([]byte, headerSize)
	if _, err := io.ReadFull(f, b); err != nil {
		f.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: torn header", errBadSegment)
		}
		return header{}, nil, err
	}
	h, err := parseHeader(b)
	if err != nil {
		f.Close()
		return header{}, nil, fmt.Errorf("%w: %w", errBadSegment, err)
	}
	return h, f, nil
}

// errBadSegment marks a segment whose files are not in the format: recovery discards it.
// Any other error while reading is an I/O error, which stops recovery instead, so that a
// sick disk never causes good segments to be deleted.
var errBadSegment = errors.New("backlog: malformed segment")

// checkSealed reads only a segment's trailer: it is how recovery trusts a sealed segment
// without reading it all. It reports false when the trailer is missing or disagrees with
// the data file's size.
func checkSealed(path string) (scan, bool, error) {
	h, idx, err := readHeader(path)
	if err != nil {
		return scan{}, false, err
	}
	defer idx.Close()
	sc := scan{hdr: h}
	fi, err := idx.Stat()
	if err != nil {
		return sc, false, err
	}
	sc.idxSize = fi.Size()
	di, err := os.Stat(path + dataExt)
	if err != nil {
		return sc, false, err
	}
	sc.dataSize, sc.modTime = di.Size(), di.ModTime()
	if sc.idxSize < headerSize+trailerSize || (sc.idxSize-headerSize)%entrySize != 0 {
		return sc, false, nil
	}
	b := make([]byte, trailerSize)
	if _, err := idx.ReadAt(b, sc.idxSize-trailerSize); err != nil {
		return sc, false, err
	}
	size, ok := parseTrailer(b)
	if !ok || size != sc.dataSize {
		return sc, false, nil
	}
	sc.good, sc.idxGood, sc.sealed = size, sc.idxSize-trailerSize, true
	return sc, true, nil
}

// scanSegment reads a segment's index and data from the start and checks every record's
// CRC32C: good is where the last whole valid record ends. Records are streamed through
// fixed buffers, so memory does not grow with the segment.
func scanSegment(path string) (scan, error) {
	h, idx, err := readHeader(path)
	if err != nil {
		return scan{}, err
	}
	defer idx.Close()
	sc := scan{hdr: h, idxGood: headerSize}
	fi, err := idx.Stat()
	if err != nil {
		return sc, err
	}
	sc.idxSize = fi.Size()
	data, err := os.Open(path + dataExt)
	if err != nil {
		return sc, err
	}
	defer data.Close()
	di, err := data.Stat()
	if err != nil {
		return sc, err
	}
	sc.dataSize, sc.modTime = di.Size(), di.ModTime()

	ir := bufio.NewReaderSize(idx, 64<<10)
	dr := bufio.NewReaderSize(data, 256<<10)
	var ent [entrySize]byte
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(ir, ent[:]); err != nil {
			return sc, nil // end of the index, or a torn entry
		}
		n := binary.LittleEndian.Uint32(ent[:])
		if n == sealMark {
			var size [8]byte
			if _, err := io.ReadFull(ir, size[:]); err == nil {
				if s, ok := parseTrailer(append(ent[:], size[:]...)); ok && s == sc.good {
					sc.sealed = true
				}
			}
			return sc, nil
		}
		if n == 0 || n > maxRecord || sc.good+int64(n) > sc.dataSize {
			return sc, nil // garbage, or the data never reached the disk
		}
		crc := uint32(0)
		for left := int(n); left > 0; {
			k, err := io.ReadFull(dr, buf[:min(left, len(buf))])
			if err != nil {
				return sc, fmt.Errorf("read data: %w", err)
			}
			crc = crc32.Update(crc, castagnoli, buf[:k])
			left -= k
		}
		if crc != binary.LittleEndian.Uint32(ent[4:]) {
			return sc, nil
		}
		sc.good += int64(n)
		sc.idxGood += entrySize
	}
}

// syncDir makes the creation, renaming or removal of entries in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}
