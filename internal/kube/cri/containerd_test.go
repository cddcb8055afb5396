package cri_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
)

// The real runtime: Debian's containerd (scripts/install-deps.sh installs it with runc), started
// by hand with its root, state and sockets in a temp dir. Dial and Pods must work against it
// with no pods, and with two real pod sandboxes (runc running a locally built pause binary):
// one on the pod network, one on the host network. The pod network is a CNI plugin of the
// test's own (a shell script) that puts an eth0 with a TEST-NET address in the sandbox's
// namespace: nothing on the host is touched and no packet is sent.

const (
	pauseImage = "pathtrace.test/pause:1"
	podIPv4    = "192.0.2.10"  // TEST-NET-1, on a dummy device inside the sandbox's netns
	podIPv6    = "2001:db8::a" // documentation prefix, likewise
)

func TestContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: containerd runs pod sandboxes")
	}
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		t.Skip("containerd is not installed (scripts/install-deps.sh installs Debian's)")
	}
	for _, bin := range []string{"ctr", "runc", "containerd-shim-runc-v2", "nsenter", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("containerd is installed but %s is not: %v", bin, err)
		}
	}
	dir := shortTempDir(t)
	sock := startContainerd(t, containerd, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cri.Dial(ctx, sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Runtime(), "containerd") {
		t.Errorf("Runtime() = %q, want containerd ...", c.Runtime())
	}
	pods, err := c.Pods(ctx)
	if err != nil {
		t.Fatalf("Pods: %v", err)
	}
	if len(pods) != 0 {
		t.Fatalf("a fresh containerd has pods: %+v", pods)
	}

	// Real sandboxes.
	importPauseImage(t, ctx, sock, dir)
	rt := rawClient(t, sock)
	podNet := runSandbox(t, ctx, rt, dir, "web-7c9", "default", false)
	hostNet := runSandbox(t, ctx, rt, dir, "node-agent", "kube-system", true)

	pods, err = c.Pods(ctx)
	if err != nil {
		t.Fatalf("Pods: %v", err)
	}
	if len(pods) != 2 {
		t.Fatalf("Pods = %+v, want the 2 sandboxes started", pods)
	}
	byName := map[string]cri.Pod{}
	for _, p := range pods {
		byName[p.Key()] = p
	}
	web := byName["default/web-7c9"]
	if web.SandboxID != podNet || !web.Ready || web.HostNetwork || web.UID != "uid-web-7c9" {
		t.Errorf("default/web-7c9 = %+v", web)
	}
	wantIPs := []netip.Addr{netip.MustParseAddr(podIPv4), netip.MustParseAddr(podIPv6)}
	if fmt.Sprint(web.IPs) != fmt.Sprint(wantIPs) {
		t.Errorf("default/web-7c9 IPs = %v, want %v", web.IPs, wantIPs)
	}
	// containerd 1.6 names the netns it made in the runtime spec: <state>/netns/cni-<uuid> here
	// (netns_mounts_under_state_dir), /var/run/netns/cni-<uuid> by default.
	if !strings.Contains(web.NetnsPath, "/netns/cni-") {
		t.Errorf("default/web-7c9 NetnsPath = %q, want .../netns/cni-...", web.NetnsPath)
	}
	if out, err := exec.Command("nsenter", "--net="+web.NetnsPath, "ip", "-o", "addr", "show", "eth0").CombinedOutput(); err != nil || !strings.Contains(string(out), podIPv4) {
		t.Errorf("the pod's netns %s has no eth0 with %s: %v\n%s", web.NetnsPath, podIPv4, err, out)
	}
	saveFixture(t, ctx, rt, podNet, "containerd-1.6-pod.json")
	saveFixture(t, ctx, rt, hostNet, "containerd-1.6-hostnetwork.json")
	agent := byName["kube-system/node-agent"]
	if agent.SandboxID != hostNet || !agent.Ready || !agent.HostNetwork || agent.NetnsPath != "" {
		t.Errorf("kube-system/node-agent = %+v, want a ready host-network pod without netns", agent)
	}

	// A stopped sandbox is listed, not ready, and its netns is gone.
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podNet}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	pods, err = c.Pods(ctx)
	if err != nil {
		t.Fatalf("Pods: %v", err)
	}
	for _, p := range pods {
		if p.SandboxID == podNet && (p.Ready || p.NetnsPath != "" || len(p.IPs) != 0) {
			t.Errorf("stopped sandbox = %+v, want not ready, no netns, no IPs", p)
		}
	}
	saveFixture(t, ctx, rt, podNet, "containerd-1.6-stopped.json")
	if t.Failed() {
		dumpStatus(t, ctx, rt, podNet)
	}
}

