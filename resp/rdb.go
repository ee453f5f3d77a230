package resp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ErrBadRDB is returned, wrapped with the detail and the byte offset, for an
// RDB snapshot whose framing is wrong: bad magic or version, a malformed or
// truncated aux field, no EOF opcode where it belongs, or a CRC64 trailer
// that does not match. Test it with errors.Is.
var ErrBadRDB = errors.New("resp: bad RDB")

// RDB versions. Sources: src/rdb.h RDB_VERSION in redis/redis (7.0: 10,
// 7.2: 11, 7.4 to 8.4: 12, 8.6: 13, 8.8: 14) and valkey-io/valkey (7.2 and
// 8.x: 11 with magic "REDIS"; 9.0: 80 and 9.2: 81 with magic "VALKEY").
// Valkey's rdb.h reserves 12 to 79 for Redis's formats
// (RDB_FOREIGN_VERSION_MIN/MAX), and its loader refuses "VALKEY" with a
// version up to 79 and "REDIS" with one above 79 (rdbIsVersionAccepted).
//
// The rule here checks each magic against its own family's definition:
// "REDIS" and 4 digits from 5 up (Redis's loader takes any version up to
// its own, and Redis never agreed to stop at 79: that bound is Valkey's
// reservation), "VALKEY" and 3 digits from 80 up (the magic exists only
// from 80; Valkey refuses it below). Versions below 5 (Redis 2.4 and older)
// have no CRC64 trailer and are refused. A version above the newest one
// known for its magic is accepted with RDBInfo.NewerVersion set: the checker
// reads only the framing, which every version so far shares, and never the
// body, whose type numbers Redis 8 and Valkey 9 already give different
// meanings. Whether a replica can load it is the replica's business.
const (
	rdbMinVersion       = 5  // first version with the CRC64 trailer
	rdbNewestRedis      = 14 // Redis 8.8
	rdbMinValkeyVersion = 80 // Valkey 9.0, first with magic "VALKEY"
	rdbNewestValkey     = 81 // Valkey 9.2
)

const (
	rdbHeaderLen = 9                    // "REDIS0012" or "VALKEY080"
	rdbMinSize   = rdbHeaderLen + 1 + 8 // header, EOF opcode, CRC64
	rdbMaxAux    = 64 << 10             // bytes buffered, and decoded, for the leading aux fields

	rdbMaxAuxFields = 256 // distinct leading aux fields kept (Redis 7 writes 8)

	rdbOpAux = 0xfa // RDB_OPCODE_AUX
	rdbOpEOF = 0xff // RDB_OPCODE_EOF
)

// RDBInfo describes an RDB snapshot checked by RDBChecker.
type RDBInfo struct {
	Version int   // format version from the header
	Valkey  bool  // the magic is "VALKEY" (Valkey 9+) rather than "REDIS"
	Size    int64 // bytes checked, trailer included

	// NewerVersion reports a version above the newest the checker knows for
	// its magic (14 for "REDIS", 81 for "VALKEY"). Such a snapshot passed
	// the same framing checks; callers should log a warning naming Header.
	NewerVersion bool

	// Checksum is the 8-byte trailer read as a little-endian uint64. It is 0
	// when the producer ran with rdbchecksum no; then nothing was checked and
	// ChecksumOK is false. ChecksumOK reports that the trailer is non-zero and
	// equals the CRC64 of every byte before it.
	Checksum   uint64
	ChecksumOK bool

	// HasRepl reports that the aux fields repl-id and repl-offset were both
	// present (Redis writes them in RDBs made for replication, and in SAVE
	// and BGSAVE files of a node that has a replication backlog or a master).
	HasRepl    bool
	ReplID     string // aux repl-id: 40 hex characters
	ReplOffset int64  // aux repl-offset: the replication offset the data corresponds to

	ReplStreamDB  int    // aux repl-stream-db; -1 when absent
	ServerVersion string // aux redis-ver, or valkey-ver for Valkey 8+; "" when absent

	// Aux holds every aux field before the first other opcode, integers in
	// decimal, LZF-compressed values decompressed; a later duplicate wins.
	// AuxSkipped reports that some were not read because the fields took more
	// than 64 KiB.
	Aux        map[string]string
	AuxSkipped bool
}

