package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/psync-proxy/psync-proxy/internal/redistest"
)

// CPU placement (-pin). In production the master has its own host, and so do its clients,
// replicas and the proxy. On a small machine they share the CPUs, so the scheduler can give
// the master's time to the proxy and the replicas, which hides the work the proxy saves the
// master (writing the stream to one link instead of N). -pin gives the master the first CPU
// the harness may use and everything else the others, identically in every topology:
//
//   - pinMasterClient (the default): the master and redis-benchmark, which loads it, share the
//     first CPU; the replicas, the tier (psync-proxy or the chained replica) and this process
//     (which runs the latency probes and the outage writer) use the others. That CPU then
//     does the same client work in every topology plus the master's, and the master's saving
//     is all that can change its ops/s: replicas and tier cannot take its time, nor starve
//     the client feeding it.
//   - pinMaster: the master alone on the first CPU, redis-benchmark with the rest. On two
//     CPUs the N replicas then starve redis-benchmark, the master idles, and the ops/s measure
//     how CPU 1 is shared, where the proxy's CPU comes straight out of the client's.
//   - pinOff: everything may run anywhere, as before.
//
// The harness pins all its threads to the other CPUs when a scenario with a master starts,
// so every child it starts copies that mask; the master is then moved to its CPU right after
// it answers PING (Redis 7 has started its threads by then, and the children it forks for
// full syncs copy its mask). With pinMasterClient the harness moves itself to the master's
// CPU only to start redis-benchmark (in steady, until it ends, while the harness just waits
// for it). The forward scenario has no redis-server: its synthetic upstream, relay and sinks
// live in this process, so it runs unpinned, on every CPU. So does fullsync: it measures one
// sender and one reader at a time, the master's sync being one of three senders, and each
// gets the whole machine.
const (
	pinMasterClient = "master+client"
	pinMaster       = "master"
	pinOff          = "off"
)

// cpuMask is a Linux cpu_set_t for up to 1024 CPUs.
type cpuMask [16]uint64

func (m *cpuMask) set(cpu int)      { m[cpu/64] |= 1 << (cpu % 64) }
func (m *cpuMask) has(cpu int) bool { return m[cpu/64]&(1<<(cpu%64)) != 0 }

// cpus lists the CPUs in the mask.
func (m *cpuMask) cpus() []int {
	var out []int
	for cpu := 0; cpu < len(m)*64; cpu++ {
		if m.has(cpu) {
			out = append(out, cpu)
		}
	}
	return out
}

// String is a CPU list as taskset -c writes it, e.g. "1" or "1-3".
func (m cpuMask) String() string {
	cpus := m.cpus()
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, strconv.Itoa(cpus[i])+"-"+strconv.Itoa(cpus[j]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// pinPlan is how processes are placed for this invocation.
type pinPlan struct {
	on     bool    // master and the rest on separate CPUs
	all    cpuMask // every CPU the harness may use (restored for unpinned scenarios)
	master cpuMask // the first of those
	others cpuMask // the rest
	client cpuMask // where redis-benchmark runs: master's or others
	desc   string  // for the report's machine line
}

// planPinning splits the CPUs the harness may use (the machine's, or what a cpuset or
// taskset around it allows) into the master's (the lowest) and everyone else's. With mode
// pinOff, a single CPU or without sched_setaffinity, it says so and pins nothing.
func planPinning(mode string) (pinPlan, error) {
	switch mode {
	case pinMasterClient, pinMaster, pinOff:
	default:
		return pinPlan{}, fmt.Errorf("-pin %q: want %s, %s or %s", mode, pinMasterClient, pinMaster, pinOff)
	}
	all, err := getAffinity(0)
	if err != nil {
		return pinPlan{desc: fmt.Sprintf("unpinned (CPU affinity unavailable: %v)", err)}, nil
	}
	p := pinPlan{all: all}
	cpus := all.cpus()
	switch {
	case mode == pinOff:
		p.desc = fmt.Sprintf("unpinned (-pin %s): every process may run on CPUs %s", pinOff, all)
		return p, nil
	case len(cpus) < 2:
		p.desc = fmt.Sprintf("unpinned: only CPU %s is available, so the master cannot have one of its own", all)
		return p, nil
	}
	p.master.set(cpus[0])
	for _, c := range cpus[1:] {
		p.others.set(c)
	}
	p.on = true
	if mode == pinMasterClient {
		p.client = p.master
		p.desc = fmt.Sprintf("pinned (-pin %s): master redis-server and redis-benchmark on CPU %s; replicas, psync-proxy and the harness on CPU %s", mode, p.master, p.others)
	} else {
		p.client = p.others
		p.desc = fmt.Sprintf("pinned (-pin %s): master redis-server alone on CPU %s; redis-benchmark, replicas, psync-proxy and the harness on CPU %s", mode, p.master, p.others)
	}
	p.desc += ", in every topology (fullsync and forward unpinned: no master of their own on a CPU)"
	return p, nil
}

// pinHarness places this process for scenario s: on the non-master CPUs if s has a master
// and pinning is on, else on every CPU. Children started afterwards copy its mask.
func (e *env) pinHarness(s scenario) error {
	if !e.pin.on {
		return nil
	}
	m := e.pin.all
	if s.master {
		m = e.pin.others
	}
	if err := pinProcess(os.Getpid(), m); err != nil {
		return fmt.Errorf("pin the harness to CPUs %s: %w", m, err)
	}
	return nil
}

// pinMaster moves a just-started master redis-server to its own CPU and checks that it and
// the harness are where the plan puts them.
func (r *run) pinMaster(s *redistest.Server) {
	if !r.e.pin.on {
		return
	}
	if err := pinProcess(s.PID(), r.e.pin.master); err != nil {
		r.Fatalf("pin the master (pid %d) to CPU %s: %v", s.PID(), r.e.pin.master, err)
	}
	r.checkPinned("master redis-server", s.PID(), r.e.pin.master)
	r.checkPinned("harness", os.Getpid(), r.e.pin.others)
}

// checkPinned Fatals unless every thread of pid may run on exactly the CPUs of m (when
// pinning is on), so a child that escaped the plan cannot report figures.
func (r *run) checkPinned(what string, pid int, m cpuMask) {
	if !r.e.pin.on {
		return
	}
	if err := checkPinned(pid, m); err != nil {
		r.Fatalf("%s is not pinned as planned: %v", what, err)
	}
}

// asClient runs fn, which starts redis-benchmark, with this process pinned to the client's
// CPUs, so that the children fn starts run there, then pins it back to the other CPUs.
func (r *run) asClient(fn func()) {
	p := r.e.pin
	if !p.on || p.client == p.others {
		fn()
		return
	}
	if err := pinProcess(os.Getpid(), p.client); err != nil {
		r.Fatalf("pin the harness to CPUs %s: %v", p.client, err)
	}
	defer func() {
		if err := pinProcess(os.Getpid(), p.others); err != nil {
			r.Fatalf("pin the harness back to CPUs %s: %v", p.others, err)
		}
	}()
	fn()
}