// saveFixture writes a sandbox's verbose status to $CRI_FIXTURES/name when that is set: how
// testdata/containerd-1.6-*.json were made (CRI_FIXTURES=$PWD/testdata go test -run Containerd).
func saveFixture(t *testing.T, ctx context.Context, rt runtimeapi.RuntimeServiceClient, id, name string) {
	dir := os.Getenv("CRI_FIXTURES")
	if dir == "" {
		return
	}
	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name), string(b)+"\n", 0o644)
}

// shortTempDir is a temp dir with a short path: unix socket paths are limited to 108 bytes.
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ctrd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startContainerd(t *testing.T, bin, dir string) string {
	sock := filepath.Join(dir, "c.sock")
	cniConf, cniBin := filepath.Join(dir, "cni"), filepath.Join(dir, "cnibin")
	for _, d := range []string{cniConf, cniBin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(cniBin, "pathtrace-dummy"), dummyCNI, 0o755)
	writeFile(t, filepath.Join(cniBin, "loopback"), loopbackCNI, 0o755) // containerd adds it to every network
	writeFile(t, filepath.Join(cniConf, "10-pathtrace.conflist"), `{
  "cniVersion": "0.4.0",
  "name": "pathtrace-test",
  "plugins": [{"type": "pathtrace-dummy"}]
}`, 0o644)
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  # Sandboxes get oom_score_adj -998, which needs CAP_SYS_RESOURCE: a machine without it (as
  # this workplace's) fails in runc create with "can't get final child's PID from pipe". This
  # keeps the score at containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = %[8]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", pauseImage, cniBin, cniConf, filepath.Join(dir, "runc"))
	cfgPath := filepath.Join(dir, "config.toml")
	writeFile(t, cfgPath, config, 0o644)

	// The shims keep their sockets and FIFOs in /run/containerd whatever the config says: when
	// the test made that directory, it removes what is left of it (empty directories only).
	if _, err := os.Stat("/run/containerd"); os.IsNotExist(err) {
		t.Cleanup(func() {
			for _, d := range []string{"s", "fifo", "runc/k8s.io", "runc", ""} {
				_ = os.Remove(filepath.Join("/run/containerd", d))
			}
		})
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		stopAll(t, sock)
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		// The netns bind mounts and the overlay/shm mounts of stopped sandboxes.
		unmountUnder(filepath.Join(dir, "state"))
		unmountUnder(filepath.Join(dir, "root"))
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("containerd's log:\n%s", lastLines(string(b), 60))
			}
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode().Type() == os.ModeSocket {
			return sock
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not open %s:\n%s", sock, lastLines(string(b), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAll stops and removes every sandbox, so that no shim or pause process outlives the test.
func stopAll(t *testing.T, sock string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, sb := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Logf("cleanup: StopPodSandbox %s: %v", sb.Id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Logf("cleanup: RemovePodSandbox %s: %v", sb.Id, err)
		}
	}
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mnts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mnts = append(mnts, f[4])
		}
	}
	for i := len(mnts) - 1; i >= 0; i-- {
		_ = exec.Command("umount", "-l", mnts[i]).Run()
	}
}

func rawClient(t *testing.T, sock string) runtimeapi.RuntimeServiceClient {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

func runSandbox(t *testing.T, ctx context.Context, rt runtimeapi.RuntimeServiceClient, dir, name, ns string, hostNetwork bool) string {
	mode, hostname := runtimeapi.NamespaceMode_POD, name
	if hostNetwork {
		// The node's UTS namespace too, as the kubelet does: no hostname of its own.
		mode, hostname = runtimeapi.NamespaceMode_NODE, ""
	}
	logDir := filepath.Join(dir, "logs", ns, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: "uid-" + name},
		Hostname:     hostname,
		LogDirectory: logDir,
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: mode},
		}},
	}})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v", ns, name, err)
	}
	return resp.PodSandboxId
}

