// Package critest serves the CRI v1 RuntimeService (the official k8s.io/cri-api types) over
// gRPC on a unix socket, answering Version, ListPodSandbox and PodSandboxStatus for the pods a
// test registers, with a verbose status shaped like containerd's. It stands in for a node's
// container runtime in unit tests and in the e2e lab, where a network namespace the lab made is
// registered as a pod. It does not depend on package testing.
package critest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
)

// RuntimeName and RuntimeVersion are what Version answers.
const (
	RuntimeName    = "critest"
	RuntimeVersion = "1.0.0"
)

// PauseImage is the image the verbose status names for every sandbox.
const PauseImage = "registry.k8s.io/pause:3.9"

// Server is a CRI RuntimeService on a unix socket. Its methods are safe for concurrent use.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer

	socket string
	lis    net.Listener
	grpc   *grpc.Server
	done   chan struct{}

	mu    sync.Mutex
	seq   int
	pods  map[string]*entry // by sandbox ID
	infos map[string]map[string]string
}

type entry struct {
	pod cri.Pod
	seq int // order of Add, for a stable list
}

// Start listens on socketPath (which must not exist yet; its directory must) and serves until
// Close.
func Start(socketPath string) (*Server, error) {
	lis, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("critest: %w", err)
	}
	s := &Server{
		socket: socketPath,
		lis:    lis,
		grpc:   grpc.NewServer(),
		done:   make(chan struct{}),
		pods:   map[string]*entry{},
		infos:  map[string]map[string]string{},
	}
	runtimeapi.RegisterRuntimeServiceServer(s.grpc, s)
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(lis)
	}()
	return s, nil
}

// Socket is the path of the server's unix socket.
func (s *Server) Socket() string { return s.socket }

// Close stops serving (ending calls in flight) and removes the socket.
func (s *Server) Close() error {
	s.grpc.Stop()
	<-s.done
	if err := os.Remove(s.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Add registers a pod sandbox, or replaces the one with the same SandboxID. A pod without a
// SandboxID gets one made from its namespace, name and the order of Adds (so a pod added twice
// has two sandboxes, as a restarted pod has), one without a UID a UID made from its namespace and
// name, one without CreatedAt the time of the Add. NetnsPath of the form /proc/<pid>/ns/net is
// served as containerd does for a sandbox whose namespace the runtime made itself: the pid, and
// no path in the runtime spec. A pod that is not Ready is served as containerd serves a stopped
// sandbox: no IPs, its netns closed.
func (s *Server) Add(p cri.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	if p.SandboxID == "" {
		p.SandboxID = hash(fmt.Sprintf("sandbox/%s/%s/%d", p.Namespace, p.Name, s.seq))
	}
	if p.UID == "" {
		u := hash("uid/" + p.Namespace + "/" + p.Name)
		p.UID = u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	p.IPs = append([]netip.Addr(nil), p.IPs...)
	s.pods[p.SandboxID] = &entry{pod: p, seq: s.seq}
}

// Remove forgets every sandbox of the pod namespace/name.
func (s *Server) Remove(name, namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.pods {
		if e.pod.Name == name && e.pod.Namespace == namespace {
			delete(s.pods, id)
			delete(s.infos, id)
		}
	}
}

// SetInfo replaces the verbose info that PodSandboxStatus returns for one sandbox (to serve
// another runtime's shape, CRI-O's say); nil goes back to the containerd-shaped default.
func (s *Server) SetInfo(sandboxID string, info map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info == nil {
		delete(s.infos, sandboxID)
		return
	}
	s.infos[sandboxID] = info
}

// Pods is every registered sandbox, in the order they were added.
func (s *Server) Pods() []cri.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked()
}

func (s *Server) sortedLocked() []cri.Pod {
	es := make([]*entry, 0, len(s.pods))
	for _, e := range s.pods {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].seq < es[j].seq })
	out := make([]cri.Pod, len(es))
	for i, e := range es {
		out[i] = e.pod
	}
	return out
}

// Version implements the CRI RuntimeService.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       RuntimeName,
		RuntimeVersion:    RuntimeVersion,
		RuntimeApiVersion: "v1",
	}, nil
}