// RDBChecker checks the framing of an RDB snapshot fed to it through Write,
// in chunks of any size, as it arrives: the header and version, the leading
// aux fields (opcode 0xfa, the same in every version of both families), the
// EOF opcode and the CRC64 trailer. The body between the aux fields and the
// EOF opcode is opaque: no type or opcode in it is ever read. The EOF opcode
// is found from the end, as the byte before the 8-byte trailer, since the
// payload's length (or end mark) comes from the replication link. The
// checker keeps at most 64 KiB, only while it reads the aux fields, whatever
// the snapshot's size. Use it beside the file being written:
//
//	var chk resp.RDBChecker
//	_, err := io.Copy(io.MultiWriter(file, &chk), io.LimitReader(conn, size))
//	...
//	info, err := chk.Finish()
//
// The zero value is ready to use. An RDBChecker is not safe for concurrent
// use.
type RDBChecker struct {
	n    int64   // bytes written
	crc  uint64  // CRC64 of the bytes written except the last tn
	last byte    // the last byte included in crc
	tail [8]byte // the last tn bytes written (the trailer, at the end)
	tn   int

	hdr     []byte // bytes from offset 0 while the aux fields are read; nil after
	pos     int    // start of the next unread field in hdr
	decoded int    // aux bytes decoded so far
	done    bool   // past the aux fields
	offSeen bool   // repl-offset was present
	info    RDBInfo
	err     error // sticky
}

// Write feeds the next bytes of the snapshot and returns len(p). As soon as
// the header or an aux field is malformed it returns an error wrapping
// ErrBadRDB, so that a copy stops early; later calls return 0 and the same
// error. Errors that need the end of the data (truncation, checksum) are
// reported by Finish.
func (c *RDBChecker) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if !c.done {
		c.readHeader(p)
	}
	c.sum(p)
	c.n += int64(len(p))
	return len(p), c.err
}

// sum adds to the CRC all bytes but the last 8 written so far.
func (c *RDBChecker) sum(p []byte) {
	total := c.tn + len(p)
	if total <= len(c.tail) {
		c.tn += copy(c.tail[c.tn:], p)
		return
	}
	out := total - len(c.tail) // bytes leaving the tail
	if out <= c.tn {
		c.crc = crc64Update(c.crc, c.tail[:out])
		c.last = c.tail[out-1]
		c.tn = copy(c.tail[:], c.tail[out:c.tn])
		c.tn += copy(c.tail[c.tn:], p)
		return
	}
	c.crc = crc64Update(c.crc, c.tail[:c.tn])
	c.crc = crc64Update(c.crc, p[:out-c.tn])
	c.last = p[out-c.tn-1]
	c.tn = copy(c.tail[:], p[len(p)-len(c.tail):])
}

// Finish checks what needs the whole snapshot and returns what was learnt.
// Truncation and a wrong EOF opcode or checksum wrap ErrBadRDB. Finish does
// not change the checker: more Writes and another Finish are allowed. On
// error the RDBInfo holds what was read so far, its Size the bytes accepted
// up to the Write that failed.
func (c *RDBChecker) Finish() (RDBInfo, error) {
	info := c.info
	info.Size = c.n
	info.Aux = maps.Clone(c.info.Aux)
	if c.err != nil {
		return info, c.err
	}
	if c.n < rdbMinSize {
		return info, fmt.Errorf("%w: truncated: %d bytes, an RDB has at least %d", ErrBadRDB, c.n, rdbMinSize)
	}
	if !c.done {
		return info, fmt.Errorf("%w: truncated: the data ends inside the aux field at offset %d", ErrBadRDB, c.pos)
	}
	if c.last != rdbOpEOF {
		return info, fmt.Errorf("%w: truncated or trailing bytes: byte %#02x at offset %d, 8 bytes before the end, is not the EOF opcode 0xff",
			ErrBadRDB, c.last, c.n-9)
	}
	info.Checksum = binary.LittleEndian.Uint64(c.tail[:])
	if info.Checksum == 0 {
		return info, nil // saved with rdbchecksum no
	}
	if info.Checksum != c.crc {
		return info, fmt.Errorf("%w: checksum mismatch: the trailer at offset %d holds %#016x, the data gives %#016x",
			ErrBadRDB, c.n-8, info.Checksum, c.crc)
	}
	info.ChecksumOK = true
	return info, nil
}

