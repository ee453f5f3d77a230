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
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
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

// opaqueBody is a body no RDB reader of today could load: a database
// selector, then type 29 (Redis 8.8's GCRA; nothing in Valkey 9), opcode
// 0xf3 (Redis's KEY_META, Valkey's SLOT_IMPORT), a bad length encoding 0x85,
// and bytes that look like an aux field and like the EOF opcode. The checker
// never reads past the aux fields, so it must accept the body as it is.
var opaqueBody = []byte{0xfe, 0x00, 29, 0x01, 'k', 0x85, 0xf3, 0xfa, 0x01, 'x', 0xff, 0x00, 0xff, 0x16, 0x19}

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
		{"redis 8.8, opaque body", makeRDB("REDIS0014", true, auxField("redis-ver", encStr("8.8.0")), opaqueBody),
			RDBInfo{Version: 14, ReplStreamDB: -1, ServerVersion: "8.8.0", Aux: map[string]string{"redis-ver": "8.8.0"}}},
		{"version 99 framed correctly", makeRDB("REDIS0099", true,
			auxField("redis-ver", encStr("99.0.0")), auxField("repl-id", encStr(testReplID)), auxField("repl-offset", encInt16(1000)), opaqueBody),
			RDBInfo{Version: 99, NewerVersion: true, HasRepl: true, ReplID: testReplID, ReplOffset: 1000, ReplStreamDB: -1,
				ServerVersion: "99.0.0", Aux: map[string]string{"redis-ver": "99.0.0", "repl-id": testReplID, "repl-offset": "1000"}}},
		{"version 80 with magic REDIS is a newer Redis", makeRDB("REDIS0080", true, testBody),
			RDBInfo{Version: 80, NewerVersion: true, ReplStreamDB: -1}},
		{"version 9999, checksum off", makeRDB("REDIS9999", false, opaqueBody),
			RDBInfo{Version: 9999, NewerVersion: true, ReplStreamDB: -1}},
		{"valkey 9.2", makeRDB("VALKEY081", true, testBody),
			RDBInfo{Version: 81, Valkey: true, ReplStreamDB: -1}},
		{"valkey 99, no aux fields", makeRDB("VALKEY099", true, opaqueBody),
			RDBInfo{Version: 99, Valkey: true, NewerVersion: true, ReplStreamDB: -1}},
		{"valkey 999", makeRDB("VALKEY999", true),
			RDBInfo{Version: 999, Valkey: true, NewerVersion: true, ReplStreamDB: -1}},
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
	newer := makeRDB("REDIS0099", true, auxField("redis-ver", encStr("99.0.0")), opaqueBody)
	newerBadSum := bytes.Clone(newer)
	newerBadSum[len(newer)-12] ^= 0x01 // in the body
	valkeyNewer := makeRDB("VALKEY099", true, auxField("valkey-ver", encStr("99.0.0")), opaqueBody)
	valkeyBadSum := bytes.Clone(valkeyNewer)
	valkeyBadSum[len(valkeyNewer)-1] ^= 0x80
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
		{"version 0", "unsupported RDB version 0 ", makeRDB("REDIS0000", true)},
		{"valkey 11", "unsupported RDB version 11 ", makeRDB("VALKEY011", true)},
		{"valkey 79", "unsupported RDB version 79 ", makeRDB("VALKEY079", true)},
		{"version with a sign", `version at offset 5 is "+014"`, makeRDB("REDIS+014", true)},
		{"version with a space", `version at offset 6 is " 99"`, makeRDB("VALKEY 99", true)},
		{"version 99, bad checksum", "checksum mismatch", newerBadSum},
		{"version 99, truncated", "not the EOF opcode", newer[:len(newer)-1]},
		{"version 99, cut where 0xff passes for the EOF opcode", "checksum mismatch", newer[:len(newer)-3]},
		{"version 99, cut inside the aux fields", "ends inside the aux field", newer[:20]},
		{"version 99, trailing byte", "not the EOF opcode", append(bytes.Clone(newer), 0)},
		{"valkey 99, bad checksum", "checksum mismatch", valkeyBadSum},
		{"valkey 99, bad magic", `starts with "VALKEI"`, append([]byte("VALKEI"), valkeyNewer[6:]...)},
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

