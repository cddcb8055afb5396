//go:build !linux

package text

// Elsewhere the local errno table numbers differently from the Linux kernel that took the
// trace, so only the errors a route lookup reports are named.
var linuxErrnos = map[int32]string{1: "EPERM", 11: "EAGAIN", 13: "EACCES", 22: "EINVAL",
	101: "ENETUNREACH", 113: "EHOSTUNREACH"}

func errnoName(n int32) string { return linuxErrnos[n] }