func dumpStatus(t *testing.T, ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string) {
	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Logf("PodSandboxStatus %s: %v", id, err)
		return
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	t.Logf("PodSandboxStatus %s:\n%s", id, b)
}

// importPauseImage builds a static pause binary, packs it as a docker-archive image and imports it
// into containerd's k8s.io namespace, where the CRI plugin looks for its sandbox image.
func importPauseImage(t *testing.T, ctx context.Context, sock, dir string) {
	src := filepath.Join(dir, "pause")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "main.go"), pauseSource, 0o644)
	writeFile(t, filepath.Join(src, "go.mod"), "module pause\n\ngo 1.22\n", 0o644)
	bin := filepath.Join(src, "pause.bin")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the pause image is built with go, which is not in PATH: %v", err)
	}
	build := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build pause: %v\n%s", err, out)
	}
	pause, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(pause)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(pause)
	tw.Close()
	sum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{"/pause"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{
		"Config":   "config.json",
		"RepoTags": []string{pauseImage},
		"Layers":   []string{"layer.tar"},
	}})
	archive := filepath.Join(dir, "pause.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	aw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer.Bytes()}, {"config.json", config}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		aw.Write(e.data)
	}
	aw.Close()
	f.Close()
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "--namespace", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	// The CRI plugin learns of the image from an event: until it has, RunPodSandbox would try to
	// pull it from a registry.
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	is := runtimeapi.NewImageServiceClient(conn)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: pauseImage}})
		if err == nil && st.GetImage() != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRI plugin does not see the imported %s: %v", pauseImage, err)
		}
	}
}

const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

// pause: the sandbox's process; it holds the namespaces until told to stop.
func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
`

// dummyCNI is a CNI plugin: on ADD it gives the sandbox's netns an eth0 with a TEST-NET IPv4
// and a documentation IPv6 address, and reports them; DEL has nothing to undo (the devices go
// with the netns). eth0 is a veth whose peer stays in the same netns (the kernel may lack the
// dummy driver): nothing is added to the host.
const dummyCNI = `#!/bin/sh
set -e
case "$CNI_COMMAND" in
ADD)
	nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type veth peer name "$CNI_IFNAME"-peer
	nsenter --net="$CNI_NETNS" ip link set "$CNI_IFNAME"-peer up
	nsenter --net="$CNI_NETNS" ip addr add ` + podIPv4 + `/24 dev "$CNI_IFNAME"
	nsenter --net="$CNI_NETNS" ip -6 addr add ` + podIPv6 + `/64 dev "$CNI_IFNAME" nodad
	nsenter --net="$CNI_NETNS" ip link set "$CNI_IFNAME" up
	nsenter --net="$CNI_NETNS" ip link set lo up
	cat <<EOF
{"cniVersion": "0.4.0",
 "interfaces": [{"name": "$CNI_IFNAME", "sandbox": "$CNI_NETNS"}],
 "ips": [{"version": "4", "interface": 0, "address": "` + podIPv4 + `/24"},
         {"version": "6", "interface": 0, "address": "` + podIPv6 + `/64"}]}
EOF
	;;
DEL|CHECK)
	;;
VERSION)
	echo '{"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0"]}'
	;;
*)
	echo "{\"code\": 4, \"msg\": \"unknown CNI_COMMAND $CNI_COMMAND\"}"
	exit 1
	;;
esac
`

// loopbackCNI stands in for the loopback plugin that containerd runs before the network's own.
const loopbackCNI = `#!/bin/sh
set -e
case "$CNI_COMMAND" in
ADD)
	nsenter --net="$CNI_NETNS" ip link set lo up
	echo '{"cniVersion": "0.4.0", "interfaces": [{"name": "lo", "sandbox": "'"$CNI_NETNS"'"}], "ips": [{"version": "4", "interface": 0, "address": "127.0.0.1/8"}]}'
	;;
VERSION)
	echo '{"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0"]}'
	;;
esac
`

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
