package clientport

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1", 1, false}, {"100b", 100, false}, {"1k", 1000, false}, {"1kb", 1024, false},
		{"1KB", 1024, false}, {"2m", 2000000, false}, {"512mb", 512 << 20, false},
		{"1g", 1000000000, false}, {"4gb", 4 << 30, false}, {" 16mb ", 16 << 20, false},
		{"", 0, true}, {"mb", 0, true}, {"1.5gb", 0, true}, {"-1", 0, true}, {"1tb", 0, true},
		{"99999999999999999999", 0, true}, {"9999999999gb", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
