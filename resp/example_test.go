package resp_test

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/psync-proxy/psync-proxy/resp"
)

// The upstream link after PSYNC: keep-alives, +FULLRESYNC, an EOF-marked RDB,
// then the stream, all read from one bufio.Reader.
func Example() {
	const mark = "0123456789abcdef0123456789abcdef01234567"
	conn := strings.NewReader("\n\n+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 0\r\n" +
		"$EOF:" + mark + "\r\nREDIS0011..." + mark +
		"*1\r\n$4\r\nping\r\n*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	lim := resp.DefaultLimits()

	if err := resp.SkipNewlines(br, nil); err != nil {
		panic(err)
	}
	reply, err := resp.ReadValue(br, lim)
	if err != nil {
		panic(err)
	}
	fmt.Println(reply.String())

	h, err := resp.ReadPayloadHeader(br, lim, nil)
	if err != nil {
		panic(err)
	}
	var rdb strings.Builder
	n, err := resp.CopyPayload(&rdb, br, h)
	if err != nil {
		panic(err)
	}
	fmt.Printf("marked=%v rdb=%q (%d bytes)\n", h.Marked(), rdb.String(), n)

	sc := resp.NewScanner(1, lim) // +FULLRESYNC <id> 0: the stream starts at offset 1
	buf := make([]byte, 16)       // any piece size works
	for {
		m, err := br.Read(buf)
		if err == io.EOF {
			break
		}
		err = sc.Feed(buf[:m], func(c *resp.Command) {
			fmt.Printf("%d..%d argc=%d getack=%v\n", c.Start, c.End, c.Argc, c.Is("REPLCONF", "GETACK"))
		})
		if err != nil {
			panic(err)
		}
	}
	fmt.Println("boundary", sc.Boundary())
	// Output:
	// FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 0
	// marked=true rdb="REDIS0011..." (12 bytes)
	// 1..14 argc=1 getack=false
	// 15..51 argc=3 getack=true
	// boundary 51
}
