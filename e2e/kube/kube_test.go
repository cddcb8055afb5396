// Package kube_test runs kubectl-pathtrace against a real single-node Kubernetes
// (internal/kubetest): pods on the bridge network, pathtrace's image imported into the node's
// containerd, no registry. make k8s-test runs it (root).
package kube_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/buildinfo"
	"github.com/pathtrace/pathtrace/internal/kubetest"
)

const image = "localhost/pathtrace:e2e"

type env struct {
	c      *kubetest.Cluster
	plugin string
}

func (e env) kubectlPathtrace(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	if kubeconfig == "" {
		kubeconfig = e.c.Kubeconfig
	}
	cmd := exec.CommandContext(ctx, e.plugin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e env) ourPods(t *testing.T) string {
	out, err := e.c.Kubectl(context.Background(), "get", "pods", "-A", "-l", "app.kubernetes.io/managed-by=kubectl-pathtrace", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func TestKubectlPathtrace(t *testing.T) {
	c := kubetest.Up(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	e := env{c: c, plugin: filepath.Join(dir, "kubectl-pathtrace")}
	build(t, ctx, dir, e.plugin)
	if err := c.ImportImage(ctx, filepath.Join(dir, "pathtrace.tar")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "db"} {
		runPod(t, ctx, c, name)
	}
	webIP, _ := c.Kubectl(ctx, "get", "pod/web", "-o", "jsonpath={.status.podIP}")
	gateway := strings.TrimSuffix(kubetest.PodSubnet, "0/24") + "1"
	common := []string{"--cri-socket=" + c.CRISocket, "--color=never"} // --image: the default, stamped by build

	t.Run("probe from a pod, dropped on the node", func(t *testing.T) {
		// The node drops the pod's pings to its gateway (the host's bridge address).
		nft(t, "add table inet pathtrace_e2e",
			"add chain inet pathtrace_e2e input { type filter hook input priority 0; }",
			"add rule inet pathtrace_e2e input ip saddr "+webIP+" icmp type echo-request drop")
		defer nft(t, "delete table inet pathtrace_e2e")
		saved := filepath.Join(dir, "probe.json")
		out, err := e.kubectlPathtrace(ctx, "", append(common, "--src=default/web", "--dst="+gateway, "--proto=icmp", "--probe=icmp", "--probe-count=3", "--json="+saved)...)
		t.Logf("kubectl pathtrace --src default/web --dst %s --proto icmp --probe icmp:\n%s", gateway, out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Verdict: DROPPED", "default/web", "probe: sent icmp echo-request", "echo-request id=",
			"3 icmp echo-requests to " + gateway + ", sent by pathtrace (--probe) from pod default/web\n", "probe: 3 of 3 sent by pathtrace (--probe)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		// The saved trace says its packets were pathtrace's probes.
		var tr struct {
			Meta struct {
				Probe *struct {
					Kind, Dst, Pod, Netns string
					Count, Sent           int
				} `json:"probe"`
			} `json:"meta"`
			Packets []struct {
				FromProbe bool `json:"from_probe"`
			} `json:"packets"`
		}
		if b, err := os.ReadFile(saved); err != nil {
			t.Error(err)
		} else if err := json.Unmarshal(b, &tr); err != nil {
			t.Error(err)
		} else if p := tr.Meta.Probe; p == nil || p.Kind != "icmp" || p.Dst != gateway || p.Count != 3 || p.Sent != 3 || p.Pod != "default/web" || p.Netns == "" {
			t.Errorf("meta.probe %+v, want 3 icmp probes to %s sent from the pod's network namespace", p, gateway)
		}
		// Every packet is a probe (nothing else pings the gateway), and is marked so.
		marked := 0
		for _, p := range tr.Packets {
			if p.FromProbe {
				marked++
			}
		}
		if marked != 3 || len(tr.Packets) != 3 || strings.Count(out, "  (probe)\n") != 3 {
			t.Errorf("%d of %d packets marked from_probe, %d \"(probe)\" in the output; want the 3 echo requests", marked, len(tr.Packets), strings.Count(out, "  (probe)\n"))
		}
		if left := e.ourPods(t); left != "" {
			t.Errorf("pods left: %s", left)
		}
	})

	t.Run("pod to pod on the node", func(t *testing.T) {
		out, err := e.kubectlPathtrace(ctx, "", append(common, "--src=default/web", "--dst=default/db", "--proto=icmp", "--probe=icmp", "--probe-count=2")...)
		t.Logf("%s", out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"default/web", "default/db", "Verdict:"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		if err := c.Namespace(ctx, "baseline", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}); err != nil {
			t.Fatal(err)
		}
		viewer, err := c.UserKubeconfig("viewer")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.KubectlIn(ctx, []byte(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods, nodes], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: viewer-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{kind: User, name: viewer, apiGroup: rbac.authorization.k8s.io}]
`), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, kubeconfig string
			args             []string
			want             string
		}{
			{"unknown pod", "", []string{"--src=default/nope", "--dst=1.2.3.4"}, "pod default/nope not found"},
			{"image not present", "", []string{"--src=default/web", "--dst=1.2.3.4", "--image=localhost/absent:1", "--duration=5s"}, "cannot pull the image localhost/absent:1"},
			{"PodSecurity", "", []string{"-n", "baseline", "--src=default/web", "--dst=1.2.3.4"}, "PodSecurity admission refuses a privileged pod"},
			{"RBAC", viewer, []string{"--src=default/web", "--dst=1.2.3.4"}, `cannot create resource "pods"`},
			{"no cluster", filepath.Join(dir, "none"), []string{"--src=default/web"}, "no access to a cluster"},
		} {
			args := append(append([]string{}, common...), tc.args...)
			out, err := e.kubectlPathtrace(ctx, tc.kubeconfig, args...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			t.Logf("%s: %s", tc.name, last)
			if err == nil || !strings.Contains(last, tc.want) || !strings.HasPrefix(last, "kubectl pathtrace: ") {
				t.Errorf("%s: err %v, last line %q, want one line with %q\n%s", tc.name, err, last, tc.want, out)
			}
		}
		if left := e.ourPods(t); left != "" {
			t.Errorf("pods left: %s", left)
		}
	})

	// The trace comes through the pod's log, which the kubelet rotates at
	// kubetest.ContainerLogMaxSize (1Mi): the node's loopback traffic (apiserver, etcd,
	// kubelet) traced for 20 s makes a trace and an output larger than that, and the trace
	// must arrive whole (the plugin checks its length and sha256) or the run fail saying so.
	t.Run("a trace bigger than the node's log limit", func(t *testing.T) {
		saved := filepath.Join(dir, "big.json")
		// Meanwhile, count the rotated files of pathtrace's log (0.log.<time>) the kubelet makes.
		rotated := map[string]bool{}
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				files, _ := filepath.Glob("/var/log/pods/default_pathtrace-*/pathtrace/0.log.*")
				for _, f := range files {
					rotated[filepath.Base(f)] = true
				}
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
		out, err := e.kubectlPathtrace(ctx, "", "--cri-socket="+c.CRISocket, "--color=never", "--node="+kubetest.NodeName,
			"--src=127.0.0.1", "--dst=127.0.0.1", "--proto=tcp", "--duration=20s", "--json="+saved)
		close(stop)
		<-watched
		t.Logf("the kubelet rotated pathtrace's log %d times during the run; the plugin read the log again: %v", len(rotated), strings.Contains(out, "read again: whole"))
		if len(rotated) == 0 {
			t.Errorf("the log was never rotated: the test proves less than it says")
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		t.Logf("%d lines, %d bytes of output; the last ones:\n%s", len(lines), len(out), strings.Join(lines[max(0, len(lines)-8):], "\n"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(saved)
		if err != nil {
			t.Fatal(err)
		}
		var tr struct {
			Packets []json.RawMessage `json:"packets"`
		}
		if err := json.Unmarshal(b, &tr); err != nil {
			t.Fatalf("the trace (%d bytes) does not parse: %v", len(b), err)
		}
		t.Logf("trace: %d bytes, %d packets; output %d bytes; log limit %s", len(b), len(tr.Packets), len(out), kubetest.ContainerLogMaxSize)
		if len(b) <= 1<<20 || len(out) <= 1<<20 {
			t.Errorf("the trace (%d bytes) or the output (%d bytes) is not bigger than the log limit (%s): the test proves nothing", len(b), len(out), kubetest.ContainerLogMaxSize)
		}
		if !strings.Contains(out, "Verdict:") {
			t.Error("no verdict")
		}
		if left := e.ourPods(t); left != "" {
			t.Errorf("pods left: %s", left)
		}
	})

	// A second node the apiserver knows, with no kubelet: the orchestration's multi-node logic
	// (which nodes, what each is told, prefixes, every pod deleted when one cannot start)
	// against the real apiserver. What it does not prove: two nodes really tracing and merging.
	t.Run("two nodes", func(t *testing.T) {
		if _, err := c.KubectlIn(ctx, []byte(`{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b", "labels": {"kubernetes.io/os": "linux"}}}`), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		defer c.Kubectl(ctx, "delete", "node", "node-b", "--wait=false")
		status := func(s string) {
			t.Helper()
			if _, err := c.Kubectl(ctx, "patch", "node", "node-b", "--subresource=status", "--type=merge", "-p", s); err != nil {
				t.Fatal(err)
			}
		}
		pod := fmt.Sprintf(`{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "far", "namespace": "default"},
 "spec": {"nodeName": "node-b", "containers": [{"name": "main", "image": %q}]}}`, kubetest.PauseImage)
		if _, err := c.KubectlIn(ctx, []byte(pod), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		defer c.Kubectl(ctx, "delete", "pod", "far", "--grace-period=0", "--force", "--wait=false")
		if _, err := c.Kubectl(ctx, "patch", "pod", "far", "--subresource=status", "--type=merge", "-p",
			`{"status": {"phase": "Running", "podIP": "10.251.78.5", "podIPs": [{"ip": "10.251.78.5"}]}}`); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{}, common...), "--src=default/web", "--dst=default/far", "--proto=icmp", "--duration=5s", "--start-timeout=5s")
		out, err := e.kubectlPathtrace(ctx, "", args...)
		if err == nil || !strings.Contains(out, "node node-b is NotReady (its kubelet has not reported)") {
			t.Errorf("a node without status: %v\n%s", err, out)
		}
		status(`{"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}}`)
		if out, err := e.kubectlPathtrace(ctx, "", args...); err == nil || !strings.Contains(out, "node node-b is NotReady (KubeletNotReady)") {
			t.Errorf("NotReady: %v\n%s", err, out)
		}
		status(`{"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}], "nodeInfo": {"operatingSystem": "windows"}}}`)
		if out, err := e.kubectlPathtrace(ctx, "", args...); err == nil || !strings.Contains(out, "node node-b runs windows") {
			t.Errorf("windows: %v\n%s", err, out)
		}
		status(`{"status": {"nodeInfo": {"operatingSystem": "linux"}}}`)
		out, err = e.kubectlPathtrace(ctx, "", args...)
		t.Logf("%s", out)
		for _, want := range []string{
			"traces on node localhost: pathtrace --color=never --json=/tmp/trace.json --emit-json --src=default/web --dst=10.251.78.5 ",
			"traces on node node-b: pathtrace --color=never --json=/tmp/trace.json --emit-json --src=" + webIP + " --dst=default/far ",
			"pathtrace's pod on node node-b did not start within 5s",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if err == nil {
			t.Errorf("no error although node-b has no kubelet")
		}
		if left := e.ourPods(t); left != "" {
			t.Errorf("pods left: %s", left)
		}
	})

	t.Run("Ctrl-C and kill leave no pods", func(t *testing.T) {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
			cmd := exec.CommandContext(ctx, e.plugin, append(common, "--kubeconfig="+c.Kubeconfig, "--src=default/web", "--dst=default/db", "--duration=60s")...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Until pathtrace runs on the node: its header is streamed.
			for deadline := time.Now().Add(60 * time.Second); !strings.Contains(out.String(), "tracing "); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%v: pathtrace did not start:\n%s", sig, out.String())
				}
			}
			if e.ourPods(t) == "" {
				t.Fatalf("%v: no pathtrace pod while running", sig)
			}
			deadlineSecs, _ := c.Kubectl(ctx, "get", "pods", "-l", "app.kubernetes.io/managed-by=kubectl-pathtrace", "-o", "jsonpath={.items[0].spec.activeDeadlineSeconds}")
			_ = cmd.Process.Signal(sig)
			_ = cmd.Wait()
			if sig == syscall.SIGKILL {
				if deadlineSecs == "" {
					t.Errorf("the pod has no activeDeadlineSeconds")
				}
				cl, err := e.kubectlPathtrace(ctx, "", "cleanup")
				if err != nil || !strings.Contains(cl, "deleted 1 pathtrace pod") {
					t.Errorf("cleanup: %v\n%s", err, cl)
				}
			} else if !strings.Contains(out.String(), "Verdict:") {
				t.Errorf("after Ctrl-C no verdict:\n%s", out.String())
			}
			if left := e.ourPods(t); left != "" {
				t.Errorf("%v: pods left: %s (activeDeadlineSeconds %s)", sig, left, deadlineSecs)
			}
		}
	})
}

func runPod(t *testing.T, ctx context.Context, c *kubetest.Cluster, name string) {
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default}
spec:
  nodeName: %s
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: %s, imagePullPolicy: Never}
`, name, kubetest.NodeName, kubetest.PauseImage)
	if _, err := c.KubectlIn(ctx, []byte(pod), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
}

func nft(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if out, err := exec.Command("nft", strings.Fields(c)...).CombinedOutput(); err != nil {
			// nft's own syntax needs the braces kept together: pass the command on stdin.
			cmd := exec.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(c + "\n")
			if out2, err2 := cmd.CombinedOutput(); err2 != nil {
				t.Fatalf("nft %s: %v %s / %v %s", c, err, out, err2, out2)
			}
		}
	}
}

// build builds kubectl-pathtrace, and pathtrace's image as an archive the node imports: the
// static binary at /usr/local/bin/pathtrace (the entrypoint) and /tmp, as make image builds it.
func build(t *testing.T, ctx context.Context, dir, plugin string) {
	root := moduleRoot(t)
	bin := filepath.Join(dir, "pathtrace")
	for _, b := range [][2]string{{plugin, "./cmd/kubectl-pathtrace"}, {bin, "./cmd/pathtrace"}} {
		// Stamped as make kubectl-pathtrace stamps a release: the plugin's --image defaults to
		// the image imported below, so the tests run it without --image.
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X "+buildinfo.LDFlagPrefix+"image="+image, "-o", b[0], b[1])
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, h := range []*tar.Header{
		{Name: "tmp/", Mode: 0o1777, Typeflag: tar.TypeDir},
		{Name: "usr/", Mode: 0o755, Typeflag: tar.TypeDir},
		{Name: "usr/local/", Mode: 0o755, Typeflag: tar.TypeDir},
		{Name: "usr/local/bin/", Mode: 0o755, Typeflag: tar.TypeDir},
	} {
		_ = tw.WriteHeader(h)
	}
	_ = tw.WriteHeader(&tar.Header{Name: "usr/local/bin/pathtrace", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(data)
	tw.Close()
	sum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/usr/local/bin/pathtrace"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{image}, "Layers": []string{"layer.tar"}}})
	f, err := os.Create(filepath.Join(dir, "pathtrace.tar"))
	if err != nil {
		t.Fatal(err)
	}
	aw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer.Bytes()}, {"config.json", config}, {"manifest.json", manifest}} {
		_ = aw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg})
		_, _ = aw.Write(e.data)
	}
	aw.Close()
	f.Close()
}

func moduleRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
