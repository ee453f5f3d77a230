package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/psync-proxy/psync-proxy/internal/redisconf"
	"github.com/psync-proxy/psync-proxy/resp"
)

// psync-proxy --advise [options] HOST:PORT does what the troubleshooting guide's shell script
// does by hand: read INFO replication of a live master (or replica, or proxy), wait, read it
// again, and turn the growth of master_repl_offset into a write rate and the backlog size
// that survives an outage of 5 and 10 minutes (rate x outage), with the guide's checks: a
// full backlog, a link down, lagging replicas.

// isAdvise reports whether the command line asks for --advise (its first argument).
func isAdvise(args []string) bool {
	return len(args) > 0 && (args[0] == "--advise" || args[0] == "-advise")
}

// adviseOptions are --advise's flags.
type adviseOptions struct {
	addr       string
	seconds    float64
	user, pass string
	outage     time.Duration
}

// advise runs --advise: the report goes to stdout, progress and errors to stderr.
func advise(args []string, stdout, stderr io.Writer) int {
	o, err := parseAdvise(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "psync-proxy --advise:", err)
		return 2
	}
	a, b, err := sampleTwice(o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "psync-proxy --advise:", err)
		return 1
	}
	rep, err := newAdvice(o, a, b)
	if err != nil {
		fmt.Fprintln(stderr, "psync-proxy --advise:", err)
		return 1
	}
	rep.write(stdout)
	return 0
}

func parseAdvise(args []string, stderr io.Writer) (*adviseOptions, error) {
	o := &adviseOptions{}
	fs := flag.NewFlagSet("psync-proxy --advise", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: psync-proxy --advise [options] [HOST:PORT]\n\n"+
			"Samples master_repl_offset of a live master, replica or psync-proxy (default 127.0.0.1:6379)\n"+
			"twice, and prints the write rate, what the backlog covers at that rate, and the\n"+
			"repl-backlog-size that survives a 5 and a 10 minute outage (rate x outage).\n\nOptions:\n")
		fs.PrintDefaults()
	}
	fs.Float64Var(&o.seconds, "seconds", 60, "how long to sample, in `seconds` (the guide measures a minute)")
	fs.StringVar(&o.user, "user", "", "ACL `user` to AUTH as")
	fs.StringVar(&o.pass, "pass", "", "`password` to AUTH with (also $REDISCLI_AUTH)")
	fs.DurationVar(&o.outage, "outage", 0, "size the backlog for this outage too (`duration`, e.g. 30m)")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	switch fs.NArg() {
	case 0:
		o.addr = "127.0.0.1:6379"
	case 1:
		o.addr = fs.Arg(0)
	default:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(1))
	}
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return nil, fmt.Errorf("address %q: want HOST:PORT", o.addr)
	}
	if o.seconds < 1 {
		return nil, errors.New("--seconds must be at least 1")
	}
	if o.pass == "" {
		o.pass = os.Getenv("REDISCLI_AUTH")
	}
	return o, nil
}

// infoSample is one INFO read and when it was taken.
type infoSample struct {
	at     time.Time
	fields map[string]string
}

// sampleTwice reads INFO, waits o.seconds, and reads it again on the same connection.
func sampleTwice(o *adviseOptions, progress io.Writer) (a, b infoSample, err error) {
	c, err := dialInfo(o)
	if err != nil {
		return a, b, err
	}
	defer c.close()
	if a, err = c.info(); err != nil {
		return a, b, err
	}
	if _, ok := a.fields["master_repl_offset"]; !ok {
		return a, b, fmt.Errorf("%s: INFO has no master_repl_offset (is it a Redis server?)", o.addr)
	}
	end := a.at.Add(time.Duration(o.seconds * float64(time.Second)))
	for now := time.Now(); now.Before(end); now = time.Now() {
		fmt.Fprintf(progress, "\rSampling %s: %.0f s left ", o.addr, end.Sub(now).Seconds())
		time.Sleep(min(end.Sub(now), time.Second))
	}
	fmt.Fprintln(progress)
	b, err = c.info()
	return a, b, err
}