// CheckRDBFile streams the file at path through an RDBChecker. Problems in
// the data wrap ErrBadRDB; I/O errors do not.
func CheckRDBFile(path string) (RDBInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return RDBInfo{}, err
	}
	defer f.Close()
	var c RDBChecker
	// Hide (*os.File).WriteTo so that the copy uses the larger buffer.
	if _, err := io.CopyBuffer(&c, struct{ io.Reader }{f}, make([]byte, 256<<10)); err != nil && !errors.Is(err, ErrBadRDB) {
		return RDBInfo{}, fmt.Errorf("resp: check RDB %s: %w", path, err)
	}
	info, err := c.Finish()
	if err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// readHeader buffers p (up to rdbMaxAux bytes in all) and reads the header
// and whole aux fields from the buffer.
func (c *RDBChecker) readHeader(p []byte) {
	if c.hdr == nil {
		c.hdr = make([]byte, 0, min(rdbMaxAux, max(len(p), 512)))
		c.info.ReplStreamDB = -1
	}
	c.hdr = append(c.hdr, p[:min(len(p), rdbMaxAux-len(c.hdr))]...)
	if c.pos == 0 {
		if c.err = checkMagic(c.hdr, &c.info); c.err != nil || len(c.hdr) < rdbHeaderLen {
			return
		}
		c.pos = rdbHeaderLen
	}
	for c.pos < len(c.hdr) {
		if c.hdr[c.pos] != rdbOpAux {
			c.endAux()
			return
		}
		key, next, err := c.auxString(c.pos+1, rdbMaxAux-c.decoded)
		if err == nil {
			var val string
			val, next, err = c.auxString(next, rdbMaxAux-c.decoded-len(key))
			if _, dup := c.info.Aux[key]; err == nil && !dup && len(c.info.Aux) == rdbMaxAuxFields {
				err = errOverLimit
			}
			if err == nil {
				c.decoded += len(key) + len(val)
				err = c.setAux(key, val)
			}
		}
		switch {
		case err == errShort && len(c.hdr) < rdbMaxAux:
			return // wait for more bytes
		case err == errShort || err == errOverLimit:
			c.info.AuxSkipped = true
			c.endAux()
			return
		case err != nil:
			c.err = fmt.Errorf("%w: aux field at offset %d: %v", ErrBadRDB, c.pos, err)
			return
		}
		c.pos = next
	}
}

// endAux ends the reading of aux fields and frees the buffer.
func (c *RDBChecker) endAux() {
	c.done = true
	c.hdr = nil
	c.info.HasRepl = c.info.ReplID != "" && c.offSeen
}

// checkMagic checks as much of the 9-byte header as b holds, and fills
// info's Version and Valkey once it is complete.
func checkMagic(b []byte, info *RDBInfo) error {
	magic, digits := "REDIS", 4
	if len(b) > 0 && b[0] == 'V' {
		magic, digits = "VALKEY", 3
	}
	for i := range min(len(b), len(magic)) {
		if b[i] != magic[i] {
			return fmt.Errorf("%w: the data at offset 0 starts with %q, not the magic \"REDIS\" or \"VALKEY\"", ErrBadRDB, b[:i+1])
		}
	}
	if len(b) < rdbHeaderLen {
		return nil
	}
	v := 0
	for _, d := range b[len(magic):rdbHeaderLen] {
		if d < '0' || d > '9' {
			return fmt.Errorf("%w: the version at offset %d is %q, not %d digits", ErrBadRDB, len(magic), b[len(magic):rdbHeaderLen], digits)
		}
		v = v*10 + int(d-'0')
	}
	lo, newest := rdbMinVersion, rdbNewestRedis
	if magic == "VALKEY" {
		lo, newest = rdbMinValkeyVersion, rdbNewestValkey
	}
	if v < lo {
		return fmt.Errorf("%w: unsupported RDB version %d at offset %d: with magic %q the versions accepted start at %d",
			ErrBadRDB, v, len(magic), magic, lo)
	}
	info.Version, info.Valkey, info.NewerVersion = v, magic == "VALKEY", v > newest
	return nil
}

