package netns

// Proc is the /proc the Finder reads processes from ("/proc", or "/host/proc" in a debug pod):
// nodestate reads the processes of a namespace (their sockets) there.
func (f *Finder) Proc() string { return f.proc }