// infoConn is the one connection --advise needs.
type infoConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialInfo(o *adviseOptions) (*infoConn, error) {
	nc, err := net.DialTimeout("tcp", o.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &infoConn{nc: nc, br: bufio.NewReaderSize(nc, 1<<20)} // INFO of a master with many replicas is large
	if o.pass != "" {
		args := []string{"AUTH", o.pass}
		if o.user != "" {
			args = []string{"AUTH", o.user, o.pass}
		}
		if _, err := c.do(args...); err != nil {
			nc.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

func (c *infoConn) close() { c.nc.Close() }

func (c *infoConn) do(args ...string) (string, error) {
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(resp.AppendCommand(nil, args...)); err != nil {
		return "", err
	}
	v, err := resp.ReadValue(c.br, resp.DefaultLimits())
	if err != nil {
		return "", err
	}
	if e := v.Error(); e != nil {
		return "", e
	}
	return v.String(), nil
}

func (c *infoConn) info() (infoSample, error) {
	text, err := c.do("INFO")
	if err != nil {
		return infoSample{}, fmt.Errorf("INFO: %w", err)
	}
	return infoSample{at: time.Now(), fields: parseInfoText(text)}, nil
}

func parseInfoText(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

// advice is --advise's report.
type advice struct {
	o          *adviseOptions
	a, b       infoSample
	elapsed    float64
	bytes      int64
	rate       float64
	size, held int64
}

func newAdvice(o *adviseOptions, a, b infoSample) (*advice, error) {
	num := func(s infoSample, k string) int64 {
		n, _ := strconv.ParseInt(s.fields[k], 10, 64)
		return n
	}
	if ra, rb := a.fields["master_replid"], b.fields["master_replid"]; ra != rb && a.fields["master_replid2"] != rb && b.fields["master_replid2"] != ra {
		return nil, fmt.Errorf("the replication history changed while sampling (master_replid %s, then %s): offsets cannot be compared; run it again", ra, rb)
	}
	r := &advice{o: o, a: a, b: b, elapsed: b.at.Sub(a.at).Seconds(),
		bytes: num(b, "master_repl_offset") - num(a, "master_repl_offset"),
		size:  num(b, "repl_backlog_size"), held: num(b, "repl_backlog_histlen")}
	if r.bytes < 0 {
		return nil, fmt.Errorf("master_repl_offset went back (%d bytes) while sampling: run it again", r.bytes)
	}
	r.rate = float64(r.bytes) / r.elapsed
	return r, nil
}

func (r *advice) write(w io.Writer) {
	f := r.b.fields
	what := "redis " + f["redis_version"]
	if v := f["valkey_version"]; v != "" {
		what = "valkey " + v
	}
	if v := f["psync_proxy_version"]; v != "" {
		what = "psync-proxy " + v
	}
	fmt.Fprintf(w, "%s (%s, role %s), sampled for %.1f s\n\n", r.o.addr, what, f["role"], r.elapsed)
	fmt.Fprintf(w, "Write rate: %s/s (%s a minute), master_repl_offset %s -> %s\n",
		human(r.rate), human(r.rate*60), r.a.fields["master_repl_offset"], f["master_repl_offset"])
	full := ""
	if r.size > 0 && r.held >= r.size {
		full = ", full"
	}
	fmt.Fprintf(w, "Backlog: repl_backlog_size %s, holding %s%s\n", human(float64(r.size)), human(float64(r.held)), full)
	if r.rate > 0 {
		fmt.Fprintf(w, "  At this rate a full backlog covers %s of outage: a replica away longer needs a full resync.\n",
			duration(float64(r.size)/r.rate))
	} else {
		fmt.Fprintln(w, "  No writes while sampling: sample again under a typical (or peak) load.")
	}
	fmt.Fprintln(w, "\nrepl-backlog-size for the longest outage to survive (write rate x outage):")
	outages := []time.Duration{5 * time.Minute, 10 * time.Minute}
	if r.o.outage > 0 {
		outages = append(outages, r.o.outage)
	}
	for _, d := range outages {
		need := int64(math.Ceil(r.rate * d.Seconds()))
		fmt.Fprintf(w, "  %-8s %-10s repl-backlog-size %s\n", outageName(d)+":", human(float64(need)), confSize(need))
	}
	fmt.Fprintln(w, "  Through psync-proxy: --backlog-size (repl-backlog-size in its config file) in RAM, or on disk with")
	fmt.Fprintln(w, "  --backlog-mode disk when that is more than the RAM to spare; the master keeps its own small backlog.")
	r.checks(w)
}

// checks prints the guide's alerts: a full backlog, the link to the master, replicas' lag.
func (r *advice) checks(w io.Writer) {
	f := r.b.fields
	fmt.Fprintln(w, "\nChecks:")
	if r.size > 0 && r.held >= r.size {
		cover := "no writes to measure it by"
		if r.rate > 0 {
			cover = "longer than " + duration(float64(r.size)/r.rate) + " at this rate"
		}
		fmt.Fprintf(w, "  [!] the backlog is full (repl_backlog_histlen >= repl_backlog_size): an outage %s costs a full resync\n", cover)
	} else {
		fmt.Fprintln(w, "  [ok] the backlog is not full yet")
	}
	if f["role"] == "slave" {
		if st := f["master_link_status"]; st != "up" {
			fmt.Fprintf(w, "  [!] master_link_status is %s (down for %s s)\n", st, f["master_link_down_since_seconds"])
		} else {
			fmt.Fprintf(w, "  [ok] master_link_status up (%s:%s)\n", f["master_host"], f["master_port"])
		}
	}
	var names []string
	for k := range f {
		if strings.HasPrefix(k, "slave") && strings.Contains(f[k], "ip=") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		kv := map[string]string{}
		for _, p := range strings.Split(f[k], ",") {
			if a, b, ok := strings.Cut(p, "="); ok {
				kv[a] = b
			}
		}
		lag, _ := strconv.Atoi(kv["lag"])
		mark := "ok"
		if lag > 10 || kv["state"] != "online" {
			mark = "!"
		}
		fmt.Fprintf(w, "  [%s] replica %s:%s %s, lag %d s\n", mark, kv["ip"], kv["port"], kv["state"], lag)
	}
	if cov := f["backlog_coverage_seconds"]; cov != "" {
		fmt.Fprintf(w, "  [i] the proxy's own figures: backlog_write_rate_bytes_per_sec %s, backlog_coverage_seconds %s\n",
			f["backlog_write_rate_bytes_per_sec"], cov)
	}
}

// human formats bytes as 1.50 MB (binary units, as Redis's sizes).
func human(n float64) string {
	units := []string{"B", "KB", "MB", "GB", "TB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.2f %s", n, units[i])
}

// confSize is a size for a config file, rounded up to a whole mb (at least 1mb, Redis's default).
func confSize(n int64) string {
	mb := max((n+(1<<20)-1)>>20, 1)
	return redisconf.FormatSize(mb << 20)
}

// outageName is 5 min, 10 min, 1 h, or the duration as Go writes it.
func outageName(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}

func duration(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(100 * time.Millisecond).String()
}
