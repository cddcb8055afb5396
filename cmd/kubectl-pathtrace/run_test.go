package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/buildinfo"
)

// plugin runs kubectl-pathtrace with args against f, as the command line would.
func plugin(t *testing.T, f *fakeAPI, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if f != nil {
		args = append([]string{"--kubeconfig=" + f.kubeconfig()}, args...)
	}
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// cluster is two Ready Linux nodes, web on node-a and db on node-b, in default.
func cluster(t *testing.T) *fakeAPI {
	f := newFakeAPI(t)
	f.addNode("node-a", "True", "KubeletReady", "linux")
	f.addNode("node-b", "True", "KubeletReady", "linux")
	f.addNode("node-c", "True", "KubeletReady", "linux")
	f.addPod("default", "web", "node-a", "10.244.1.5")
	f.addPod("default", "db", "node-b", "10.244.2.7")
	return f
}

func TestFlagDefaults(t *testing.T) {
	cmd := newRootCmd()
	for flag, want := range map[string]string{
		"image": buildinfo.Image(), "probe-count": "5", "start-timeout": "2m0s", "color": "auto", "duration": "0s", "node": "[]",
	} {
		if got := cmd.Flags().Lookup(flag).DefValue; got != want {
			t.Errorf("--%s defaults to %q, want %q", flag, got, want)
		}
	}
	if f := cmd.PersistentFlags().ShorthandLookup("n"); f == nil || f.Name != "namespace" {
		t.Error("-n is not --namespace")
	}
	for _, name := range []string{"kubeconfig", "context"} {
		if cmd.PersistentFlags().Lookup(name) == nil {
			t.Errorf("no --%s, which every kubectl plugin takes", name)
		}
	}
	if err := cmd.ParseFlags([]string{"--node", "a,b", "--node=c", "-n", "ops", "--probe-count=2"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cmd.Flags().GetStringSlice("node"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("--node a,b --node=c is %q", got)
	}
	if _, _, err := plugin(t, nil, "--probe-count=x"); err == nil || !strings.Contains(err.Error(), "--probe-count") {
		t.Errorf("--probe-count=x: %v", err)
	}
	if _, _, err := plugin(t, nil, "extra"); err == nil || !strings.Contains(err.Error(), `unknown command "extra"`) {
		t.Errorf("a stray argument: %v", err)
	}
}

// One pod on the source pod's node, given the pod by name (its runtime finds it there) and the
// destination address; the pod has the shape of kubectl debug node --profile=sysadmin; the
// trace is written to --json; the pod is deleted at the end.
func TestOneNode(t *testing.T) {
	f := cluster(t)
	saved := filepath.Join(t.TempDir(), "trace.json")
	f.logs["node-a"] = "tracing   icmp 10.244.1.5 <-> 10.0.0.9\nVerdict: DROPPED\n" + traceLog(t, `{"schema":"pathtrace/v1"}`+"\n") + "after the trace\n"
	stdout, stderr, err := plugin(t, f, "--src=default/web", "--dst=10.0.0.9", "--proto=icmp", "--probe=icmp", "--probe-count=3",
		"--json="+saved, "--image=registry.example/pathtrace:v1", "--cri-socket=/run/k3s/containerd/containerd.sock")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(f.created) != 1 {
		t.Fatalf("%d pods created, want 1: %+v", len(f.created), f.created)
	}
	c := f.created[0]
	want := []string{"--color=never", "--json=/tmp/trace.json", "--emit-json", "--src=default/web", "--dst=10.0.0.9", "--proto=icmp",
		"--cri-socket=/host/run/k3s/containerd/containerd.sock", "--duration=5.6s", "--probe=icmp", "--probe-count=3"}
	if c.Node != "node-a" || c.Namespace != "default" || c.Image != "registry.example/pathtrace:v1" || !slices.Equal(c.Args, want) {
		t.Errorf("created %s/%s on %s (%s) with %q, want default/* on node-a with %q", c.Namespace, c.Name, c.Node, c.Image, c.Args, want)
	}
	for key, want := range map[string]any{"hostPID": true, "hostNetwork": true, "nodeName": "node-a", "restartPolicy": "Never",
		"activeDeadlineSeconds": float64(5 + 120 + 60), "automountServiceAccountToken": false} {
		if got := c.Spec[key]; got != want {
			t.Errorf("spec.%s = %v, want %v", key, got, want)
		}
	}
	ctr := c.Spec["containers"].([]any)[0].(map[string]any)
	if sc := ctr["securityContext"].(map[string]any); sc["privileged"] != true {
		t.Errorf("securityContext %v, want privileged", sc)
	}
	if vol := c.Spec["volumes"].([]any)[0].(map[string]any); vol["hostPath"].(map[string]any)["path"] != "/" {
		t.Errorf("volume %v, want the node's / ", vol)
	}
	if stdout != "tracing   icmp 10.244.1.5 <-> 10.0.0.9\nVerdict: DROPPED\nafter the trace\n" {
		t.Errorf("stdout %q: want the pod's output without the trace, unprefixed (one node)", stdout)
	}
	if !strings.Contains(stderr, "kubectl pathtrace: pod default/"+c.Name+" traces on node node-a: pathtrace --color=never") {
		t.Errorf("stderr %q does not say which pod traces where", stderr)
	}
	if b, err := os.ReadFile(saved); err != nil || string(b) != `{"schema":"pathtrace/v1"}`+"\n" {
		t.Errorf("--json: %q, %v", b, err)
	}
	if left := f.left(); len(left) != 0 {
		t.Errorf("pods left: %v", left)
	}
}

// A pod on each node: each is given its own pod by name and the other's address, the probe is
// sent from the source's node only, output is prefixed by node, and the traces are merged.
func TestTwoNodes(t *testing.T) {
	f := cluster(t)
	for node, file := range map[string]string{"node-a": "node1.json", "node-b": "node2.json"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/merge/ping", file))
		if err != nil {
			t.Fatal(err)
		}
		f.logs[node] = "hello from " + node + "\n" + traceLog(t, string(b))
	}
	saved := filepath.Join(t.TempDir(), "merged.json")
	stdout, stderr, err := plugin(t, f, "--src=web", "--dst=default/db", "--proto=icmp", "--probe=icmp", "--json="+saved, "--color=never")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	args := map[string][]string{}
	for _, c := range f.created {
		args[c.Node] = c.Args
	}
	for node, want := range map[string][]string{
		"node-a": {"--src=default/web", "--dst=10.244.2.7", "--probe=icmp", "--probe-count=5"},
		"node-b": {"--src=10.244.1.5", "--dst=default/db"},
	} {
		for _, w := range want {
			if !slices.Contains(args[node], w) {
				t.Errorf("%s's pathtrace has %q, lacks %s", node, args[node], w)
			}
		}
	}
	if slices.ContainsFunc(args["node-b"], func(a string) bool { return strings.HasPrefix(a, "--probe") }) {
		t.Errorf("node-b probes too: %q", args["node-b"])
	}
	for _, want := range []string{"[node-a] hello from node-a", "[node-b] hello from node-b", "=== one journey across node-a, node-b ===", "Verdict: delivered"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if b, err := os.ReadFile(saved); err != nil || !bytes.Contains(b, []byte(`"nodes":`)) {
		t.Errorf("--json is not the merged trace (%v): %.200s", err, b)
	}
	if left := f.left(); len(left) != 0 {
		t.Errorf("pods left: %v", left)
	}
}

// --node chooses where to trace: a node where neither pod runs is given both by address.
func TestNodeForced(t *testing.T) {
	f := cluster(t)
	if _, stderr, err := plugin(t, f, "--node=node-c", "--src=default/web", "--dst=default/db", "--duration=1s"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(f.created) != 1 || f.created[0].Node != "node-c" {
		t.Fatalf("created %+v, want one pod on node-c", f.created)
	}
	if a := f.created[0].Args; !slices.Contains(a, "--src=10.244.1.5") || !slices.Contains(a, "--dst=10.244.2.7") {
		t.Errorf("node-c's pathtrace has %q, want both pods by address", a)
	}
	// Two pods on one node: one pathtrace there, given both by name.
	f = cluster(t)
	f.addPod("default", "cache", "node-a", "10.244.1.9")
	if _, stderr, err := plugin(t, f, "--src=web", "--dst=cache", "--duration=1s"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(f.created) != 1 || !slices.Contains(f.created[0].Args, "--dst=default/cache") {
		t.Errorf("created %+v, want one pod on node-a given both pods by name", f.created)
	}
}

// Each refusal is one line that says what to do, and no pod is left behind.
func TestErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(f *fakeAPI)
		args  []string
		want  string
	}{
		{"nothing to trace", nil, nil, "give --src and/or --dst"},
		{"no pod, no node", nil, []string{"--src=10.0.0.1", "--dst=10.0.0.2"}, "neither --src nor --dst is a pod: say where to trace with --node NODE"},
		{"probe from an address", nil, []string{"--node=node-a", "--src=10.0.0.1", "--dst=10.0.0.2", "--probe=icmp"}, "--probe sends from the source pod: --src must be a pod on a traced node"},
		{"unknown pod", nil, []string{"--src=default/nope", "--dst=1.2.3.4"}, "--src: pod default/nope not found (kubectl get pods -n default)"},
		{"unknown bare pod", nil, []string{"--src=web", "--dst=nope"}, "--dst: pod nope not found in namespace default (kubectl get pods -n default; give NAMESPACE/nope for another)"},
		{"pod in another namespace", func(f *fakeAPI) { f.addPod("team-a", "api", "node-a", "10.244.1.8") },
			[]string{"--src=api"}, "--src: pod api is not in namespace default but in team-a: give team-a/api (or -n team-a)"},
		{"ambiguous pod", func(f *fakeAPI) {
			f.addPod("team-b", "api", "node-b", "10.244.2.8")
			f.addPod("team-a", "api", "node-a", "10.244.1.8")
		}, []string{"--src=api"}, "--src: pod api is not in namespace default, and is in 2 others (team-a, team-b): say which, as NAMESPACE/api"},
		{"bad address", nil, []string{"--src=10.0.0.300"}, `--src: bad address "10.0.0.300"`},
		{"Windows node", func(f *fakeAPI) {
			f.addNode("win-1", "True", "KubeletReady", "windows")
			f.addPod("default", "iis", "win-1", "10.244.3.3")
		}, []string{"--src=default/web", "--dst=default/iis"}, "node win-1 runs windows: pathtrace traces Linux nodes only"},
		{"NotReady node", func(f *fakeAPI) { f.addNode("node-a", "False", "KubeletNotReady", "linux") },
			[]string{"--src=default/web"}, "node node-a is NotReady (KubeletNotReady): pathtrace cannot run there until it is Ready"},
		{"node never reported", func(f *fakeAPI) { f.addNode("node-a", "", "", "") },
			[]string{"--src=default/web"}, "node node-a is NotReady (its kubelet has not reported)"},
		{"unknown node", nil, []string{"--node=ghost", "--src=default/web"}, "node ghost not found (kubectl get nodes)"},
		{"RBAC", func(f *fakeAPI) {
			f.refuseCode, f.refuseMsg = 403, `pods is forbidden: User "viewer" cannot create resource "pods" in API group "" in the namespace "default"`
		}, []string{"--src=default/web"}, `cannot start pathtrace on node node-a in namespace default: RBAC forbids it: pods is forbidden: User "viewer" cannot create resource "pods" in API group "" in the namespace "default"`},
		{"PodSecurity", func(f *fakeAPI) {
			f.refuseCode, f.refuseMsg = 403, `pods "pathtrace-1" is forbidden: violates PodSecurity "baseline:latest": privileged (container "pathtrace" must not set securityContext.privileged=true)`
		}, []string{"-n", "apps", "--src=default/web"}, "cannot start pathtrace on node node-a in namespace apps: PodSecurity admission refuses a privileged pod here (" +
			`pods "pathtrace-1" is forbidden: violates PodSecurity "baseline:latest": privileged (container "pathtrace" must not set securityContext.privileged=true)` +
			"): label the namespace pod-security.kubernetes.io/enforce=privileged or use -n with a namespace that allows privileged pods"},
		{"image pull", func(f *fakeAPI) { f.waiting = "ErrImagePull" }, []string{"--src=default/web", "--image=localhost/absent:1"},
			"node node-a cannot pull the image localhost/absent:1 (ErrImagePull): load it on the node (ctr -n k8s.io images import) or set --image"},
		{"image pull, backing off", func(f *fakeAPI) { f.waiting = "ImagePullBackOff" }, []string{"--src=default/web"},
			"node node-a cannot pull the image " + buildinfo.Image() + " (ImagePullBackOff)"},
		{"trace cut in the log", func(f *fakeAPI) {
			lines := strings.SplitAfter(traceLog(f.t, strings.Repeat(`{"packet":1}`, 100000)), "\n")
			f.logs["node-a"] = "Verdict: delivered\n" + strings.Join(lines[:len(lines)/2], "")
		}, []string{"--src=default/web"}, "the trace of node node-a arrived incomplete: the log ends inside the trace"},
		{"trace cut, and its start rotated away", func(f *fakeAPI) {
			lines := strings.SplitAfter(traceLog(f.t, strings.Repeat(`{"packet":1}`, 100000)), "\n")
			f.logs["node-a"] = "Verdict: delivered\n" + strings.Join(lines[:len(lines)/2], "")
			f.relogs["node-a"] = strings.Join(append([]string{lines[0]}, lines[len(lines)/2:]...), "")
		}, []string{"--src=default/web"}, "the trace of node node-a arrived incomplete: the log ends inside the trace"},
		{"no trace in the log", func(f *fakeAPI) { f.logs["node-a"] = "pathtrace: needs root\n" }, []string{"--src=default/web"},
			"pathtrace on node node-a ended without a trace (its output is above)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := cluster(t)
			if c.setup != nil {
				c.setup(f)
			}
			_, _, err := plugin(t, f, c.args...)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("error %v\nwant   %s", err, c.want)
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %q", err)
			}
			if left := f.left(); len(left) != 0 {
				t.Errorf("pods left: %v", left)
			}
		})
	}
}

// The cluster cannot be reached, or does not take the credentials: said at once.
func TestNoCluster(t *testing.T) {
	_, _, err := plugin(t, nil, "--kubeconfig="+filepath.Join(t.TempDir(), "none"), "--src=default/web")
	if err == nil || !strings.HasPrefix(err.Error(), "no access to a cluster: kubeconfig: open ") {
		t.Errorf("no kubeconfig: %v", err)
	}
	f := cluster(t)
	path := f.kubeconfig()
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte("secret-token"), []byte("wrong")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = plugin(t, nil, "--kubeconfig="+path, "--src=default/web")
	if err == nil || !strings.Contains(err.Error(), "does not accept these credentials (401): check --kubeconfig/--context") {
		t.Errorf("wrong token: %v", err)
	}
	f.srv.Close()
	_, _, err = plugin(t, f, "--src=default/web")
	if err == nil || !strings.Contains(err.Error(), "no access to the cluster at "+f.srv.URL) {
		t.Errorf("server down: %v", err)
	}
}

// A followed log that missed lines (a rotation under the kubelet's follow, a broken stream)
// is read again once the pod has ended; a whole trace there is taken.
func TestTraceReadAgain(t *testing.T) {
	f := cluster(t)
	js := strings.Repeat(`{"packet":1}`, 100000)
	lines := strings.SplitAfter(traceLog(t, js), "\n")
	f.logs["node-a"] = "Verdict: delivered\n" + strings.Join(lines[:len(lines)/2], "")
	f.relogs["node-a"] = "Verdict: delivered\n" + strings.Join(lines, "")
	saved := filepath.Join(t.TempDir(), "trace.json")
	stdout, stderr, err := plugin(t, f, "--src=default/web", "--json="+saved)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(saved); err != nil || string(b) != js {
		t.Errorf("--json holds %d bytes (%v), want the %d of the trace", len(b), err, len(js))
	}
	if stdout != "Verdict: delivered\n" {
		t.Errorf("stdout %q: the output is shown once", stdout)
	}
	if !strings.Contains(stderr, "kubectl pathtrace: the log followed from node node-a missed part of the trace (the log ends inside the trace, after ") ||
		!strings.Contains(stderr, "; read again: whole") {
		t.Errorf("stderr does not say the trace was read again:\n%s", stderr)
	}
}

// cleanup deletes every pod labelled as kubectl-pathtrace's, in every namespace.
func TestCleanup(t *testing.T) {
	f := cluster(t)
	for _, key := range []string{"default/pathtrace-aaaaaa", "ops/pathtrace-bbbbbb"} {
		ns, name, _ := strings.Cut(key, "/")
		f.addPod(ns, name, "node-a", "")
	}
	api, err := loadAPI(options{Kubeconfig: f.kubeconfig()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cleanup(context.Background(), api, "")
	if err != nil || n != 2 {
		t.Fatalf("cleanup: %d, %v; want 2 deleted", n, err)
	}
	slices.Sort(f.deleted)
	if !slices.Equal(f.deleted, []string{"default/pathtrace-aaaaaa", "ops/pathtrace-bbbbbb"}) || len(f.left()) != 0 {
		t.Errorf("deleted %v, left %v", f.deleted, f.left())
	}
}
