package clientport

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a size the way redis.conf does (src/util.c memtoull): a plain number of
// bytes, or a number followed by k, kb, m, mb, g or gb, case-insensitively, where k = 1000 and
// kb = 1024 and so on.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes, optionally followed by k, kb, m, mb, g or gb", s)
	}
	var mul int64
	switch t[i:] {
	case "", "b":
		mul = 1
	case "k":
		mul = 1000
	case "kb":
		mul = 1 << 10
	case "m":
		mul = 1000 * 1000
	case "mb":
		mul = 1 << 20
	case "g":
		mul = 1000 * 1000 * 1000
	case "gb":
		mul = 1 << 30
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q", s, t[i:])
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > (1<<62)/mul {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return n * mul, nil
}