// TestRDBFixturesCompat checks a replica's SAVE after a full sync by Redis
// 8.8.0 (REDIS0014) and by Valkey 9.0.4 (VALKEY080), written by
// TestWriteRDBFixtures and kept in testdata so that they are tested, and seed
// the fuzzer, where the compat servers cannot be built. Both hold the same
// keys: an LZF-compressed value, integers, hashes with field TTLs (Redis
// 8.8 stores them as type 25, Valkey 9 as type 22, which Redis 8.8 reads as
// a pre-GA hash with metadata), a stream (type 27 and 21), and a key in db 3.
func TestRDBFixturesCompat(t *testing.T) {
	const redisID, valkeyID = "504a0182751d31d6123e32a23630301cf8ebac36", "8c1cdbb3ca56a5e4b8c674c3699104c81f85aaaa"
	for _, c := range []struct {
		name string
		want RDBInfo
	}{
		{"redis-8.8.0-replica.rdb", RDBInfo{Version: 14, Size: 402, Checksum: 0xbd1a18839bfac436, ChecksumOK: true,
			HasRepl: true, ReplID: redisID, ReplOffset: 56, ReplStreamDB: 3, ServerVersion: "8.8.0",
			Aux: map[string]string{"redis-ver": "8.8.0", "redis-bits": "64", "ctime": "1796519232", "used-mem": "987192",
				"repl-stream-db": "3", "repl-id": redisID, "repl-offset": "56", "aof-base": "0"}}},
		{"valkey-9.0.4-replica.rdb", RDBInfo{Version: 80, Valkey: true, Size: 363, Checksum: 0x150f0e5027ab3617, ChecksumOK: true,
			HasRepl: true, ReplID: valkeyID, ReplOffset: 56, ReplStreamDB: 3, ServerVersion: "9.0.4",
			Aux: map[string]string{"valkey-ver": "9.0.4", "redis-bits": "64", "ctime": "1796519233", "used-mem": "1162672",
				"repl-stream-db": "3", "repl-id": valkeyID, "repl-offset": "56", "aof-base": "0"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join("testdata", "rdb", c.name)
			info, err := CheckRDBFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(info, c.want) {
				t.Fatalf("got  %+v\nwant %+v", info, c.want)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{"\x03lzf\xc3", "\x08hash-ttl", "\x0ahash-setex", "\x06stream", "\x07in-db-3"} {
				if !bytes.Contains(data, []byte(key)) {
					t.Fatalf("the fixture has no %q any more", key)
				}
			}
			flipAll(t, data)
			truncateAll(t, data)
		})
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

func FuzzRDBChecker(f *testing.F) {
	for _, seed := range [][]byte{
		makeRDB("REDIS0005", true),
		makeRDB("REDIS0010", false, testBody),
		makeRDB("VALKEY080", true, auxField("valkey-ver", encStr("9.0.0")), auxField("repl-id", encStr(testReplID)),
			auxField("repl-offset", encStr("123456789012")), testBody),
		makeRDB("REDIS0012", true, auxField("a", encInt8(-7)), auxField("b", encInt16(-300)), auxField("c", encInt32(-70000)),
			auxField("d", encLZF(lzfABC, 15)), auxField("e", encLZF(lzfABC, 1<<40)), testBody),
		makeRDB("REDIS0011", true, append([]byte{rdbOpAux, 0x81}, make([]byte, 8)...), []byte{0x80, 0, 0, 0, 1, 'x'}),
		makeRDB("REDIS0099", true, auxField("redis-ver", encStr("99.0.0")), opaqueBody),
		makeRDB("VALKEY099", false, opaqueBody),
		[]byte("REDIS0010\xfa"),
		[]byte("-ERR"),
	} {
		f.Add(seed, uint64(0))
		f.Add(seed[:len(seed)/2], uint64(1))
	}
	for _, name := range []string{"redis-7.0.15-replica.rdb", "redis-7.0.15-nochecksum.rdb", "redis-8.8.0-replica.rdb", "valkey-9.0.4-replica.rdb"} {
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
		newest := map[bool]int{false: rdbNewestRedis, true: rdbNewestValkey}[info.Valkey]
		if err == nil && (info.Header() != string(data[:rdbHeaderLen]) || info.Version < rdbMinVersion ||
			info.Valkey && info.Version < rdbMinValkeyVersion || info.NewerVersion != (info.Version > newest)) {
			t.Fatalf("accepted header %q as %+v", data[:rdbHeaderLen], info)
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
