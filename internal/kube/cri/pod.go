// Package cri asks the node's container runtime (containerd, CRI-O) over its CRI socket which pod
// sandboxes run here: their names, IPs and network namespaces. It needs no cluster credentials.
package cri

import (
	"net/netip"
	"time"
)

// Pod is one pod sandbox running on this node, as the container runtime reports it.
type Pod struct {
	Namespace string
	Name      string
	UID       string
	SandboxID string
	// Ready is false for a sandbox that is stopped (its netns may be gone).
	Ready bool
	// IPs are the pod's addresses, primary first.
	IPs []netip.Addr
	// NetnsPath is the pod's network namespace file on the node ("/var/run/netns/cni-...",
	// "/proc/<pid>/ns/net"); "" when the runtime does not say (host-network pods share the
	// node's namespace and have none of their own).
	NetnsPath string
	// HostNetwork pods run in the node's own network namespace.
	HostNetwork bool
	// CreatedAt is when the sandbox was created (zero when the runtime does not say): of two
	// sandboxes of one pod, the newer one is the pod's current incarnation.
	CreatedAt time.Time
}

// Key is "namespace/name", how pods are named in hops and errors.
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }
