package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// getAffinity is sched_getaffinity(2) of one thread (0: the calling thread).
func getAffinity(tid int) (cpuMask, error) {
	var m cpuMask
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	if errno != 0 {
		return m, errno
	}
	return m, nil
}

// setAffinity is sched_setaffinity(2) of one thread.
func setAffinity(tid int, m cpuMask) error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	if errno != 0 {
		return errno
	}
	return nil
}

// pinProcess sets the affinity of every thread of pid. sched_setaffinity applies to one
// thread, and a thread created meanwhile copies its creator's old mask, so it repeats until
// a pass finds every thread already pinned. Children forked later copy the mask of the
// thread that forks them, so they are pinned too.
func pinProcess(pid int, m cpuMask) error {
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		changed := false
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if cur, err := getAffinity(tid); err == nil && cur == m {
				continue
			}
			if err := setAffinity(tid, m); err != nil && err != syscall.ESRCH { // ESRCH: the thread ended
				return fmt.Errorf("sched_setaffinity(%d): %w", tid, err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("threads of pid %d kept appearing while pinning them", pid)
}

// checkPinned returns an error unless every thread of pid has exactly the mask m.
func checkPinned(pid int, m cpuMask) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		cur, err := getAffinity(tid)
		if err == syscall.ESRCH {
			continue
		}
		if err != nil {
			return fmt.Errorf("sched_getaffinity(%d): %w", tid, err)
		}
		if cur != m {
			return fmt.Errorf("thread %d of pid %d may run on CPUs %v, want %v", tid, pid, cur.cpus(), m.cpus())
		}
	}
	return nil
}
