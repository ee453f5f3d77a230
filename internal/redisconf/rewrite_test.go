package redisconf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func one(args ...string) [][]string { return [][]string{args} }

func TestRewrite(t *testing.T) {
	for _, c := range []struct {
		name      string
		old, want string
		opts      []Option
	}{
		{"in place, first occurrence, duplicates removed",
			"# top\n\nport 6379\n# mid\nPORT 1\nunknown x\n  include /etc/x.conf\n",
			"# top\n\nport 7000\n# mid\nunknown x\n  include /etc/x.conf\n",
			[]Option{{Name: "port", Values: one("7000"), Default: one("6379")}}},
		{"appended after the signature, once",
			"port 6379\n",
			"port 6379\n" + Signature + "\nmaxclients 10\ntimeout 5\n",
			[]Option{
				{Name: "port", Values: one("6379"), Default: one("6379")},
				{Name: "maxclients", Values: one("10"), Default: one("10000")},
				{Name: "timeout", Values: one("5"), Default: one("0")},
				{Name: "dir", Values: one("./data"), Default: one("./data")},
			}},
		{"a signature already there",
			"# x\n" + Signature + "\nport 1\n# end",
			"# x\n" + Signature + "\nport 1\n# end\ntimeout 5\n",
			[]Option{{Name: "timeout", Values: one("5"), Default: one("0")}}},
		{"back at its default: kept in place",
			"timeout 300\n",
			"timeout 0\n",
			[]Option{{Name: "timeout", Values: one("0"), Default: one("0")}}},
		{"not set: removed",
			"replicaof 10.0.0.1 6379\nport 1\nslaveof 10.0.0.2 6379\n",
			"port 1\n",
			[]Option{{Name: "replicaof", Aliases: []string{"slaveof"}}}},
		{"an alias rewritten under the name",
			"SlaveOf 10.0.0.1 6379\n",
			"replicaof 10.0.0.9 6380\n",
			[]Option{{Name: "replicaof", Aliases: []string{"slaveof"}, Values: one("10.0.0.9", "6380")}}},
		{"a list reuses its lines in order, appends the rest",
			"user a:1:replication\n# users\nuser b:2:admin\n",
			"user x:1:replication\n# users\nuser y:2:admin\n" + Signature + "\nuser z:3:admin\n",
			[]Option{{Name: "user", Values: [][]string{{"x:1:replication"}, {"y:2:admin"}, {"z:3:admin"}}}}},
		{"a shorter list removes the extra lines",
			"user a:1:replication\n# users\nuser b:2:admin\n",
			"user x:1:replication\n# users\n",
			[]Option{{Name: "user", Values: [][]string{{"x:1:replication"}}}}},
		{"unparsable lines become comments",
			"requirepass \"abc\nport 1\n",
			"# ??? requirepass \"abc\nport 1\n",
			nil},
		{"quoted where needed",
			"masterauth old\n",
			"masterauth \"a \\\"b\\\" \\x01\"\n" + Signature + "\nlogfile \"\"\ndir /x\\y\n",
			[]Option{
				{Name: "masterauth", Values: one("a \"b\" \x01")},
				{Name: "logfile", Values: one(""), Default: one("stdout")},
				{Name: "dir", Values: one(`/x\y`)},
			}},
		{"an empty file",
			"",
			Signature + "\nport 1\n",
			[]Option{{Name: "port", Values: one("1")}}},
	} {
		if got := rewrite(c.old, c.opts); got != c.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        "plain",
		"":             `""`,
		"a b":          `"a b"`,
		"it's":         `"it's"`,
		`back\slash`:   `back\slash`,
		"#hash":        "#hash",
		"\t\r\n\a\b\\": `"\t\r\n\a\b\\"`,
		"é":            `"\xc3\xa9"`,
		"\x7f\x00":     `"\x7f\x00"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzQuote checks that every string survives FormatLine and SplitArgs.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a b", `"'\`, "\x00\xff", "x\"y", "a'b c", "\\x41", "  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := SplitArgs(FormatLine("x", []string{s, s}))
		if err != nil || !slices.Equal(got, []string{"x", s, s}) {
			t.Fatalf("%q: read back as %q, %v", s, got, err)
		}
	})
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1: "1", 1024: "1kb", 1536: "1536", 3 << 20: "3mb",
		1 << 30: "1gb", 1000: "1000", 5 << 30: "5gb", 1<<30 + 1<<20: "1025mb"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestRewriteFile(t *testing.T) {
	dir := t.TempDir()
	real := write(t, filepath.Join(dir, "real.conf"), "# mine\nport 1\n")
	if err := os.Chmod(real, 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink("real.conf", link); err != nil {
		t.Fatal(err)
	}
	if err := Rewrite(link, []Option{{Name: "port", Values: one("2")}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); string(b) != "# mine\nport 2\n" {
		t.Errorf("target: %q", b)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", st.Mode(), err)
	}
	if st, _ := os.Stat(real); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
	fresh := filepath.Join(dir, "new.conf")
	if err := Rewrite(fresh, []Option{{Name: "port", Values: one("3")}}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a new file: %v %v", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if err := Rewrite(filepath.Join(dir, "nodir", "x.conf"), nil); err == nil {
		t.Error("a rewrite into a missing directory succeeded")
	}
}

// TestRewriteRedisConf rewrites the operator's redis.conf excerpt and reads it back.
func TestRewriteRedisConf(t *testing.T) {
	orig, err := os.ReadFile("testdata/redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	path := write(t, filepath.Join(t.TempDir(), "redis.conf"), string(orig))
	err = Rewrite(path, []Option{
		{Name: "replicaof", Aliases: []string{"slaveof"}, Values: one("10.0.0.6", "6380")},
		{Name: "repl-backlog-size", Values: one("1gb"), Default: one("1mb")},
		{Name: "masterauth", Values: one("new pass")},
		{Name: "repl-timeout", Values: one("60"), Default: one("60")},
		{Name: "maxmemory", Values: one("0"), Default: one("0")},
		{Name: "loglevel", Values: one("warning"), Default: one("notice")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range ds {
		got[d.Name] = strings.Join(d.Args, " ")
	}
	for k, v := range map[string]string{"replicaof": "10.0.0.6 6380", "repl-backlog-size": "1gb", "masterauth": "new pass",
		"repl-timeout": "60", "loglevel": "warning", "requirepass": "Pa55:with#hash", "bind": "127.0.0.1 -::1"} {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["maxmemory"]; ok {
		t.Error("maxmemory at its default was appended")
	}
	b, _ := os.ReadFile(path)
	newText := string(b)
	// Every comment is kept, in order, and only loglevel is appended.
	var oldComments, newComments []string
	for _, l := range strings.Split(string(orig), "\n") {
		if strings.HasPrefix(l, "#") {
			oldComments = append(oldComments, l)
		}
	}
	for _, l := range strings.Split(newText, "\n") {
		if strings.HasPrefix(l, "#") {
			newComments = append(newComments, l)
		}
	}
	if !slices.Equal(append(oldComments, Signature), newComments) {
		t.Errorf("comments changed:\n%s", newText)
	}
	if !strings.HasSuffix(newText, Signature+"\nloglevel warning\n") || !strings.Contains(newText, "\nrepl-timeout 60\n") {
		t.Errorf("rewritten file:\n%s", newText)
	}
}
