package redisconf

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string // nil: unbalanced
	}{
		{"", []string{}},
		{"   \t ", []string{}},
		{"port 6379", []string{"port", "6379"}},
		{"  bind  127.0.0.1\t-::1  ", []string{"bind", "127.0.0.1", "-::1"}},
		{`requirepass "a b"`, []string{"requirepass", "a b"}},
		{`x "\x41\x4a\x4A\xzz"`, []string{"x", `AJJxzz`}},
		{`x "\n\r\t\b\a\\\"\q"`, []string{"x", "\n\r\t\b\a\\\"q"}},
		{`x 'it\'s' 'a\nb'`, []string{"x", "it's", `a\nb`}},
		{`x a"b c"`, []string{"x", "ab c"}},
		{`x a\b`, []string{"x", `a\b`}},
		{`x ""`, []string{"x", ""}},
		{`x "" ''`, []string{"x", "", ""}},
		{"x a\vb", []string{"x", "a\vb"}},
		{"x \"a\"\tb", []string{"x", "a", "b"}},
		{"x a\x00 b", []string{"x", "a"}},
		{`x "abc`, nil},
		{`x 'abc`, nil},
		{`x "abc"d`, nil},
		{`x 'abc'd`, nil},
		{`x "abc\"`, nil},
		{`x "a\`, nil},
	} {
		got, err := SplitArgs(c.line)
		if c.want == nil {
			if err == nil {
				t.Errorf("SplitArgs(%q) = %q, want an error", c.line, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", c.line, got, err, c.want)
		}
	}
}

// TestSplitArgsAsRedis checks SplitArgs against Redis's own parser: redis-server reading
// `include ARG` names the file it cannot open, so its error shows ARG as Redis split it.
func TestSplitArgsAsRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "redis.conf")
	for _, arg := range []string{`"a\x41b\tc\\d\"e"`, `'it\'s'`, `x"y z"`, `"\xc3\xa9t\xe9"`, `a\nb`, `"abc`, `"ab"c`} {
		if err := os.WriteFile(conf, []byte("# test\ninclude "+arg+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(bin, conf).CombinedOutput()
		args, err := SplitArgs("include " + arg)
		switch {
		case err != nil:
			if !strings.Contains(string(out), "Unbalanced quotes in configuration line") {
				t.Errorf("%s: we find unbalanced quotes, Redis says %q", arg, out)
			}
		case !strings.Contains(string(out), "can't open config file '"+args[1]+"'"):
			t.Errorf("%s: we read %q, Redis says %q", arg, args[1], out)
		}
	}
}

func TestFileErrorAsRedis(t *testing.T) {
	e := &FileError{Program: "Redis 7.0.15", File: "x.conf", Line: 2, Text: "port abc",
		Reason: "argument couldn't be parsed into an integer"}
	want := "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration file, at line 2\n" +
		">>> 'port abc'\nargument couldn't be parsed into an integer"
	if e.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", e, want)
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		conf := filepath.Join(t.TempDir(), "x.conf")
		if err := os.WriteFile(conf, []byte("# c\nport abc\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(bin, conf).CombinedOutput()
		if version := strings.Fields(string(out)); len(version) > 7 {
			e.Program = "Redis " + strings.TrimSuffix(version[6], ")")
		}
		if string(out) != "\n"+e.Error()+"\n" {
			t.Errorf("redis-server says\n%q\nwe say\n%q", out, "\n"+e.Error()+"\n")
		}
	}
	e.Included, e.Program = true, ""
	if s := e.Error(); !strings.HasPrefix(s, "*** FATAL CONFIG FILE ERROR ***\n") || !strings.Contains(s, "at line 2 of included file 'x.conf'\n") {
		t.Errorf("included: %s", s)
	}
	e.Line = 0
	if s := e.Error(); s != "*** FATAL CONFIG FILE ERROR ***\nargument couldn't be parsed into an integer" {
		t.Errorf("no line: %q", s)
	}
}

func write(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, "a.conf", "x 1\r\n")
	write(t, "b.conf", "Y 2\n")
	if err := os.Mkdir("frag", 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, "frag/2.conf", "z 4\n")
	write(t, "frag/1.conf", "z 3\n")
	main := write(t, "main.conf", "# comment\n\n  PORT  6380  \ninclude a.conf\n   # indented comment\nINCLUDE b.conf\ninclude frag/*.conf\ninclude none/*.conf\nlast \"a b\" ''\n")
	ds, err := Parse(main)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.File+":"+strconv.Itoa(d.Line)+":"+d.Name+"="+strings.Join(d.Args, ",")+":"+d.Text+":"+boolStr(d.Included))
	}
	want := []string{
		"main.conf:3:port=6380:PORT  6380:false",
		"a.conf:1:x=1:x 1:true",
		"b.conf:1:y=2:Y 2:true",
		"frag/1.conf:1:z=3:z 3:true",
		"frag/2.conf:1:z=4:z 4:true",
		`main.conf:9:last=a b,:last "a b" '':false`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, "loop1.conf", "a 1\ninclude loop2.conf\n")
	write(t, "loop2.conf", "\ninclude loop1.conf\n")
	if err := os.Mkdir("self", 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, "self/self.conf", "include self/*.conf\n")
	write(t, "quote.conf", "ok 1\nbad \"x\n")
	write(t, "incquote.conf", "include quote.conf\n")
	write(t, "missing.conf", "include nothere.conf\n")
	write(t, "args.conf", "include\n")
	for i := range MaxIncludeDepth + 2 {
		write(t, "deep"+strconv.Itoa(i)+".conf", "include deep"+strconv.Itoa(i+1)+".conf\n")
	}
	write(t, "deep"+strconv.Itoa(MaxIncludeDepth+2)+".conf", "x 1\n")
	for _, c := range []struct {
		file, errFile string
		line          int
		reason        string
	}{
		{"loop1.conf", "loop2.conf", 2, "include cycle: 'loop1.conf' is already being read"},
		{"self/self.conf", "self/self.conf", 1, "include cycle"},
		{"quote.conf", "quote.conf", 2, "Unbalanced quotes in configuration line"},
		{"incquote.conf", "quote.conf", 2, "Unbalanced quotes in configuration line"},
		{"missing.conf", "missing.conf", 1, "can't open config file 'nothere.conf': no such file or directory"},
		{"args.conf", "args.conf", 1, "Bad directive or wrong number of arguments"},
		{"deep0.conf", "deep" + strconv.Itoa(MaxIncludeDepth) + ".conf", 1, "includes nested more than"},
	} {
		_, err := Parse(c.file)
		var fe *FileError
		if !errors.As(err, &fe) || fe.File != c.errFile || fe.Line != c.line || !strings.HasPrefix(fe.Reason, c.reason) {
			t.Errorf("%s: %#v (%v); want %s:%d %s", c.file, fe, err, c.errFile, c.line, c.reason)
		}
	}
	if _, err := Parse("absent.conf"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := Parse("deep2.conf"); err != nil {
		t.Errorf("%d levels of include: %v", MaxIncludeDepth, err)
	}
}

// TestParseRedisConf reads an excerpt of a redis.conf as operators write them.
func TestParseRedisConf(t *testing.T) {
	ds, err := Parse("testdata/redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	var names []string
	for _, d := range ds {
		got[d.Name] = d.Args
		names = append(names, d.Name)
	}
	want := map[string][]string{
		"bind":          {"127.0.0.1", "-::1"},
		"tls-cert-file": {"/etc/redis/tls/redis node.crt"},
		"tls-key-file":  {"/etc/redis/tls/redis.key"},
		"replicaof":     {"10.0.0.5", "6379"},
		"masterauth":    {`s3cr3t "quoted" pass`},
		"requirepass":   {"Pa55:with#hash"},
		"repl-timeout":  {"120"},
		"maxclients":    {"5000"},
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(ds) != 22 || names[0] != "bind" || names[len(names)-1] != "maxclients" {
		t.Errorf("%d directives: %v", len(ds), names)
	}
}
