package kubetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (c *Cluster) startContainerd(ctx context.Context, cniBin string) error {
	c.CRISocket = filepath.Join(c.Dir, "c.sock")
	cniConf := filepath.Join(c.Dir, "cni")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return err
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}
  }]
}`, netName(c.Dir), c.Bridge, PodSubnet, filepath.Join(c.Dir, "ipam"))
	if err := os.WriteFile(filepath.Join(cniConf, "10-bridge.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
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
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  # Sandboxes get oom_score_adj -998, which needs CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = %[8]q
`, filepath.Join(c.Dir, "containerd"), filepath.Join(c.Dir, "containerd-state"), c.CRISocket, c.CRISocket+".ttrpc",
		PauseImage, cniBin, cniConf, filepath.Join(c.Dir, "runc"))
	cfg := filepath.Join(c.Dir, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return err
	}
	if err := c.start("containerd", "containerd", "--config", cfg); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(c.CRISocket); err == nil && fi.Mode().Type() == os.ModeSocket {
			break
		}
		if time.Now().After(deadline) {
			return c.failed("containerd", errors.New("no socket after 20s"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	archive, err := pauseArchive(ctx)
	if err != nil {
		return err
	}
	if err := c.ImportImage(ctx, archive); err != nil {
		return err
	}
	return c.waitImage(ctx, PauseImage)
}

// waitImage waits until the CRI plugin sees an imported image (it learns of it from an event;
// until then a pod would try to pull it).
func (c *Cluster) waitImage(ctx context.Context, image string) error {
	conn, err := grpc.NewClient("unix://"+c.CRISocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	is := runtimeapi.NewImageServiceClient(conn)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
		if err == nil && st.GetImage() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubetest: the CRI plugin does not see the imported %s: %v", image, err)
		}
	}
}

// ContainerLogMaxSize is where the node's kubelet rotates a container's log (10Mi by default):
// small, and checked every 3 s (the least it takes), so that a test can write more than that
// and see what survives a rotation.
const ContainerLogMaxSize = "1Mi"

func (c *Cluster) startKubelet(ctx context.Context, port, healthz int) error {
	p := filepath.Join(c.Dir, "pki")
	kc := filepath.Join(c.Dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(kc, c.Server, c.ca.pem, p+"/kubelet.crt", p+"/kubelet.key", "kubelet"); err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
tlsCertFile: %s/kubelet.crt
tlsPrivateKeyFile: %s/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
protectKernelDefaults: false
makeIPTablesUtilChains: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 5s
serializeImagePulls: false
containerLogMaxSize: %s
containerLogMonitorInterval: 3s
`, port, healthz, p, p, p, c.CRISocket, ContainerLogMaxSize)
	cfg := filepath.Join(c.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return err
	}
	return c.start("kubelet", c.Bin.Kubelet,
		"--config="+cfg, "--kubeconfig="+kc,
		"--hostname-override="+NodeName,
		"--root-dir="+filepath.Join(c.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(c.Dir, "kubelet-pki"),
		"-v=1")
}

// Stop stops the node's pods, the kubelet, containerd, the apiserver and etcd, restores the
// host and removes Dir. It is safe to call twice.
func (c *Cluster) Stop() error {
	if c == nil || c.snap == nil {
		return nil
	}
	var errs []string
	stop := func(name string) {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			if p.name != name {
				continue
			}
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
			p.logf.Close()
		}
	}
	stop("kubelet")
	if c.CRISocket != "" {
		if err := c.removeSandboxes(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	stop("containerd")
	stop("kube-apiserver")
	stop("etcd")
	// Shims and pause processes that outlived containerd (they name its socket).
	for _, pid := range c.Processes() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(100 * time.Millisecond)
	if left := c.Processes(); len(left) > 0 {
		errs = append(errs, fmt.Sprintf("processes left: %v", left))
	}
	errs = append(errs, c.snap.restore(c.Dir, c.Bridge)...)
	c.snap = nil
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("kubetest: stop: %s", strings.Join(errs, "; "))
	}
	return nil
}

// removeSandboxes stops and removes every pod sandbox, so that no shim, pause process, veth or
// IP address outlives the cluster.
func (c *Cluster) removeSandboxes() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.CRISocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil // containerd is not running: nothing it could stop
	}
	var errs []string
	for _, sb := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Sprintf("stop sandbox %s: %v", sb.Id, err))
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Sprintf("remove sandbox %s: %v", sb.Id, err))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Processes are the pids of processes (other than this one) whose command line names the
// cluster's directory: its components, containerd's shims, and what runs in the pods.
func (c *Cluster) Processes() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(c.Dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pauseArchive builds the pause image's archive once into the cache directory: a static
// binary that waits for a signal, as /pause.
func pauseArchive(ctx context.Context) (string, error) {
	archive := filepath.Join(CacheDir(), "pause.tar")
	if _, err := os.Stat(archive); err == nil {
		return archive, nil
	}
	src, err := os.MkdirTemp("", "pause")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(pauseSource), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module pause\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	goBin := "go"
	if _, err := exec.LookPath("go"); err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(src, "pause.bin")
	build := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("kubetest: build pause: %w: %s", err, out)
	}
	pause, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(pause)), Typeflag: tar.TypeReg}); err != nil {
		return "", err
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
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{PauseImage}, "Layers": []string{"layer.tar"}}})
	tmp := archive + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	aw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer.Bytes()}, {"config.json", config}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			return "", err
		}
		aw.Write(e.data)
	}
	if err := aw.Close(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return archive, os.Rename(tmp, archive)
}

const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

// pause holds a pod's namespaces (or stands for a workload) until told to stop.
func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
`
