package cri

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Each runtime's verbose status, as testdata keeps it, gives the pod's IPs and netns.
func TestPodFromStatusFixtures(t *testing.T) {
	ips := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	const ctrdNetns = "/tmp/ctrd103816408/state/io.containerd.grpc.v1.cri/netns/cni-410ee666-dbfe-f36d-5a61-cff12ff82cd6"
	crio := Pod{
		Namespace: "default", Name: "web-7c9d8-x2x", UID: "1a2b3c4d-0000-4000-8000-00000000c410",
		Ready: true, IPs: ips("10.85.0.17", "1100:200::11"),
		NetnsPath: "/var/run/netns/4f1c0e2a-9d1b-4c55-a4a3-0d4c6f1b7e21",
	}
	for _, tc := range []struct {
		file string
		want Pod
	}{
		{"containerd-1.6-pod.json", Pod{
			Namespace: "default", Name: "web-7c9", UID: "uid-web-7c9", Ready: true,
			IPs: ips("192.0.2.10", "2001:db8::a"), NetnsPath: ctrdNetns,
		}},
		{"containerd-1.6-hostnetwork.json", Pod{
			Namespace: "kube-system", Name: "node-agent", UID: "uid-node-agent", Ready: true, HostNetwork: true,
		}},
		// Stopped: containerd says the netns is closed and reports no IP.
		{"containerd-1.6-stopped.json", Pod{Namespace: "default", Name: "web-7c9", UID: "uid-web-7c9"}},
		{"containerd-2.0-pod.json", Pod{
			Namespace: "default", Name: "web-7c9d8-x2x", UID: "1a2b3c4d-0000-4000-8000-00000000c410",
			Ready: true, IPs: ips("10.85.0.17", "1100:200::11"),
			NetnsPath: "/var/run/netns/cni-0d9e4b5f-77aa-3c1e-2b6f-8a9e0c1d2f3a",
		}},
		{"crio-1.29-pod.json", crio},
		{"crio-1.29-noinfra.json", crio},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var resp runtimeapi.PodSandboxStatusResponse
			if err := json.Unmarshal(b, &resp); err != nil {
				t.Fatal(err)
			}
			got := podFromStatus(&runtimeapi.PodSandbox{Id: resp.Status.Id}, &resp)
			if got.SandboxID != resp.Status.Id || got.CreatedAt.UnixNano() != resp.Status.CreatedAt {
				t.Errorf("SandboxID %q CreatedAt %v, want %q %d", got.SandboxID, got.CreatedAt, resp.Status.Id, resp.Status.CreatedAt)
			}
			opt := cmpopts.IgnoreFields(Pod{}, "SandboxID", "CreatedAt")
			if d := cmp.Diff(tc.want, got, opt, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("Pod (-want +got):\n%s", d)
			}
		})
	}
}

func TestNetnsFromInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		info map[string]string
		want string
	}{
		{"none", nil, ""},
		{"not JSON", map[string]string{"info": "{"}, ""},
		{"spec path wins over pid", map[string]string{"info": `{"pid": 7, "runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}]}}}`}, "/var/run/netns/cni-1"},
		{"spec network without path: the pid's", map[string]string{"info": `{"pid": 7, "runtimeSpec": {"linux": {"namespaces": [{"type": "network"}]}}}`}, "/proc/7/ns/net"},
		{"pid only", map[string]string{"info": `{"pid": 123}`}, "/proc/123/ns/net"},
		{"netNamespacePath", map[string]string{"info": `{"netNamespacePath": "/run/netns/x"}`}, "/run/netns/x"},
		{"closed", map[string]string{"info": `{"pid": 0, "netNamespaceClosed": true, "runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}]}}}`}, ""},
		{"another key", map[string]string{"other": `{"pid": 9}`}, "/proc/9/ns/net"},
		{"info first", map[string]string{"a": `{"pid": 9}`, "info": `{"pid": 10}`}, "/proc/10/ns/net"},
	} {
		if got := netnsFromInfo(tc.info); got != tc.want {
			t.Errorf("%s: netnsFromInfo = %q, want %q", tc.name, got, tc.want)
		}
	}
}
