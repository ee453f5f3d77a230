package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/psync-proxy/psync-proxy/internal/redisconf"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// The config file, as redis-server's: `psync-proxy /etc/psync-proxy.conf [--flags]`. Its
// directives are Redis's names where Redis has the option (redisOptions), every other flag
// by its own name, and a few redis.conf directives accepted and ignored with a warning
// (ignoredDirective). Anything else is fatal, as in Redis.

// confFileArg splits off the config file: the first argument, when it does not start with "-".
func confFileArg(args []string) (file string, rest []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

// confOpenError is a config file that cannot be read: fatal, as in Redis.
type confOpenError struct{ err error }

func (e *confOpenError) Error() string { return "Fatal error, " + e.err.Error() }
func (e *confOpenError) Unwrap() error { return e.err }

// confLoader applies a config file's directives to the flags.
type confLoader struct {
	o       *options
	fs      *flag.FlagSet
	cmdline map[string]bool // flags set on the command line: they win over the file
}

// loadConfFile applies the config file at path to the flags the command line left unset
// (flags that repeat, --user, take both). The first bad line is a *redisconf.FileError.
func (o *options) loadConfFile(fs *flag.FlagSet, path string) error {
	ds, err := redisconf.Parse(path)
	var fe *redisconf.FileError
	if err != nil && !errors.As(err, &fe) {
		return &confOpenError{err}
	}
	if err != nil {
		return err
	}
	c := &confLoader{o: o, fs: fs, cmdline: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { c.cmdline[f.Name] = true })
	o.confFile, o.origin = path, map[string]redisconf.Directive{}
	for _, d := range ds {
		if err := c.apply(d); err != nil {
			return err
		}
	}
	return nil
}

func (c *confLoader) apply(d redisconf.Directive) error {
	if r, ok := lookupRedisOption(d.Name); ok {
		return r.apply(c, d, r.flag)
	}
	if d.Name == "daemonize" {
		return checkDaemonize(d)
	}
	if why := ignoredDirective(d.Name); why != "" {
		c.o.warnings = append(c.o.warnings, fmt.Sprintf("Ignoring '%s' at line %d of %s: %s", d.Text, d.Line, d.File, why))
		return nil
	}
	f := c.fs.Lookup(d.Name)
	if f == nil || d.Name == "version" {
		return d.Errorf("Bad directive or wrong number of arguments")
	}
	if names := redisNamesOf(f.Name); len(names) > 0 {
		return d.Errorf("Bad directive or wrong number of arguments: in a config file --%s is %s", f.Name, strings.Join(names, " and "))
	}
	return applyFlag(c, d, f.Name)
}

// applyFlag sets flag name from a directive of one argument, checked as the flag's kind.
func applyFlag(c *confLoader, d redisconf.Directive, name string) error {
	if len(d.Args) != 1 {
		return d.Errorf("wrong number of arguments")
	}
	f := c.fs.Lookup(name)
	v, err := checkValue(f, d.Args[0])
	if err != nil {
		return d.Errorf("%v", err)
	}
	return c.set(d, name, v)
}

// set sets a flag from a directive, unless the command line set it.
func (c *confLoader) set(d redisconf.Directive, name, value string) error {
	if c.cmdline[name] && !repeatable(c.fs.Lookup(name)) {
		return nil
	}
	if err := c.fs.Set(name, value); err != nil {
		return d.Errorf("%v", err)
	}
	c.o.origin[name] = d
	return nil
}

// repeatable reports whether a flag collects a list (its usage says so), like --user.
func repeatable(f *flag.Flag) bool { return strings.Contains(f.Usage, "(repeatable)") }

// checkValue checks a directive's value as Redis checks a config's type, with Redis's
// messages, and returns it as the flag takes it. The kind comes from the flag: its Go type,
// and the name in backquotes in its usage: `size`, or alternatives such as `yes|no`, matched
// case-insensitively as Redis matches enums.
func checkValue(f *flag.Flag, v string) (string, error) {
	kind, _ := flag.UnquoteUsage(f)
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case bool:
			kind = "yes|no"
		case int, int64, uint, uint64:
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return "", errors.New("argument couldn't be parsed into an integer")
			}
		}
	}
	switch {
	case kind == "size":
		if _, err := proxy.ParseSize(v); err != nil {
			return "", errors.New("argument must be a memory value")
		}
	case kind == "yes|no" && !slices.Contains([]string{"yes", "no"}, strings.ToLower(v)):
		return "", errors.New("argument must be 'yes' or 'no'")
	case strings.Contains(kind, "|"):
		alts := strings.Split(kind, "|")
		if !slices.Contains(alts, strings.ToLower(v)) {
			return "", fmt.Errorf("argument(s) must be one of the following: %s", strings.Join(alts, ", "))
		}
		v = strings.ToLower(v)
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			v = strconv.FormatBool(v == "yes")
		}
	}
	return v, nil
}

// fileError points an error about an option at the config file line that set it, if a line
// did: options.config's checks name flags ("--repl-timeout must be at least 1 second"), and
// the operator wrote "repl-timeout 0" at line 12. The error then names options as the file
// does. Other errors are returned as they are.
func (o *options) fileError(err error) error {
	fs := (&options{}).flagSet(io.Discard)
	var src *redisconf.Directive
	var b strings.Builder
	rest := err.Error()
	for i := strings.Index(rest, "--"); i >= 0; i = strings.Index(rest, "--") {
		j := i + 2
		for j < len(rest) && (rest[j] == '-' || rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= '0' && rest[j] <= '9') {
			j++
		}
		name := rest[i+2 : j]
		b.WriteString(rest[:i])
		rest = rest[j:]
		if fs.Lookup(name) == nil {
			b.WriteString("--" + name)
			continue
		}
		if d, ok := o.origin[name]; ok && src == nil {
			src = &d
		}
		b.WriteString(directiveName(name))
	}
	if src == nil {
		return err
	}
	b.WriteString(rest)
	return src.Errorf("%s", b.String())
}

// directiveName is what a config file calls a flag: its Redis name, or its own; --listen,
// which is bind and port, keeps its flag name.
func directiveName(flag string) string {
	switch names := redisNamesOf(flag); len(names) {
	case 0:
		return flag
	case 1:
		return names[0]
	}
	return "--" + flag
}

// reportOptionsError prints an error in the options and returns the exit code: a config file's
// as Redis prints it, with Redis's exit code 1; the command line's with 2.
func reportOptionsError(w io.Writer, err error) int {
	var fe *redisconf.FileError
	var oe *confOpenError
	switch {
	case errors.As(err, &fe):
		fe.Program = "psync-proxy " + proxy.Version
		fmt.Fprintf(w, "\n%s\n", fe)
		return 1
	case errors.As(err, &oe):
		var pe *fs.PathError
		if errors.As(err, &pe) {
			fmt.Fprintf(w, "Fatal error, can't open config file '%s': %v\n", pe.Path, pe.Err)
		} else {
			fmt.Fprintln(w, oe)
		}
		return 1
	}
	fmt.Fprintln(w, "psync-proxy:", err)
	return 2
}

// splitListen returns --listen's host and port, or loopback and 6380 when it does not parse.
func splitListen(listen string) (host, port string) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "127.0.0.1", "6380"
	}
	return host, port
}
