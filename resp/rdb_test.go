package resp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// jonesTable is Redis's CRC64 polynomial for hash/crc64, an independent
// implementation to check crc64Update against. hash/crc64 inverts the CRC on
// entry and exit, which Redis does not: redisCRC undoes that.
var jonesTable = crc64.MakeTable(rdbCRCPoly)

func redisCRC(crc uint64, p []byte) uint64 { return ^crc64.Update(^crc, jonesTable, p) }

func TestCRC64(t *testing.T) {
	const want uint64 = 0xe9c6d914c4b8d9ca // Redis's crc64.c test vector
	if got := crc64Update(0, []byte("123456789")); got != want {
		t.Fatalf("crc64(\"123456789\") = %#016x, want %#016x", got, want)
	}
	if got := redisCRC(0, []byte("123456789")); got != want {
		t.Fatalf("hash/crc64 with the Jones polynomial gives %#016x, want %#016x", got, want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for n := range 300 {
		if got, want := crc64Update(0, data[:n]), redisCRC(0, data[:n]); got != want {
			t.Fatalf("crc64 of %d bytes = %#016x, want %#016x", n, got, want)
		}
	}
	for range 200 { // unaligned starts, split into two updates
		lo := rng.IntN(len(data))
		hi := lo + rng.IntN(len(data)-lo+1)
		mid := lo + rng.IntN(hi-lo+1)
		got := crc64Update(crc64Update(0, data[lo:mid]), data[mid:hi])
		if want := redisCRC(0, data[lo:hi]); got != want {
			t.Fatalf("crc64 of data[%d:%d] split at %d = %#016x, want %#016x", lo, hi, mid, got, want)
		}
	}
}

// Encoders for synthetic RDB files.

func encLen(n uint64) []byte {
	switch {
	case n < 1<<6:
		return []byte{byte(n)}
	case n < 1<<14:
		return []byte{0x40 | byte(n>>8), byte(n)}
	case n <= 1<<32-1:
		return binary.BigEndian.AppendUint32([]byte{0x80}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{0x81}, n)
}

func encStr(s string) []byte { return append(encLen(uint64(len(s))), s...) }

func encInt8(v int8) []byte   { return []byte{0xc0, byte(v)} }
func encInt16(v int16) []byte { return binary.LittleEndian.AppendUint16([]byte{0xc1}, uint16(v)) }
func encInt32(v int32) []byte { return binary.LittleEndian.AppendUint32([]byte{0xc2}, uint32(v)) }

func encLZF(compressed []byte, n uint64) []byte {
	b := append([]byte{0xc3}, encLen(uint64(len(compressed)))...)
	b = append(b, encLen(n)...)
	return append(b, compressed...)
}

// lzfABC is "abcabcabcabcabc" in LZF: a run of 3 literals, then a back
// reference (length 7+3+2, offset 2+1).
var lzfABC = []byte{0x02, 'a', 'b', 'c', 0xe0, 0x03, 0x02}

func auxField(key string, val []byte) []byte {
	return append(append([]byte{rdbOpAux}, encStr(key)...), val...)
}

// testBody is a database selector, a size hint and one string key.
var testBody = []byte{0xfe, 0x00, 0xfb, 0x01, 0x00, 0x00, 0x01, 'k', 0x01, 'v'}

// makeRDB joins header, aux fields and body, then the EOF opcode and the
// CRC64 trailer (0 when !checksum), computed with hash/crc64.
func makeRDB(header string, checksum bool, parts ...[]byte) []byte {
	b := []byte(header)
	for _, p := range parts {
		b = append(b, p...)
	}
	b = append(b, rdbOpEOF)
	var sum uint64
	if checksum {
		sum = redisCRC(0, b)
	}
	return binary.LittleEndian.AppendUint64(b, sum)
}

const testReplID = "dfece01f79836182b2823d7300dfe62cebef02da"

// checkChunks feeds data to a checker in chunks of 1 to max bytes (all at
// once when max is 0) and returns Finish's result. It fails the test if the
// checker ever buffers more than rdbMaxAux bytes or Write misbehaves.
func checkChunks(t testing.TB, data []byte, seed uint64, max int) (RDBInfo, error) {
	t.Helper()
	var c RDBChecker
	rng := rand.New(rand.NewPCG(seed, 3))
	var werr error
	for rest := data; len(rest) > 0; {
		n := len(rest)
		if max > 0 {
			n = min(n, 1+rng.IntN(max))
		}
		m, err := c.Write(rest[:n])
		if cap(c.hdr) > rdbMaxAux {
			t.Fatalf("checker buffers %d bytes", cap(c.hdr))
		}
		if err != nil {
			if !errors.Is(err, ErrBadRDB) {
				t.Fatalf("Write error %v does not wrap ErrBadRDB", err)
			}
			if werr == nil {
				werr = err
			} else if m != 0 || err != werr {
				t.Fatalf("Write after an error = %d, %v; want 0, %v", m, err, werr)
			}
		} else if werr != nil || m != n {
			t.Fatalf("Write = %d, %v after error %v; want %d", m, err, werr, n)
		}
		rest = rest[n:]
	}
	info, err := c.Finish()
	if werr != nil && err != werr {
		t.Fatalf("Finish = %v after Write returned %v", err, werr)
	}
	if werr != nil && info.Size > int64(len(data)) {
		t.Fatalf("Size %d after Write failed, of %d bytes", info.Size, len(data))
	}
	if info2, err2 := c.Finish(); !reflect.DeepEqual(info, info2) || fmt.Sprint(err) != fmt.Sprint(err2) {
		t.Fatalf("second Finish = %+v, %v; first %+v, %v", info2, err2, info, err)
	}
	if werr != nil {
		info.Size = 0 // it counts the bytes up to the failed Write, so depends on the chunks
	}
	return info, err
}

// checkAllWays checks data whole, byte by byte and in random chunks, and
// fails the test unless every way gives the same result, which it returns.
func checkAllWays(t testing.TB, data []byte) (RDBInfo, error) {
	t.Helper()
	info, err := checkChunks(t, data, 0, 0)
	if err != nil && !errors.Is(err, ErrBadRDB) {
		t.Fatalf("error %v does not wrap ErrBadRDB", err)
	}
	ways := []int{1, 7, 100, 5000}
	if len(data) > 1<<20 {
		ways = []int{4096, 300000}
	}
	for i, max := range ways {
		info2, err2 := checkChunks(t, data, uint64(i), max)
		if !reflect.DeepEqual(info, info2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("in chunks of up to %d bytes: %+v, %v\nall at once: %+v, %v", max, info2, err2, info, err)
		}
	}
	return info, err
}

func TestRDBCheckerValid(t *testing.T) {
	long := strings.Repeat("x", 100)
	big := strings.Repeat("y", 70000)
	type validCase struct {
		name string
		rdb  []byte
		want RDBInfo // Size, Checksum and ChecksumOK are filled in below
	}
	tests := []validCase{
		{"minimal version 5", makeRDB("REDIS0005", true),
			RDBInfo{Version: 5, ReplStreamDB: -1}},
		{"no aux, one key", makeRDB("REDIS0009", true, testBody),
			RDBInfo{Version: 9, ReplStreamDB: -1}},
		{"redis 7.0 replication save", makeRDB("REDIS0010", true,
			auxField("redis-ver", encStr("7.0.15")), auxField("redis-bits", encInt8(64)),
			auxField("ctime", encInt32(1795545206)), auxField("used-mem", encInt32(967592)),
			auxField("repl-stream-db", encInt8(3)), auxField("repl-id", encStr(testReplID)),
			auxField("repl-offset", encInt16(768)), auxField("aof-base", encInt8(0)), testBody),
			RDBInfo{Version: 10, HasRepl: true, ReplID: testReplID, ReplOffset: 768, ReplStreamDB: 3, ServerVersion: "7.0.15",
				Aux: map[string]string{"redis-ver": "7.0.15", "redis-bits": "64", "ctime": "1795545206", "used-mem": "967592",
					"repl-stream-db": "3", "repl-id": testReplID, "repl-offset": "768", "aof-base": "0"}}},
		{"valkey 9, long lengths, offset as text", makeRDB("VALKEY080", true,
			auxField("valkey-ver", encStr("9.0.0")), auxField("repl-id", encStr(testReplID)),
			auxField("repl-offset", encStr("123456789012")), auxField(long, encStr(long)),
			append(append([]byte{rdbOpAux, 0x80, 0, 0, 0, 2}, "k4"...), 0x81, 0, 0, 0, 0, 0, 0, 0, 2, 'v', '8'), testBody),
			RDBInfo{Version: 80, Valkey: true, HasRepl: true, ReplID: testReplID, ReplOffset: 123456789012, ReplStreamDB: -1,
				ServerVersion: "9.0.0", Aux: map[string]string{"valkey-ver": "9.0.0", "repl-id": testReplID,
					"repl-offset": "123456789012", long: long, "k4": "v8"}}},
		{"integer and LZF encodings, keys in capitals", makeRDB("REDIS0012", true,
			auxField("a", encInt8(-7)), auxField("b", encInt16(-300)), auxField("c", encInt32(-70000)),
			auxField("d", encLZF(lzfABC, 15)), auxField("REPL-ID", encStr(testReplID)),
			auxField("Repl-Offset", encInt32(1<<30)), testBody),
			RDBInfo{Version: 12, HasRepl: true, ReplID: testReplID, ReplOffset: 1 << 30, ReplStreamDB: -1,
				Aux: map[string]string{"a": "-7", "b": "-300", "c": "-70000", "d": "abcabcabcabcabc", "REPL-ID": testReplID,
					"Repl-Offset": strconv.Itoa(1 << 30)}}},
		{"repl-id without repl-offset", makeRDB("REDIS0011", true, auxField("repl-id", encStr(testReplID))),
			RDBInfo{Version: 11, ReplID: testReplID, ReplStreamDB: -1, Aux: map[string]string{"repl-id": testReplID}}},
		{"checksum off", makeRDB("REDIS0010", false, auxField("redis-ver", encStr("7.0.15")), testBody),
			RDBInfo{Version: 10, ReplStreamDB: -1, ServerVersion: "7.0.15", Aux: map[string]string{"redis-ver": "7.0.15"}}},
		{"aux value over 64 KiB is skipped", makeRDB("REDIS0011", true,
			auxField("redis-ver", encStr("7.2.4")), auxField("huge", encStr(big)), auxField("repl-id", encStr(testReplID)), testBody),
			RDBInfo{Version: 11, ReplStreamDB: -1, ServerVersion: "7.2.4", Aux: map[string]string{"redis-ver": "7.2.4"}, AuxSkipped: true}},
		{"declared length 2^62 is skipped", makeRDB("REDIS0011", true,
			append([]byte{rdbOpAux}, encLen(1<<62)...), testBody),
			RDBInfo{Version: 11, ReplStreamDB: -1, AuxSkipped: true}},
		{"LZF of 2^40 bytes is skipped", makeRDB("REDIS0011", true,
			auxField("z", encLZF(lzfABC, 1<<40)), testBody),
			RDBInfo{Version: 11, ReplStreamDB: -1, AuxSkipped: true}},
	}
	var many [][]byte
	for i := range rdbMaxAuxFields + 10 {
		many = append(many, auxField(fmt.Sprint("f", i), encInt8(1)))
	}
	manyWant := RDBInfo{Version: 10, ReplStreamDB: -1, Aux: map[string]string{}, AuxSkipped: true}
	for i := range rdbMaxAuxFields {
		manyWant.Aux[fmt.Sprint("f", i)] = "1"
	}
	tests = append(tests, validCase{"too many aux fields", makeRDB("REDIS0010", true, append(many, testBody)...), manyWant})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkAllWays(t, tt.rdb)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Size = int64(len(tt.rdb))
			want.Checksum = binary.LittleEndian.Uint64(tt.rdb[len(tt.rdb)-8:])
			want.ChecksumOK = want.Checksum != 0
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestRDBCheckerErrors(t *testing.T) {
	good := makeRDB("REDIS0010", true, auxField("redis-ver", encStr("7.0.15")), testBody)
	badSum := bytes.Clone(good)
	badSum[len(badSum)-3] ^= 0x10
	tests := []struct {
		name, want string
		rdb        []byte
	}{
		{"empty", "truncated: 0 bytes", nil},
		{"magic only", "truncated: 5 bytes", []byte("REDIS")},
		{"header only", "truncated: 9 bytes", []byte("REDIS0010")},
		{"wrong magic", `starts with "RA"`, makeRDB("RADIS0010", true)},
		{"error reply", `starts with "-"`, []byte("-ERR unknown command\r\n")},
		{"valkey magic cut", `starts with "VALKEX"`, makeRDB("VALKEX080", true)},
		{"version not digits", `version at offset 5 is "001x"`, makeRDB("REDIS001x", true)},
		{"version 4", "unsupported RDB version 4 ", makeRDB("REDIS0004", true)},
		{"version 14", "unsupported RDB version 14 ", makeRDB("REDIS0014", true)},
		{"version 80 as REDIS", "unsupported RDB version 80 ", makeRDB("REDIS0080", true)},
		{"valkey 11", "unsupported RDB version 11 ", makeRDB("VALKEY011", true)},
		{"valkey 82", "unsupported RDB version 82 ", makeRDB("VALKEY082", true)},
		{"length encoding 0x85", "aux field at offset 9: unknown length encoding 0x85",
			makeRDB("REDIS0010", true, []byte{rdbOpAux, 0x85})},
		{"string encoding 4", "aux field at offset 9: unknown string encoding 4",
			makeRDB("REDIS0010", true, auxField("k", []byte{0xc4}))},
		{"LZF reference before the start", "invalid LZF data",
			makeRDB("REDIS0010", true, auxField("k", encLZF([]byte{0xe0, 0x03, 0x02}, 12)))},
		{"LZF shorter than declared", "invalid LZF data",
			makeRDB("REDIS0010", true, auxField("k", encLZF(lzfABC, 16)))},
		{"LZF longer than declared", "invalid LZF data",
			makeRDB("REDIS0010", true, auxField("k", encLZF(lzfABC, 14)))},
		{"LZF literal run cut", "invalid LZF data",
			makeRDB("REDIS0010", true, auxField("k", encLZF([]byte{0x05, 'a'}, 6)))},
		{"LZF with encoded length", "encoded length",
			makeRDB("REDIS0010", true, auxField("k", []byte{0xc3, 0xc0, 0x01, 'a'}))},
		{"short repl-id", `repl-id "abc"`, makeRDB("REDIS0010", true, auxField("repl-id", encStr("abc")))},
		{"repl-offset not a number", `repl-offset "12a"`, makeRDB("REDIS0010", true, auxField("repl-offset", encStr("12a")))},
		{"negative repl-stream-db", `repl-stream-db "-1"`, makeRDB("REDIS0010", true, auxField("repl-stream-db", encInt8(-1)))},
		{"second aux field bad", "aux field at offset 27:",
			makeRDB("REDIS0010", true, auxField("redis-ver", encStr("7.0.15")), []byte{rdbOpAux, 0xbf})},
		{"ends inside aux", "ends inside the aux field at offset 9",
			append([]byte("REDIS0010"), auxField("redis-ver", append(encLen(40), "0123456789"...))...)},
		{"no EOF opcode", "byte 0x76 at offset",
			append([]byte("REDIS0010"), append(testBody, 0, 0, 0, 0, 0, 0, 0, 0)...)},
		{"trailing byte", "not the EOF opcode", append(bytes.Clone(good), 0)},
		{"cut by one byte", "not the EOF opcode", good[:len(good)-1]},
		{"checksum mismatch", fmt.Sprintf("checksum mismatch: the trailer at offset %d", len(good)-8), badSum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkAllWays(t, tt.rdb)
			if !errors.Is(err, ErrBadRDB) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want ErrBadRDB with %q", err, tt.want)
			}
		})
	}
}

// TestRDBCheckerWriteFailsFast checks that a bad header stops a copy at the
// first Write instead of at the end of a snapshot that may be gigabytes.
func TestRDBCheckerWriteFailsFast(t *testing.T) {
	var c RDBChecker
	src := io.MultiReader(strings.NewReader("-ERR not an RDB\r\n"), strings.NewReader(strings.Repeat("x", 1<<20)))
	n, err := io.Copy(&c, src)
	if !errors.Is(err, ErrBadRDB) || n > 1<<16 {
		t.Fatalf("io.Copy = %d, %v; want ErrBadRDB on the first chunk", n, err)
	}
}

// TestRDBFixtures checks RDB files saved by redis-server 7.0.15 (kept in
// testdata so that every byte of a real file is tested without a server):
// a replica's SAVE after a full sync (repl aux fields, an LZF-compressed
// value, integer-encoded values, two databases) and a SAVE with
// rdbchecksum no.
func TestRDBFixtures(t *testing.T) {
	replica := filepath.Join("testdata", "rdb", "redis-7.0.15-replica.rdb")
	info, err := CheckRDBFile(replica)
	if err != nil {
		t.Fatal(err)
	}
	want := RDBInfo{Version: 10, Size: 295, Checksum: info.Checksum, ChecksumOK: true,
		HasRepl: true, ReplID: testReplID, ReplOffset: 768, ReplStreamDB: 3, ServerVersion: "7.0.15",
		Aux: map[string]string{"redis-ver": "7.0.15", "redis-bits": "64", "ctime": "1795553398", "used-mem": "967592",
			"repl-stream-db": "3", "repl-id": testReplID, "repl-offset": "768", "aof-base": "0"}}
	if !reflect.DeepEqual(info, want) || info.Checksum == 0 {
		t.Fatalf("got  %+v\nwant %+v", info, want)
	}
	data, err := os.ReadFile(replica)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte{0x03, 'l', 'z', 'f', 0xc3}) {
		t.Fatal("the fixture has no LZF-compressed value any more")
	}
	flipAll(t, data)
	truncateAll(t, data)

	info, err = CheckRDBFile(filepath.Join("testdata", "rdb", "redis-7.0.15-nochecksum.rdb"))
	if err != nil || info.Checksum != 0 || info.ChecksumOK || info.HasRepl || info.Version != 10 {
		t.Fatalf("rdbchecksum no file: %+v, %v", info, err)
	}

	if _, err := CheckRDBFile(filepath.Join("testdata", "rdb", "missing.rdb")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestRDBNoChecksumLimits documents what cannot be seen in a file saved with
// rdbchecksum no: a changed byte after the aux fields.
func TestRDBNoChecksumLimits(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "rdb", "redis-7.0.15-nochecksum.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-11] ^= 0x01 // the value "v" of key "k"
	if info, err := checkAllWays(t, data); err != nil || info.ChecksumOK {
		t.Fatalf("flipped value in an unchecked file: %+v, %v; want no error", info, err)
	}
	data[len(data)-1] = 1 // a trailer that is not 0 is checked
	if _, err := checkAllWays(t, data); !errors.Is(err, ErrBadRDB) {
		t.Fatalf("non-zero trailer: %v", err)
	}
}

// flipAll checks that flipping any one bit, or all bits of any one byte, of
// a checksummed RDB is detected.
func flipAll(t *testing.T, data []byte) {
	t.Helper()
	for i := range data {
		for _, mask := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
			flipAt(t, data, i, mask)
		}
	}
}

func flipAt(t *testing.T, data []byte, i int, mask byte) {
	t.Helper()
	data[i] ^= mask
	defer func() { data[i] ^= mask }()
	_, err := checkChunks(t, data, uint64(i), 4096)
	if binary.LittleEndian.Uint64(data[len(data)-8:]) == 0 { // flipped into "checksum off"
		return
	}
	if !errors.Is(err, ErrBadRDB) {
		t.Fatalf("byte %d of %d xor %#02x: error %v, want ErrBadRDB", i, len(data), mask, err)
	}
}

// truncateAll checks that every proper prefix of a checksummed RDB is
// rejected. (A prefix ending in 0xff and eight zero bytes would pass as a
// file saved with rdbchecksum no; the test files hold none.)
func truncateAll(t *testing.T, data []byte) {
	t.Helper()
	for n := range len(data) {
		if _, err := checkChunks(t, data[:n], uint64(n), 4096); !errors.Is(err, ErrBadRDB) {
			t.Fatalf("first %d of %d bytes: error %v, want ErrBadRDB", n, len(data), err)
		}
	}
}

// fillRedis writes keys of every kind: small and large, compressible (the
// RDB holds them LZF-compressed) and random (stored raw).
func fillRedis(t *testing.T, s *redistest.Server) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	s.MustDo(t, "DEBUG", "POPULATE", "5000", "pop", "100")
	for i := range 3 {
		s.MustDo(t, "SET", fmt.Sprint("random:", i), string(random[i*1000:]))
	}
	s.MustDo(t, "SET", "repeated", strings.Repeat("psync-proxy ", 100000))
	s.MustDo(t, "SET", "int", "12345")
	s.MustDo(t, "SET", "big-int", "4000000000")
	s.MustDo(t, "RPUSH", "list", "a", "b", strings.Repeat("c", 5000))
	s.MustDo(t, "HSET", "hash", "f1", "v1", "f2", strings.Repeat("v", 300))
	s.MustDo(t, "SADD", "set", "1", "2", "3")
	s.MustDo(t, "ZADD", "zset", "1.5", "a", "2", "b")
	s.MustDo(t, "XADD", "stream", "*", "field", "value")
	s.MustDo(t, "SELECT", "5")
	s.MustDo(t, "SET", "in-db-5", "x")
}

// checkSaved runs SAVE on s and checks its dump.rdb, then returns the file.
func checkSaved(t *testing.T, s *redistest.Server) (RDBInfo, []byte) {
	t.Helper()
	s.MustDo(t, "SAVE")
	path := filepath.Join(s.Dir, "dump.rdb")
	info, err := CheckRDBFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if info2, err := checkAllWays(t, data); err != nil || !reflect.DeepEqual(info, info2) {
		t.Fatalf("CheckRDBFile = %+v\nchecker     = %+v, %v", info, info2, err)
	}
	if info.Version < 10 || info.Version > rdbMaxRedisVersion || info.ServerVersion != s.Info(t, "server")["redis_version"] || info.Size != int64(len(data)) {
		t.Fatalf("SAVE of %s: %+v", s.Addr(), info)
	}
	t.Logf("SAVE: %d bytes, version %d, checksum %#016x, repl %v %q %d, stream db %d",
		info.Size, info.Version, info.Checksum, info.HasRepl, info.ReplID, info.ReplOffset, info.ReplStreamDB)
	return info, data
}

// sampleFlipsAndCuts flips bytes and cuts the file at chosen and random
// places: header, aux fields, data, EOF opcode, trailer.
func sampleFlipsAndCuts(t *testing.T, data []byte) {
	t.Helper()
	n := len(data)
	rng := rand.New(rand.NewPCG(uint64(n), 9))
	at := []int{0, 4, 5, 8, 9, 10, 20, 100, n / 3, n / 2, n - 10, n - 9, n - 8, n - 5, n - 1}
	for range 20 {
		at = append(at, rng.IntN(n))
	}
	for _, i := range at {
		flipAt(t, data, i, byte(1+rng.IntN(255)))
	}
	for _, cut := range append(at, 1, n-9, n-8) {
		if _, err := checkChunks(t, data[:cut], uint64(cut), 1<<16); !errors.Is(err, ErrBadRDB) {
			t.Fatalf("first %d of %d bytes: error %v, want ErrBadRDB", cut, n, err)
		}
	}
}

// TestRDBCheckerRedis checks RDB files written by a real redis-server:
// SAVE on a master, on its replica, with rdbchecksum no, and the files
// redis-cli --rdb and a PSYNC receive.
func TestRDBCheckerRedis(t *testing.T) {
	master := redistest.Start(t)
	fillRedis(t, master)

	// A master that never had a replica has no backlog: no repl fields.
	info, data := checkSaved(t, master)
	if !info.ChecksumOK || info.HasRepl || info.ReplID != "" || info.ReplStreamDB != -1 || len(data) < 3<<20 {
		t.Fatalf("master SAVE before any replica: %+v, %d bytes", info, len(data))
	}
	sampleFlipsAndCuts(t, data)

	// redis-cli --rdb syncs as a replica (REPLCONF rdb-only): repl fields.
	cliFile := filepath.Join(t.TempDir(), "cli.rdb")
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(master.Port), "--rdb", cliFile).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
	}
	minfo := master.Info(t, "replication")
	info, err = CheckRDBFile(cliFile)
	if err != nil {
		t.Fatal(err)
	}
	if !info.ChecksumOK || !info.HasRepl || info.ReplID != minfo["master_replid"] || info.ReplStreamDB != 0 ||
		info.ReplOffset < 0 || info.ReplOffset > mustAtoi(t, minfo["master_repl_offset"]) {
		t.Fatalf("redis-cli --rdb file: %+v; master %v", info, minfo)
	}
	t.Logf("redis-cli --rdb: %d bytes, repl %q %d, stream db %d", info.Size, info.ReplID, info.ReplOffset, info.ReplStreamDB)

	// A replica's SAVE after a full sync carries the master's id and the
	// replica's offset. So does the master's, now that it has a backlog.
	replica := redistest.Start(t)
	replica.ReplicaOf(t, master.Addr())
	redistest.WaitOnline(t, replica, 20*time.Second)
	master.MustDo(t, "SET", "after-sync", "1") // in db 5: the stream selects it
	redistest.WaitInSync(t, 20*time.Second, master, replica)
	rinfo := replica.Info(t, "replication")
	info, data = checkSaved(t, replica)
	after := replica.Info(t, "replication")
	if !info.ChecksumOK || !info.HasRepl || info.ReplID != rinfo["master_replid"] || info.ReplStreamDB != 5 ||
		info.ReplOffset < mustAtoi(t, rinfo["master_repl_offset"]) || info.ReplOffset > mustAtoi(t, after["master_repl_offset"]) {
		t.Fatalf("replica SAVE: %+v; INFO before %v, after %v", info, rinfo, after)
	}
	sampleFlipsAndCuts(t, data)

	before := master.Info(t, "replication")
	info, _ = checkSaved(t, master)
	after = master.Info(t, "replication")
	if !info.ChecksumOK || !info.HasRepl || info.ReplID != before["master_replid"] || info.ReplStreamDB != 5 ||
		info.ReplOffset < mustAtoi(t, before["master_repl_offset"]) || info.ReplOffset > mustAtoi(t, after["master_repl_offset"]) {
		t.Fatalf("master SAVE with a replica: %+v; INFO before %v, after %v", info, before, after)
	}

	plain := redistest.Start(t, "--rdbchecksum", "no")
	plain.MustDo(t, "DEBUG", "POPULATE", "1000")
	info, _ = checkSaved(t, plain)
	if info.Checksum != 0 || info.ChecksumOK {
		t.Fatalf("rdbchecksum no: %+v", info)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestRDBCheckerPSYNC receives full syncs as the proxy does (PSYNC, the
// payload header, CopyPayload into the checker beside a file) in both
// framings, and checks that the RDB's repl-id and repl-offset are those of
// +FULLRESYNC. The second sync comes after writes, so its offset is not 0.
func TestRDBCheckerPSYNC(t *testing.T) {
	for _, diskless := range []string{"no", "yes"} {
		t.Run("diskless="+diskless, func(t *testing.T) {
			t.Parallel()
			master := redistest.Start(t, "--repl-diskless-sync", diskless)
			fillRedis(t, master)
			fullSync(t, master, diskless == "yes")
			for i := range 100 {
				master.MustDo(t, "SET", fmt.Sprint("after:", i), "x")
			}
			if info := fullSync(t, master, diskless == "yes"); info.ReplOffset == 0 || info.ReplStreamDB != 5 {
				t.Fatalf("second sync: %+v", info)
			}
		})
	}
}

// fullSync plays a replica's full sync and checks the RDB received.
func fullSync(t *testing.T, master *redistest.Server, marked bool) RDBInfo {
	t.Helper()
	c := redistest.Dial(t, master.Addr())
	for _, cmd := range [][]string{{"REPLCONF", "listening-port", "6380"}, {"REPLCONF", "capa", "eof", "capa", "psync2"}} {
		if _, err := c.Do(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send("PSYNC", "?", "-1"); err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(30 * time.Second)
	var line string
	for line == "" {
		var err error
		if line, err = c.ReadLine(); err != nil {
			t.Fatal(err)
		}
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "+FULLRESYNC" {
		t.Fatalf("PSYNC reply %q", line)
	}
	h, err := ReadPayloadHeader(c.Reader(), DefaultLimits(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Marked() != marked {
		t.Fatalf("payload header %+v, want marked %v", h, marked)
	}
	var file bytes.Buffer
	var chk RDBChecker
	if _, err := CopyPayload(io.MultiWriter(&file, &chk), c.Reader(), h); err != nil {
		t.Fatal(err)
	}
	info, err := chk.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !info.ChecksumOK || !info.HasRepl || info.ReplID != f[1] || strconv.FormatInt(info.ReplOffset, 10) != f[2] ||
		info.Size != int64(file.Len()) {
		t.Fatalf("%s: %+v", line, info)
	}
	t.Logf("%s: %d bytes (%+v), checksum %#016x, stream db %d", line, info.Size, h, info.Checksum, info.ReplStreamDB)
	return info
}

func FuzzRDBChecker(f *testing.F) {
	for _, seed := range [][]byte{
		makeRDB("REDIS0005", true),
		makeRDB("REDIS0010", false, testBody),
		makeRDB("VALKEY080", true, auxField("valkey-ver", encStr("9.0.0")), auxField("repl-id", encStr(testReplID)),
			auxField("repl-offset", encStr("123456789012")), testBody),
		makeRDB("REDIS0012", true, auxField("a", encInt8(-7)), auxField("b", encInt16(-300)), auxField("c", encInt32(-70000)),
			auxField("d", encLZF(lzfABC, 15)), auxField("e", encLZF(lzfABC, 1<<40)), testBody),
		makeRDB("REDIS0011", true, append([]byte{rdbOpAux, 0x81}, make([]byte, 8)...), []byte{0x80, 0, 0, 0, 1, 'x'}),
		[]byte("REDIS0010\xfa"),
		[]byte("-ERR"),
	} {
		f.Add(seed, uint64(0))
		f.Add(seed[:len(seed)/2], uint64(1))
	}
	for _, name := range []string{"redis-7.0.15-replica.rdb", "redis-7.0.15-nochecksum.rdb"} {
		data, err := os.ReadFile(filepath.Join("testdata", "rdb", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint64(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		info, err := checkChunks(t, data, 0, 0)
		info2, err2 := checkChunks(t, data, seed, 1+int(seed%64))
		if !reflect.DeepEqual(info, info2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("in chunks: %+v, %v\nall at once: %+v, %v", info2, err2, info, err)
		}
		if err != nil && !errors.Is(err, ErrBadRDB) {
			t.Fatalf("error %v does not wrap ErrBadRDB", err)
		}
		if err == nil && (len(data) < rdbMinSize || data[len(data)-9] != rdbOpEOF || info.Size != int64(len(data)) ||
			info.ChecksumOK != (info.Checksum != 0) || info.Checksum != 0 && info.Checksum != redisCRC(0, data[:len(data)-8])) {
			t.Fatalf("accepted %q as %+v", data, info)
		}
	})
}

// BenchmarkCRC64 compares crc64Update with hash/crc64: the ISO table (which
// hash/crc64 runs slicing-by-8) and the Jones table (Redis's polynomial, run
// a byte at a time, or slicing-by-8 after building the tables on every call
// of 2 KiB or more).
func BenchmarkCRC64(b *testing.B) {
	iso := crc64.MakeTable(crc64.ISO)
	for _, size := range []int{64, 4 << 10, 1 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		funcs := []struct {
			name string
			fn   func(uint64, []byte) uint64
		}{
			{"redis", crc64Update},
			{"hash-crc64-ISO", func(c uint64, p []byte) uint64 { return crc64.Update(c, iso, p) }},
			{"hash-crc64-Jones", redisCRC},
		}
		for _, fn := range funcs {
			b.Run(fmt.Sprintf("%s/%d", fn.name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				var crc uint64
				for b.Loop() {
					crc = fn.fn(crc, data)
				}
			})
		}
	}
}

// BenchmarkRDBChecker measures Write on a large snapshot in 64 KiB chunks.
func BenchmarkRDBChecker(b *testing.B) {
	data := makeRDB("REDIS0010", true, auxField("redis-ver", encStr("7.0.15")), bytes.Repeat([]byte{0x5a}, 8<<20))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var c RDBChecker
		for p := data; len(p) > 0; p = p[min(len(p), 64<<10):] {
			_, _ = c.Write(p[:min(len(p), 64<<10)])
		}
		if _, err := c.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}
