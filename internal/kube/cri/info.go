package cri

import (
	"encoding/json"
	"sort"
	"strconv"
)

// sandboxInfo is what pathtrace reads of the "info" JSON a runtime adds to a verbose
// PodSandboxStatus. Runtimes differ (testdata/ keeps one of each):
//
//   - containerd 1.6/1.7: {"pid": N, "netNamespaceClosed": bool, "runtimeSpec": {OCI spec},
//     "config": {...}, "cniResult": {...}, ...}; the sandbox's network namespace is the path of
//     the "network" entry of runtimeSpec.linux.namespaces (/var/run/netns/cni-...).
//   - containerd 2.x: the same, plus "sandboxMetadata": {"Version": "v1", "Metadata":
//     {"NetNSPath": ..., ...}}.
//   - CRI-O: {"image": ..., "pid": N, "runtimeSpec": {OCI spec}}; "pid" is missing when CRI-O
//     runs no infra container (drop_infra_ctr), and the netns pinned by pinns is in runtimeSpec.
//
// Some tools put "netNamespacePath" at the top level; it is honoured too.
type sandboxInfo struct {
	Pid                int    `json:"pid"`
	NetNamespaceClosed bool   `json:"netNamespaceClosed"`
	NetNamespacePath   string `json:"netNamespacePath"`
	RuntimeSpec        *struct {
		Linux *struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
	SandboxMetadata *struct {
		Metadata struct {
			NetNSPath string `json:"NetNSPath"`
		} `json:"Metadata"`
	} `json:"sandboxMetadata"`
}

// netnsFromInfo finds the sandbox's network namespace file in a verbose status's info map: the
// runtime spec's network namespace path, containerd 2's NetNSPath or a top-level
// netNamespacePath, else /proc/<pid>/ns/net of the sandbox's process. "" when none is known or
// containerd says the namespace is closed (a stopped sandbox).
func netnsFromInfo(info map[string]string) string {
	keys := make([]string, 0, len(info))
	for k := range info {
		if k != "info" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if _, ok := info["info"]; ok {
		keys = append([]string{"info"}, keys...)
	}
	for _, k := range keys {
		var si sandboxInfo
		if err := json.Unmarshal([]byte(info[k]), &si); err != nil {
			continue
		}
		if p, ok := si.netnsPath(); ok {
			return p
		}
	}
	return ""
}

// netnsPath is the network namespace the info names; ok is false when it says nothing about it.
func (si *sandboxInfo) netnsPath() (string, bool) {
	if si.NetNamespaceClosed {
		return "", true
	}
	if si.RuntimeSpec != nil && si.RuntimeSpec.Linux != nil {
		for _, ns := range si.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" && ns.Path != "" {
				return ns.Path, true
			}
		}
	}
	if si.SandboxMetadata != nil && si.SandboxMetadata.Metadata.NetNSPath != "" {
		return si.SandboxMetadata.Metadata.NetNSPath, true
	}
	if si.NetNamespacePath != "" {
		return si.NetNamespacePath, true
	}
	if si.Pid > 0 {
		return "/proc/" + strconv.Itoa(si.Pid) + "/ns/net", true
	}
	return "", false
}