// Header returns the 9-byte header the snapshot started with, such as
// "REDIS0014" or "VALKEY080" ("" before the header was read).
func (i RDBInfo) Header() string {
	switch {
	case i.Version == 0:
		return ""
	case i.Valkey:
		return fmt.Sprintf("VALKEY%03d", i.Version)
	}
	return fmt.Sprintf("REDIS%04d", i.Version)
}

// Non-fatal outcomes of auxString: the field does not end within the bytes
// buffered so far, or can never be read within rdbMaxAux.
var (
	errShort     = errors.New("short")
	errOverLimit = errors.New("over limit")
)

// setAux records one aux field; the replication fields must be well formed.
func (c *RDBChecker) setAux(key, val string) error {
	if c.info.Aux == nil {
		c.info.Aux = make(map[string]string)
	}
	c.info.Aux[key] = val
	switch strings.ToLower(key) { // Redis compares aux keys with strcasecmp
	case "repl-id":
		if len(val) != 40 {
			return fmt.Errorf("repl-id %q is not 40 characters long", val)
		}
		c.info.ReplID = val
	case "repl-offset":
		off, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("repl-offset %q is not an integer", val)
		}
		c.info.ReplOffset, c.offSeen = off, true
	case "repl-stream-db":
		db, err := strconv.Atoi(val)
		if err != nil || db < 0 {
			return fmt.Errorf("repl-stream-db %q is not a database number", val)
		}
		c.info.ReplStreamDB = db
	case "redis-ver", "valkey-ver":
		c.info.ServerVersion = val
	}
	return nil
}

// auxString decodes the RDB string at c.hdr[p:] (rdbGenericLoadStringObject
// in Redis's rdb.c) and returns it with the offset after it. A string longer
// than budget bytes is errOverLimit.
func (c *RDBChecker) auxString(p, budget int) (string, int, error) {
	b := c.hdr
	n, enc, p, err := rdbLen(b, p)
	if err != nil {
		return "", 0, err
	}
	if !enc {
		if n > uint64(budget) || p+int(n) > rdbMaxAux {
			return "", 0, errOverLimit
		}
		if p+int(n) > len(b) {
			return "", 0, errShort
		}
		return string(b[p : p+int(n)]), p + int(n), nil
	}
	switch n {
	case 0, 1, 2: // RDB_ENC_INT8, INT16, INT32: little-endian two's complement
		size := 1 << n
		if p+size > len(b) {
			return "", 0, errShort
		}
		var v int64
		switch size {
		case 1:
			v = int64(int8(b[p]))
		case 2:
			v = int64(int16(binary.LittleEndian.Uint16(b[p:])))
		default:
			v = int64(int32(binary.LittleEndian.Uint32(b[p:])))
		}
		s := strconv.FormatInt(v, 10)
		if len(s) > budget {
			return "", 0, errOverLimit
		}
		return s, p + size, nil
	case 3: // RDB_ENC_LZF: compressed length, plain length, compressed bytes
		clen, cenc, q, err := rdbLen(b, p)
		if err != nil {
			return "", 0, err
		}
		ulen, uenc, q, err := rdbLen(b, q)
		if err != nil {
			return "", 0, err
		}
		if cenc || uenc {
			return "", 0, errors.New("LZF string with an encoded length")
		}
		if clen > uint64(rdbMaxAux) || q+int(clen) > rdbMaxAux || ulen > uint64(budget) {
			return "", 0, errOverLimit
		}
		if q+int(clen) > len(b) {
			return "", 0, errShort
		}
		out, ok := lzfDecompress(b[q:q+int(clen)], int(ulen))
		if !ok {
			return "", 0, fmt.Errorf("invalid LZF data (%d bytes, %d when decompressed)", clen, ulen)
		}
		return string(out), q + int(clen), nil
	}
	return "", 0, fmt.Errorf("unknown string encoding %d", n)
}

