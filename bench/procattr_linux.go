package main

import "syscall"

// procAttr makes a child die with the harness, so a bench killed mid-run leaves no proxy behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
