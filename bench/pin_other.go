//go:build !linux

package main

import "errors"

var errNoAffinity = errors.New("CPU affinity is only implemented on Linux")

func getAffinity(tid int) (cpuMask, error) { return cpuMask{}, errNoAffinity }
func pinProcess(pid int, m cpuMask) error  { return errNoAffinity }
func checkPinned(pid int, m cpuMask) error { return errNoAffinity }
