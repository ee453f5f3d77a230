package sentinel

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	tresp "github.com/tidwall/resp"
	"go.uber.org/zap/zaptest"

	"github.com/psync-proxy/psync-proxy/resp"
)

// val parses one RESP value from raw wire bytes, as a Sentinel would send them.
func val(t *testing.T, raw string) tresp.Value {
	t.Helper()
	v, err := resp.ReadValue(bufio.NewReaderSize(strings.NewReader(raw), readBufSize), replyLimits)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return v
}

func TestParseSwitchMaster(t *testing.T) {
	for _, tc := range []struct {
		payload       string
		name, old, nu string
		err           string
	}{
		{payload: "mymaster 127.0.0.1 6379 127.0.0.1 6380", name: "mymaster", old: "127.0.0.1:6379", nu: "127.0.0.1:6380"},
		{payload: "my master 10.0.0.1 6379 10.0.0.2 7000", name: "my master", old: "10.0.0.1:6379", nu: "10.0.0.2:7000"},
		{payload: "m ::1 6379 fe80::1 6380", name: "m", old: "[::1]:6379", nu: "[fe80::1]:6380"},
		{payload: "m redis-0.example 6379 redis-1.example 6379", name: "m", old: "redis-0.example:6379", nu: "redis-1.example:6379"},
		{payload: "mymaster 127.0.0.1 6379 127.0.0.1", err: "4 fields"},
		{payload: "", err: "1 fields"},
		{payload: " 127.0.0.1 6379 127.0.0.1 6380", err: "empty master name"},
		{payload: "m 127.0.0.1 6379 127.0.0.1 0", err: "bad port"},
		{payload: "m 127.0.0.1 6379 127.0.0.1 65536", err: "bad port"},
		{payload: "m 127.0.0.1 6379 127.0.0.1 +6380", err: "bad port"},
		{payload: "m 127.0.0.1 6379 127.0.0.1 06380", err: "bad port"},
		{payload: "m 127.0.0.1 x 127.0.0.1 6380", err: "bad port"},
		{payload: "m 127.0.0.1 6379  6380", err: "empty host"},
		{payload: "m 127.0.0.1 6379 " + strings.Repeat("h", 256) + " 6380", err: "longer than"},
	} {
		sw, err := parseSwitchMaster(tc.payload)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseSwitchMaster(%q) = %+v, %v; want error with %q", tc.payload, sw, err, tc.err)
			}
			continue
		}
		if err != nil || sw != (switchMaster{tc.name, tc.old, tc.nu}) {
			t.Errorf("parseSwitchMaster(%q) = %+v, %v; want {%s %s %s}", tc.payload, sw, err, tc.name, tc.old, tc.nu)
		}
	}
}

func TestParseMasterAddr(t *testing.T) {
	for _, tc := range []struct {
		raw, want, err string
	}{
		{raw: "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", want: "127.0.0.1:6379"},
		{raw: "*2\r\n$3\r\n::1\r\n$4\r\n6379\r\n", want: "[::1]:6379"},
		{raw: "*-1\r\n", err: "does not know"}, // the reply for an unknown name
		{raw: "$-1\r\n", err: "does not know"},
		{raw: "-NOAUTH Authentication required.\r\n", err: "NOAUTH"},
		{raw: "*1\r\n$9\r\n127.0.0.1\r\n", err: "want [ip, port]"},
		{raw: "*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n2\r\n", err: "want [ip, port]"},
		{raw: "*2\r\n$9\r\n127.0.0.1\r\n:6379\r\n", err: "want [ip, port]"},
		{raw: "*2\r\n$9\r\n127.0.0.1\r\n$-1\r\n", err: "want [ip, port]"},
		{raw: "*2\r\n*0\r\n$4\r\n6379\r\n", err: "want [ip, port]"},
		{raw: "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n99999\r\n", err: "bad port"},
		{raw: "*2\r\n$0\r\n\r\n$4\r\n6379\r\n", err: "empty host"},
		{raw: "*2\r\n$3\r\na b\r\n$4\r\n6379\r\n", err: "white space"},
		{raw: "+OK\r\n", err: "want [ip, port]"},
	} {
		got, err := parseMasterAddr(val(t, tc.raw))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseMasterAddr(%q) = %q, %v; want error with %q", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMasterAddr(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
	if _, err := parseMasterAddr(val(t, "*-1\r\n")); !errors.Is(err, errUnknownMaster) {
		t.Errorf("null reply: %v, want errUnknownMaster", err)
	}
}

func TestParseConfigEpoch(t *testing.T) {
	master := func(kv ...string) string {
		var b []byte
		return string(resp.AppendCommand(b, kv...)) // a flat array of bulk strings, as Sentinel sends it
	}
	for _, tc := range []struct {
		raw  string
		want int64
		err  string
	}{
		{raw: master("name", "m", "ip", "127.0.0.1", "port", "6379", "flags", "master", "config-epoch", "7", "num-slaves", "1"), want: 7},
		{raw: master("config-epoch", "0"), want: 0},
		{raw: master("name", "m"), err: "no config-epoch"},
		{raw: master("config-epoch", "-1"), err: "bad config-epoch"},
		{raw: master("config-epoch", "x"), err: "bad config-epoch"},
		{raw: master("config-epoch"), err: "unexpected reply"},
		{raw: "-NOPERM this user has no permissions to run the 'sentinel|master' command\r\n", err: "NOPERM"},
		{raw: "-ERR No such master with that name\r\n", err: "No such master"},
		{raw: "*-1\r\n", err: "unexpected reply"},
	} {
		got, err := parseConfigEpoch(val(t, tc.raw))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseConfigEpoch(%q) = %d, %v; want error with %q", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseConfigEpoch(%q) = %d, %v; want %d", tc.raw, got, err, tc.want)
		}
	}
}

