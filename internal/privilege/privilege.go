// Package privilege checks, before anything is loaded, that this process may load and attach
// BPF programs, so a missing privilege is one clear line instead of a verifier error.
package privilege

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Capability numbers from linux/capability.h; CAP_BPF and CAP_PERFMON appeared in 5.8.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Effective returns the effective capability set.
func Effective() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}

// Check says what is missing to trace.
func Check() error {
	eff, err := Effective()
	if err != nil {
		return err
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
		return nil
	}
	return fmt.Errorf("tracing needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): run with sudo, or in a privileged debug pod")
}
