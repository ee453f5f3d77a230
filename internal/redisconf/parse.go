// Package redisconf reads and rewrites files in redis.conf's syntax, as Redis's src/config.c
// does: one directive a line, arguments split as sdssplitargs splits them, `include`, and
// CONFIG REWRITE's in-place rewrite. It knows no option names: callers give directives
// their meaning.
package redisconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxIncludeDepth is how deep include directives may nest. Redis has no limit and recurses
// until it crashes on a cycle; a bound turns a cycle or a runaway glob into an error.
const MaxIncludeDepth = 16

// Directive is one configuration line.
type Directive struct {
	Name     string   // the first word, lowercased: names are case-insensitive
	Args     []string // the other words, unquoted
	File     string   // the file the line is in, as named (include paths as written)
	Line     int      // 1-based line number in File
	Text     string   // the line without surrounding blanks, as Redis shows it in errors
	Included bool     // read through an include directive
}

// Errorf returns a FileError about the directive's line.
func (d Directive) Errorf(format string, a ...any) *FileError {
	return &FileError{File: d.File, Line: d.Line, Text: d.Text, Reason: fmt.Sprintf(format, a...), Included: d.Included}
}

// Parse reads the configuration file at path, and the files it includes, into directives
// in the order Redis would apply them. Blank lines and lines starting with '#' are skipped.
//
// `include PATH` is replaced by the directives of PATH, read where the include stands, as in
// Redis: a relative PATH is relative to the working directory (not to the including file),
// and a PATH with * ? or [ is a glob whose files are read in lexical order, none matching
// being no error. Include cycles and nesting past MaxIncludeDepth are errors.
//
// A file that cannot be read is an error wrapping the os error (for path itself) or a
// *FileError naming the include line; a line with unbalanced quotes is a *FileError.
func Parse(path string) ([]Directive, error) {
	p := &parser{}
	if err := p.file(path, nil); err != nil {
		return nil, err
	}
	return p.out, nil
}

type parser struct {
	stack []string // identities of the files being read, outermost first
	out   []Directive
}

// file reads one file; from is the include directive naming it, nil for the top file.
func (p *parser) file(path string, from *Directive) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if from == nil {
			return fmt.Errorf("can't open config file '%s': %w", path, err)
		}
		return from.Errorf("can't open config file '%s': %s", path, osReason(err))
	}
	id := identity(path)
	if slices.Contains(p.stack, id) {
		return from.Errorf("include cycle: '%s' is already being read", path)
	}
	if len(p.stack) > MaxIncludeDepth {
		return from.Errorf("includes nested more than %d deep", MaxIncludeDepth)
	}
	p.stack = append(p.stack, id)
	defer func() { p.stack = p.stack[:len(p.stack)-1] }()

	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.Trim(raw, " \t\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		d := Directive{File: path, Line: i + 1, Text: line, Included: from != nil}
		args, err := SplitArgs(line)
		if err != nil {
			return d.Errorf("Unbalanced quotes in configuration line")
		}
		if len(args) == 0 {
			continue
		}
		d.Name, d.Args = strings.ToLower(args[0]), args[1:]
		if d.Name == "include" {
			if err := p.include(d); err != nil {
				return err
			}
			continue
		}
		p.out = append(p.out, d)
	}
	return nil
}

// include reads the files an include directive names.
func (p *parser) include(d Directive) error {
	if len(d.Args) != 1 {
		return d.Errorf("Bad directive or wrong number of arguments")
	}
	path := d.Args[0]
	if !strings.ContainsAny(path, "*?[") {
		return p.file(path, &d)
	}
	matches, err := filepath.Glob(path)
	if err != nil {
		return d.Errorf("bad include pattern '%s': %v", path, err)
	}
	for _, m := range matches {
		if err := p.file(m, &d); err != nil {
			return err
		}
	}
	return nil
}

// identity names a file for cycle detection: its absolute path with symlinks resolved.
func identity(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		path = r
	}
	if a, err := filepath.Abs(path); err == nil {
		path = a
	}
	return path
}

// osReason is an os error without the path it repeats, as strerror would say it.
func osReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// errUnbalanced is SplitArgs's only error.
var errUnbalanced = errors.New("unbalanced quotes")

// SplitArgs splits a line into arguments as Redis's sdssplitargs does. Words are separated by
// blanks. "Double quotes" take the escapes \n \r \t \b \a \xHH and \<any> for that character;
// 'single quotes' take only \'. Quotes may open inside a word (a"b c" is one argument, "ab c"),
// but a closing quote must be followed by a blank or the end of the line. An unterminated
// quote, or a closing quote followed by something else, is an error.
func SplitArgs(line string) ([]string, error) {
	if i := strings.IndexByte(line, 0); i >= 0 {
		line = line[:i] // C strings end there
	}
	args := []string{}
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, nil
		}
		arg, next, err := splitArg(line, i)
		if err != nil {
			return nil, err
		}
		args = append(args, arg)
		i = next
	}
}

// splitArg reads the argument starting at line[i], returning it and where reading resumes.
func splitArg(line string, i int) (string, int, error) {
	at := func(k int) byte {
		if k < len(line) {
			return line[k]
		}
		return 0
	}
	var cur []byte
	inDouble, inSingle := false, false
	for done := false; !done; {
		c := at(i)
		switch {
		case inDouble && c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
			cur = append(cur, unhex(at(i+2))<<4|unhex(at(i+3)))
			i += 3
		case inDouble && c == '\\' && at(i+1) != 0:
			i++
			cur = append(cur, unescape(line[i]))
		case inSingle && c == '\\' && at(i+1) == '\'':
			i++
			cur = append(cur, '\'')
		case inDouble && c == '"', inSingle && c == '\'':
			if n := at(i + 1); n != 0 && !isSpace(n) {
				return "", 0, errUnbalanced
			}
			done = true
		case (inDouble || inSingle) && c == 0:
			return "", 0, errUnbalanced
		case inDouble || inSingle:
			cur = append(cur, c)
		case c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0:
			done = true
		case c == '"':
			inDouble = true
		case c == '\'':
			inSingle = true
		default:
			cur = append(cur, c)
		}
		if c != 0 {
			i++
		}
	}
	return string(cur), i, nil
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
