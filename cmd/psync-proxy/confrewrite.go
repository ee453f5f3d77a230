package main

import (
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/psync-proxy/psync-proxy/internal/redisconf"
	"github.com/psync-proxy/psync-proxy/proxy"
)

// rewriteConfFile rewrites the config file at path with live, the proxy's live values by
// directive name, as CONFIG REWRITE does (see redisconf.Rewrite): "replicaof" ->
// ["10.0.0.5", "6379"], "bind" -> ["0.0.0.0"], "repl-backlog-size" -> ["1gb"] (any size
// Redis reads; written as 1gb), "user" -> one name:password:perms per user. An empty value
// removes the option's lines (replicaof with no master). Options missing from live keep their
// lines; an ignored redis.conf directive (replica-priority) is skipped; any other unknown
// name is an error. The file is replaced atomically; included files are left alone.
func rewriteConfFile(path string, live map[string][]string) error {
	specs := confOptions()
	known := map[string]bool{}
	var opts []redisconf.Option
	for _, s := range specs {
		known[s.Name] = true
		v, ok := live[s.Name]
		if !ok {
			continue
		}
		values, err := s.values(v)
		if err != nil {
			return fmt.Errorf("config rewrite: %s: %w", s.Name, err)
		}
		s.Values = values
		opts = append(opts, s.Option)
	}
	for name := range live {
		if !known[name] && ignoredDirective(name) == "" {
			return fmt.Errorf("config rewrite: unknown option %q", name)
		}
	}
	return redisconf.Rewrite(path, opts)
}

// confOption is an option as a config file writes it.
type confOption struct {
	redisconf.Option
	nargs int  // arguments of its line: 1, 2 (replicaof), or 0 for one or more (bind)
	list  bool // one line per value (user)
	size  bool // a size, written in CONFIG REWRITE's units
}

// confOptions lists every directive that sets an option, with its default: Redis's names
// first, then the other flags by name.
func confOptions() []confOption {
	fs := (&options{}).flagSet(io.Discard)
	var specs []confOption
	for _, r := range redisOptions() {
		if r.alias != "" {
			continue
		}
		f := fs.Lookup(r.flag)
		s := confOption{Option: redisconf.Option{Name: r.name}, nargs: 1, list: repeatable(f), size: isSize(f)}
		for _, a := range redisOptions() {
			if a.alias == r.name {
				s.Aliases = append(s.Aliases, a.name)
			}
		}
		switch r.name {
		case "replicaof":
			s.nargs = 2
		case "bind":
			s.nargs = 0
		}
		if r.args != nil {
			if d := r.args(f.DefValue); d != nil {
				s.Default = [][]string{d}
			}
		}
		specs = append(specs, s)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := lookupRedisOption(f.Name); ok || f.Name == "version" || len(redisNamesOf(f.Name)) > 0 {
			return
		}
		s := confOption{Option: redisconf.Option{Name: f.Name}, nargs: 1, list: repeatable(f), size: isSize(f)}
		if !s.list {
			s.Default = [][]string{{f.DefValue}}
		}
		specs = append(specs, s)
	})
	for i := range specs {
		if specs[i].size && len(specs[i].Default) == 1 {
			specs[i].Default, _ = specs[i].values(specs[i].Default[0])
		}
	}
	return specs
}

func isSize(f *flag.Flag) bool {
	kind, _ := flag.UnquoteUsage(f)
	return kind == "size"
}

// values turns a live value into the lines of the option.
func (s confOption) values(v []string) ([][]string, error) {
	switch {
	case len(v) == 0:
		return nil, nil
	case s.list:
		var lines [][]string
		for _, e := range v {
			lines = append(lines, []string{e})
		}
		return lines, nil
	case s.nargs != 0 && len(v) != s.nargs:
		return nil, fmt.Errorf("%d arguments, want %d", len(v), s.nargs)
	}
	v = slices.Clone(v)
	if s.size {
		for i, a := range v {
			n, err := proxy.ParseSize(a)
			if err != nil {
				return nil, err
			}
			v[i] = redisconf.FormatSize(n)
		}
	}
	return [][]string{v}, nil
}
