package main

import (
	"os"
	"runtime"
	"testing"
)

func TestCPUMaskString(t *testing.T) {
	for _, c := range []struct {
		cpus []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{1}, "1"},
		{[]int{1, 2, 3}, "1-3"},
		{[]int{0, 2, 3, 5, 64, 65}, "0,2-3,5,64-65"},
	} {
		var m cpuMask
		for _, cpu := range c.cpus {
			m.set(cpu)
		}
		if got := m.String(); got != c.want {
			t.Errorf("%v: got %q, want %q", c.cpus, got, c.want)
		}
	}
}

func TestPlanPinning(t *testing.T) {
	if _, err := planPinning("sometimes"); err == nil {
		t.Fatal("unknown -pin mode accepted")
	}
	off, err := planPinning(pinOff)
	if err != nil || off.on {
		t.Fatalf("-pin off planned pinning: %+v, %v", off, err)
	}
	alone, err := planPinning(pinMaster)
	if err != nil {
		t.Fatal(err)
	}
	if alone.on && alone.client != alone.others {
		t.Fatalf("-pin master puts the client with the master: %+v", alone)
	}
	p, err := planPinning(pinMasterClient)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "linux" || len(p.all.cpus()) < 2 {
		if p.on {
			t.Fatalf("pinning planned without two CPUs: %+v", p)
		}
		t.Skipf("no pinning here: %s", p.desc)
	}
	if !p.on || p.client != p.master || len(p.master.cpus()) != 1 || p.master.cpus()[0] != p.all.cpus()[0] {
		t.Fatalf("plan %+v", p)
	}
	for i := range p.all {
		if p.master[i]&p.others[i] != 0 || p.master[i]|p.others[i] != p.all[i] {
			t.Fatalf("master %s and others %s do not split %s", p.master, p.others, p.all)
		}
	}
}

// TestPinProcess pins every thread of the test binary to the non-master CPUs, checks it, and
// restores the full mask.
func TestPinProcess(t *testing.T) {
	p, _ := planPinning(pinMasterClient)
	if !p.on {
		t.Skip(p.desc)
	}
	defer func() {
		if err := pinProcess(os.Getpid(), p.all); err != nil {
			t.Fatalf("restore: %v", err)
		}
	}()
	if err := pinProcess(os.Getpid(), p.others); err != nil {
		t.Fatal(err)
	}
	if err := checkPinned(os.Getpid(), p.others); err != nil {
		t.Fatal(err)
	}
}