// ListPodSandbox implements the CRI RuntimeService, with its id, state and label filters.
func (s *Server) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.GetFilter()
	var items []*runtimeapi.PodSandbox
	for _, p := range s.sortedLocked() {
		sb := &runtimeapi.PodSandbox{
			Id:        p.SandboxID,
			Metadata:  metadata(p),
			State:     state(p),
			CreatedAt: p.CreatedAt.UnixNano(),
			Labels:    labels(p),
		}
		if f.GetId() != "" && f.GetId() != sb.Id {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != sb.State {
			continue
		}
		match := true
		for k, v := range f.GetLabelSelector() {
			if sb.Labels[k] != v {
				match = false
			}
		}
		if match {
			items = append(items, sb)
		}
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// PodSandboxStatus implements the CRI RuntimeService; verbose adds containerd's "info" JSON.
func (s *Server) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pods[req.GetPodSandboxId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "an error occurred when try to find sandbox: not found: sandbox %q", req.GetPodSandboxId())
	}
	p := e.pod
	netMode := runtimeapi.NamespaceMode_POD
	if p.HostNetwork {
		netMode = runtimeapi.NamespaceMode_NODE
	}
	st := &runtimeapi.PodSandboxStatus{
		Id:        p.SandboxID,
		Metadata:  metadata(p),
		State:     state(p),
		CreatedAt: p.CreatedAt.UnixNano(),
		Network:   &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: &runtimeapi.NamespaceOption{Network: netMode, Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
		Labels:         labels(p),
		RuntimeHandler: "",
	}
	ips := p.IPs
	if !p.Ready && !p.HostNetwork {
		ips = nil // containerd reports no IP once the netns is closed
	}
	for i, ip := range ips {
		if i == 0 {
			st.Network.Ip = ip.String()
		} else {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip.String()})
		}
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		if info, ok := s.infos[p.SandboxID]; ok {
			resp.Info = info
		} else {
			info, err := containerdInfo(p, netMode)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "failed to marshal info: %v", err)
			}
			resp.Info = info
		}
	}
	return resp, nil
}

var procNetns = regexp.MustCompile(`^/proc/([0-9]+)/ns/net$`)

// containerdInfo is the verbose info containerd 1.6/1.7 gives for a sandbox (compare
// ../cri/testdata/containerd-1.6-*.json, taken from a real one): the pause process's pid (only
// known here for a /proc/<pid>/ns/net netns; 0 otherwise), its status, whether the netns is
// closed (a stopped sandbox's always is), the image, the CRI config and the OCI runtime spec
// whose "network" namespace entry carries the netns path (no entry for host network, which
// shares the node's UTS namespace too).
func containerdInfo(p cri.Pod, netMode runtimeapi.NamespaceMode) (map[string]string, error) {
	type ns struct {
		Type string `json:"type"`
		Path string `json:"path,omitempty"`
	}
	pid := 0
	namespaces := []ns{{Type: "pid"}, {Type: "ipc"}}
	if !p.HostNetwork {
		namespaces = append(namespaces, ns{Type: "uts"})
	}
	namespaces = append(namespaces, ns{Type: "mount"})
	if !p.HostNetwork {
		n := ns{Type: "network", Path: p.NetnsPath}
		if m := procNetns.FindStringSubmatch(p.NetnsPath); m != nil {
			pid, _ = strconv.Atoi(m[1])
			n.Path = ""
		}
		namespaces = append(namespaces, n)
	}
	processStatus := "running"
	if !p.Ready {
		processStatus, pid = "deleted", 0
	}
	info := map[string]any{
		"pid":                pid,
		"processStatus":      processStatus,
		"netNamespaceClosed": !p.HostNetwork && !p.Ready,
		"image":              PauseImage,
		"snapshotKey":        p.SandboxID,
		"snapshotter":        "overlayfs",
		"runtimeHandler":     "",
		"runtimeType":        "io.containerd.runc.v2",
		"runtimeOptions":     map[string]any{},
		"config": &runtimeapi.PodSandboxConfig{
			Metadata: metadata(p),
			Labels:   labels(p),
			Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: netMode},
			}},
		},
		"runtimeSpec": map[string]any{
			"ociVersion": "1.0.2-dev",
			"process":    map[string]any{"args": []string{"/pause"}, "cwd": "/"},
			"root":       map[string]any{"path": "rootfs", "readonly": true},
			"linux":      map[string]any{"namespaces": namespaces},
		},
		"cniResult": nil,
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	return map[string]string{"info": string(b)}, nil
}

func metadata(p cri.Pod) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: p.UID}
}

func state(p cri.Pod) runtimeapi.PodSandboxState {
	if p.Ready {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// labels are the ones the kubelet sets on every sandbox.
func labels(p cri.Pod) map[string]string {
	return map[string]string{
		"io.kubernetes.pod.name":      p.Name,
		"io.kubernetes.pod.namespace": p.Namespace,
		"io.kubernetes.pod.uid":       p.UID,
	}
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
