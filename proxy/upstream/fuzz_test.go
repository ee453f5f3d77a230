package upstream

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/psync-proxy/psync-proxy/resp"
)

// FuzzPsyncReply throws arbitrary master replies at the upstream link's reading of the PSYNC
// answer: the keep-alive newlines, the reply, its classification (parsePsyncReply), then the
// RDB payload line and payload. Nothing may panic, an accepted answer must be well formed,
// and nothing may be read beyond the input.
func FuzzPsyncReply(f *testing.F) {
	const id = "8de1787ba490483314a4d30f1c628bc5025eb761"
	const mark = "0123456789abcdef0123456789abcdef01234567"
	for _, s := range []string{
		"+FULLRESYNC " + id + " 0\r\n$3\r\nRDB",
		"\n\n+FULLRESYNC " + id + " 0\r\n$EOF:" + mark + "\r\nRDB" + mark,
		"+FULLRESYNC " + id + " 0\r\n\n\n$EOF:" + mark + "\r\n" + mark,
		"+FULLRESYNC " + id + " 0\r\n-ERR BGSAVE failed, replication can't continue\r\n",
		"+FULLRESYNC " + id + " -1\r\n", "+FULLRESYNC " + id[:39] + " 5\r\n", "+FULLRESYNC\r\n",
		"+CONTINUE\r\n", "+CONTINUE " + id + "\r\n", "+CONTINUE x\r\n",
		"-NOMASTERLINK Can't SYNC while not connected with my master\r\n",
		"-LOADING Redis is loading the dataset in memory\r\n", "-NOAUTH Authentication required.\r\n",
		"+OK\r\n", ":1\r\n", "$5\r\nhello\r\n", "*1\r\n$4\r\nPING\r\n", "\r\n", "", "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &session{br: bufio.NewReaderSize(bytes.NewReader(in), 64<<10), lim: resp.DefaultLimits()}
		v, err := s.psyncReply()
		if err != nil {
			return
		}
		ans, err := parsePsyncReply(v)
		if err != nil {
			return
		}
		if ans.full && (len(ans.replid) != 40 || ans.offset < 0) || !ans.full && ans.replid != "" && len(ans.replid) != 40 {
			t.Fatalf("accepted %q as %+v", in, ans)
		}
		if !ans.full {
			return
		}
		hdr, err := resp.ReadPayloadHeader(s.br, s.lim, nil)
		if err != nil {
			return
		}
		if hdr.Marked() && len(hdr.Mark) != 40 || !hdr.Marked() && hdr.Len < 0 {
			t.Fatalf("payload header %+v from %q", hdr, in)
		}
		var w countWriter
		if n, _ := resp.CopyPayload(&w, s.br, hdr); n != int64(w) || n > int64(len(in)) {
			t.Fatalf("copied %d bytes (%d written) from %d bytes of input", n, w, len(in))
		}
	})
}

type countWriter int64

func (w *countWriter) Write(b []byte) (int, error) {
	*w += countWriter(len(b))
	return len(b), nil
}
