package redisconf

import (
	"fmt"
	"strings"
)

// FileError is a bad configuration line. Its Error is the block Redis prints before exiting
// (loadServerConfigFromString in config.c), so operators recognise it:
//
//	*** FATAL CONFIG FILE ERROR (Redis 8.8.0) ***
//	Reading the configuration file, at line 3
//	>>> 'repl-timeout zero'
//	argument couldn't be parsed into an integer
//
// Redis prints an empty line before it. For a line of an included file the second line also
// names the file, which Redis does not.
type FileError struct {
	Program  string // "psync-proxy 1.2.0" in the header; "" leaves the parenthesis out
	File     string
	Line     int // 0: not about a line; the two middle lines are left out, as in Redis
	Text     string
	Reason   string
	Included bool // File was read through an include directive
}

func (e *FileError) Error() string {
	var b strings.Builder
	if e.Program != "" {
		fmt.Fprintf(&b, "*** FATAL CONFIG FILE ERROR (%s) ***\n", e.Program)
	} else {
		b.WriteString("*** FATAL CONFIG FILE ERROR ***\n")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "Reading the configuration file, at line %d", e.Line)
		if e.Included {
			fmt.Fprintf(&b, " of included file '%s'", e.File)
		}
		fmt.Fprintf(&b, "\n>>> '%s'\n", e.Text)
	}
	b.WriteString(e.Reason)
	return b.String()
}