// rdbLen decodes the RDB length at b[p:] (rdbLoadLenByRef in Redis's rdb.c).
// enc reports a special encoding (first two bits 11), its kind in n. It
// returns errShort when b ends first.
func rdbLen(b []byte, p int) (n uint64, enc bool, next int, err error) {
	if p >= len(b) {
		return 0, false, 0, errShort
	}
	first := b[p]
	switch {
	case first>>6 == 0: // 00xxxxxx: 6 bits
		return uint64(first & 0x3f), false, p + 1, nil
	case first>>6 == 1: // 01xxxxxx xxxxxxxx: 14 bits, big-endian
		if p+2 > len(b) {
			return 0, false, 0, errShort
		}
		return uint64(first&0x3f)<<8 | uint64(b[p+1]), false, p + 2, nil
	case first>>6 == 3: // 11xxxxxx: encoded object
		return uint64(first & 0x3f), true, p + 1, nil
	case first == 0x80: // 32 bits, big-endian
		if p+5 > len(b) {
			return 0, false, 0, errShort
		}
		return uint64(binary.BigEndian.Uint32(b[p+1:])), false, p + 5, nil
	case first == 0x81: // 64 bits, big-endian
		if p+9 > len(b) {
			return 0, false, 0, errShort
		}
		return binary.BigEndian.Uint64(b[p+1:]), false, p + 9, nil
	}
	return 0, false, 0, fmt.Errorf("unknown length encoding %#02x", first)
}

// lzfDecompress decodes LZF data (the format of Redis's lzf_d.c) that must
// expand to exactly n bytes. A control byte below 32 starts a run of
// control+1 literal bytes; otherwise its top 3 bits are a length (7 means
// "add the next byte") and its low 5 bits with the following byte an offset
// back into the output, from which length+2 bytes are copied.
func lzfDecompress(in []byte, n int) ([]byte, bool) {
	out := make([]byte, 0, n)
	for i := 0; i < len(in); {
		ctrl := int(in[i])
		i++
		if ctrl < 32 {
			run := ctrl + 1
			if i+run > len(in) || len(out)+run > n {
				return nil, false
			}
			out = append(out, in[i:i+run]...)
			i += run
			continue
		}
		length := ctrl >> 5
		if length == 7 {
			if i >= len(in) {
				return nil, false
			}
			length += int(in[i])
			i++
		}
		if i >= len(in) {
			return nil, false
		}
		ref := len(out) - (ctrl&0x1f)<<8 - int(in[i]) - 1
		i++
		length += 2
		if ref < 0 || len(out)+length > n {
			return nil, false
		}
		for j := range length { // byte by byte: the copy may overlap its source
			out = append(out, out[ref+j])
		}
	}
	return out, len(out) == n
}

// rdbCRCPoly is the Jones polynomial 0xad93d23594c935a9 of Redis's crc64.c,
// bit-reflected. Redis's CRC64 is reflected, starts at 0 and has no final
// xor, so crc64Update(0, "123456789") is 0xe9c6d914c4b8d9ca.
const rdbCRCPoly = 0x95ac9329ac4bc9b5

// crcTables returns the slicing-by-16 tables, built on first use and never
// changed: crcTables()[k][v] is the CRC of byte v followed by k zero bytes.
var crcTables = sync.OnceValue(func() *[16][256]uint64 {
	t := new([16][256]uint64)
	for v := range 256 {
		crc := uint64(v)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ rdbCRCPoly
			} else {
				crc >>= 1
			}
		}
		t[0][v] = crc
	}
	for v := range 256 {
		crc := t[0][v]
		for k := 1; k < len(t); k++ {
			crc = t[0][byte(crc)] ^ crc>>8
			t[k][v] = crc
		}
	}
	return t
})

// crc64Update returns Redis's CRC64 of the bytes already summed to crc
// followed by p. It reads 16 bytes per step (slicing-by-16).
func crc64Update(crc uint64, p []byte) uint64 {
	t := crcTables()
	for len(p) >= 16 {
		a := crc ^ binary.LittleEndian.Uint64(p)
		b := binary.LittleEndian.Uint64(p[8:])
		crc = t[15][byte(a)] ^ t[14][byte(a>>8)] ^ t[13][byte(a>>16)] ^ t[12][byte(a>>24)] ^
			t[11][byte(a>>32)] ^ t[10][byte(a>>40)] ^ t[9][byte(a>>48)] ^ t[8][byte(a>>56)] ^
			t[7][byte(b)] ^ t[6][byte(b>>8)] ^ t[5][byte(b>>16)] ^ t[4][byte(b>>24)] ^
			t[3][byte(b>>32)] ^ t[2][byte(b>>40)] ^ t[1][byte(b>>48)] ^ t[0][byte(b>>56)]
		p = p[16:]
	}
	for _, v := range p {
		crc = t[0][byte(crc)^v] ^ crc>>8
	}
	return crc
}
