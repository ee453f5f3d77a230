//go:build !linux

package clientport

// residentBytes is unknown here: INFO shows used_memory in its place.
func residentBytes() int64 { return 0 }

// systemMemory is unknown here.
func systemMemory() int64 { return 0 }