func TestMessage(t *testing.T) {
	w, err := New(Config{Addrs: []string{"127.0.0.1:26379"}, MasterName: "mymaster", Logger: zaptest.NewLogger(t).Sugar()})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(channel, payload string) string {
		return string(resp.AppendCommand(nil, "message", channel, payload))
	}
	for _, tc := range []struct {
		raw  string
		addr string // "" for nothing to report
		err  string
	}{
		{raw: msg("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380"), addr: "127.0.0.1:6380"},
		{raw: msg("+switch-master", "othermaster 127.0.0.1 6379 127.0.0.1 6380")},   // another master
		{raw: msg("+switch-master", "mymaster2 127.0.0.1 6379 127.0.0.1 6380")},     // names match exactly
		{raw: msg("+switch-master", "MYMASTER 127.0.0.1 6379 127.0.0.1 6380")},      // Sentinel's names are case-sensitive
		{raw: msg("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 garbage")},   // malformed: logged, ignored
		{raw: msg("+sdown", "master mymaster 127.0.0.1 6379")},                      // not our channel
		{raw: "*2\r\n$4\r\npong\r\n$0\r\n\r\n"},                                     // the reply to our PING
		{raw: "-NOPERM this user has no permissions to run the 'ping' command\r\n"}, // alive all the same
		{raw: "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n", err: "unexpected reply"},
		{raw: "+OK\r\n", err: "unexpected reply"},
		{raw: "*0\r\n", err: "unexpected reply"},
		{raw: "*2\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n", err: "unexpected reply"},
	} {
		ev, err := w.message(val(t, tc.raw), "127.0.0.1:26379")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("message(%q) = %+v, %v; want error with %q", tc.raw, ev, err, tc.err)
			}
			continue
		}
		if err != nil || ev.addr != tc.addr || (ev.addr != "") != ev.switched {
			t.Errorf("message(%q) = %+v, %v; want addr %q", tc.raw, ev, err, tc.addr)
		}
	}
}

func TestCheckSubscribed(t *testing.T) {
	if err := checkSubscribed(val(t, "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")); err != nil {
		t.Errorf("confirmation refused: %v", err)
	}
	for _, raw := range []string{
		"-NOPERM this user has no permissions to access the '+switch-master' channel\r\n",
		"*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:1\r\n",
		"+OK\r\n",
	} {
		if err := checkSubscribed(val(t, raw)); err == nil {
			t.Errorf("checkSubscribed(%q) accepted it", raw)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	ok := Config{Addrs: []string{"127.0.0.1:26379", "[::1]:26380", "sentinel-2:26379"}, MasterName: "m"}
	if _, err := New(ok); err != nil {
		t.Fatalf("New(%+v): %v", ok, err)
	}
	for _, tc := range []struct {
		cfg Config
		err string
	}{
		{Config{MasterName: "m"}, "no Sentinel address"},
		{Config{Addrs: []string{"127.0.0.1"}, MasterName: "m"}, "missing port"},
		{Config{Addrs: []string{"127.0.0.1:0"}, MasterName: "m"}, "bad port"},
		{Config{Addrs: []string{":26379"}, MasterName: "m"}, "empty host"},
		{Config{Addrs: []string{"a:1", "a:1"}, MasterName: "m"}, "listed twice"},
		{Config{Addrs: []string{"a:1"}}, "no master name"},
		{Config{Addrs: []string{"a:1"}, MasterName: "m", User: "u"}, "needs a password"},
		{Config{Addrs: []string{"a:1"}, MasterName: "m", Timeout: -1}, "negative timeout"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%+v) = %v, want error with %q", tc.cfg, err, tc.err)
		}
	}
}
