package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/psync-proxy/psync-proxy/bench/redistest"
)

// With -pin, the master redis-server gets a CPU of its own and everything else (this
// process, which also runs the latency probes, and the children it starts: redis-benchmark,
// the replicas, psync-proxy) shares the other CPUs, in both topologies alike. In production
// the master has its own host; on a small machine without pinning, whatever CPU the proxy
// uses is partly taken from the master, which hides the work the proxy saves it (writing
// the stream to one link instead of N).
//
// The harness pins itself, every thread, to the other CPUs when a scenario with a master
// starts, so every child it starts copies that mask; the master alone is then moved to its
// CPU, right after it answers PING (Redis 7 has started its threads by then, and the
// children it forks for full syncs copy its mask). The forward scenario has no
// redis-server: its synthetic upstream, relay and sinks live in this process, so it runs
// unpinned, on every CPU, with or without -pin.

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
	desc   string  // for the report's machine line
}

// planPinning splits the CPUs the harness may use (the machine's, or what a cpuset or
// taskset around it allows) into the master's (the lowest) and everyone else's. Without
// -pin, with a single CPU or without sched_setaffinity, it says so and pins nothing.
func planPinning(want bool) pinPlan {
	all, err := getAffinity(0)
	if err != nil {
		return pinPlan{desc: fmt.Sprintf("unpinned (CPU affinity unavailable: %v)", err)}
	}
	p := pinPlan{all: all}
	cpus := all.cpus()
	switch {
	case !want:
		p.desc = fmt.Sprintf("unpinned (-pin=false): every process may run on CPUs %s", all)
		return p
	case len(cpus) < 2:
		p.desc = fmt.Sprintf("unpinned: only CPU %s is available, so the master cannot have one of its own", all)
		return p
	}
	p.master.set(cpus[0])
	for _, c := range cpus[1:] {
		p.others.set(c)
	}
	p.on = true
	p.desc = fmt.Sprintf("pinned (-pin): master redis-server on CPU %s; harness, redis-benchmark, replicas and psync-proxy on CPU %s, in both topologies (forward scenario unpinned: it has no master)", p.master, p.others)
	return p
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
