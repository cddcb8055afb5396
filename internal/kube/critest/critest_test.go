package critest

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
)

func TestServer(t *testing.T) {
	dir, err := os.MkdirTemp("", "critest")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "cri.sock")
	s, err := Start(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(sock); err == nil {
		t.Error("a second Start on the same socket worked")
	}
	s.Add(cri.Pod{Namespace: "default", Name: "a", SandboxID: "sa", Ready: true, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, NetnsPath: "/var/run/netns/a"})
	s.Add(cri.Pod{Namespace: "default", Name: "b", SandboxID: "sb"})
	s.Add(cri.Pod{Namespace: "other", Name: "c"})
	if ps := s.Pods(); len(ps) != 3 || ps[2].SandboxID == "" || ps[2].UID == "" || ps[2].CreatedAt.IsZero() {
		t.Errorf("Pods = %+v", ps)
	}

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx := context.Background()

	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != RuntimeName || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version = %v, %v", v, err)
	}
	for _, tc := range []struct {
		filter *runtimeapi.PodSandboxFilter
		want   int
	}{
		{nil, 3},
		{&runtimeapi.PodSandboxFilter{Id: "sa"}, 1},
		{&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, 1},
		{&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"io.kubernetes.pod.namespace": "other"}}, 1},
	} {
		l, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: tc.filter})
		if err != nil || len(l.Items) != tc.want {
			t.Errorf("ListPodSandbox(%v) = %v, %v; want %d items", tc.filter, l, err, tc.want)
		}
	}
	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "sa", Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Network.Ip != "10.0.0.1" || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("status = %v", st.Status)
	}
	var info struct {
		Pid         int    `json:"pid"`
		Status      string `json:"processStatus"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string } `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	if n := info.RuntimeSpec.Linux.Namespaces; len(n) == 0 || n[len(n)-1].Type != "network" || n[len(n)-1].Path != "/var/run/netns/a" || info.Status != "running" {
		t.Errorf("info = %s", st.Info["info"])
	}
	if st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "sa"}); err != nil || st.Info != nil {
		t.Errorf("non-verbose status has info: %v, %v", st, err)
	}
	if _, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown sandbox: %v", err)
	}
	if _, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("RunPodSandbox: %v", err)
	}

	s.Remove("a", "default")
	if l, _ := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); len(l.Items) != 2 {
		t.Errorf("after Remove: %d items", len(l.Items))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}
