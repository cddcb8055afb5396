package main

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The manifests in deploy/ are decoded strictly into the Kubernetes API's own types (a
// misspelt or misplaced field is an error, as `kubectl apply --validate=strict` would say),
// and the pathtrace container's args are parsed by this command's own flags: a typo there
// would otherwise show only on a cluster, as a pod that exits at once.

const deployDir = "../../deploy"

// image is what `make image` names the image (Makefile's IMAGE).
const image = "localhost/pathtrace:dev"

func decodeStrict(t *testing.T, file, apiVersion, kind string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, file))
	if err != nil {
		t.Fatal(err)
	}
	// As the API server decodes: duplicate keys, unknown fields and fields spelt in another
	// case (hostPid for hostPID, which encoding/json would take) are all errors.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	strict, err := kjson.UnmarshalStrict(js, into)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(strict) > 0 {
		t.Fatalf("%s: %v", file, errors.Join(strict...))
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &tm); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s is a %s %s, want %s %s", file, tm.APIVersion, tm.Kind, apiVersion, kind)
	}
}

func TestDeployNamespace(t *testing.T) {
	var ns corev1.Namespace
	decodeStrict(t, "namespace.yaml", "v1", "Namespace", &ns)
	if ns.Name != "pathtrace" {
		t.Errorf("namespace %q, the workloads use pathtrace", ns.Name)
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("Pod Security enforce level %q: the pods are privileged and would be refused", got)
	}
}

func TestDeployDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	decodeStrict(t, "daemonset.yaml", "apps/v1", "DaemonSet", &ds)
	if ds.Namespace != "pathtrace" {
		t.Errorf("namespace %q, want pathtrace (deploy/namespace.yaml)", ds.Namespace)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not select the template's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	spec := ds.Spec.Template.Spec
	if !tolerateAll(spec.Tolerations) {
		t.Errorf("tolerations %+v: want one that tolerates every taint (operator Exists, no key)", spec.Tolerations)
	}
	checkTracerPod(t, spec)
	// The pod stays up after the trace, with tar, for kubectl cp.
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want the one that waits for kubectl cp", len(spec.Containers))
	}
	if !mounts(spec.Containers[0], "traces", "/var/log/pathtrace") {
		t.Errorf("container %s does not mount the traces at /var/log/pathtrace: kubectl cp would find nothing", spec.Containers[0].Name)
	}
}

func TestDeployJob(t *testing.T) {
	var job batchv1.Job
	decodeStrict(t, "job.yaml", "batch/v1", "Job", &job)
	if job.Namespace != "pathtrace" {
		t.Errorf("namespace %q, want pathtrace (deploy/namespace.yaml)", job.Namespace)
	}
	spec := job.Spec.Template.Spec
	if spec.NodeName == "" {
		t.Error("the Job is not pinned to a node (spec.template.spec.nodeName)")
	}
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q: a trace that failed would run again", spec.RestartPolicy)
	}
	json := checkTracerPod(t, spec)
	// The JSON is collected from the log of the container that prints it.
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want the one that prints the JSON", len(spec.Containers))
	}
	c := spec.Containers[0]
	cmd, err := expand(c.Command, c.Env, spec.NodeName)
	if err != nil {
		t.Fatalf("container %s: %v", c.Name, err)
	}
	if len(cmd) != 2 || cmd[0] != "cat" || cmd[1] != json {
		t.Errorf("container %s runs %q, want cat %s (the file pathtrace wrote)", c.Name, cmd, json)
	}
	if !mounts(c, "traces", "/var/log/pathtrace") {
		t.Errorf("container %s does not mount the traces at /var/log/pathtrace", c.Name)
	}
}

// checkTracerPod checks what every pathtrace pod needs and returns the JSON file the
// pathtrace container writes, as it is inside the container.
func checkTracerPod(t *testing.T, spec corev1.PodSpec) string {
	t.Helper()
	if !spec.HostNetwork || !spec.HostPID {
		t.Errorf("hostNetwork %v, hostPID %v: pathtrace needs the node's network and PID namespaces", spec.HostNetwork, spec.HostPID)
	}
	var c *corev1.Container
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "pathtrace" {
			c = &spec.InitContainers[i]
		}
	}
	if c == nil {
		t.Fatal("no init container named pathtrace: the trace must end before the pod's other container runs")
	}
	if c.Image != image {
		t.Errorf("image %q, want %q (what make image builds)", c.Image, image)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the pathtrace container is not privileged: BPF and nftables need it")
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	used := map[string]bool{}
	for _, ct := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, m := range ct.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				t.Errorf("container %s mounts volume %q, which the pod does not have", ct.Name, m.Name)
			}
			used[m.Name] = true
		}
	}
	for name := range volumes {
		if !used[name] {
			t.Errorf("volume %q is mounted by no container", name)
		}
	}
	// The node's paths pathtrace reads: its root at /host (as kubectl debug node mounts it;
	// the CRI socket and named network namespaces are found under it), BTF, tracefs.
	want := []struct {
		hostPath, mountPath string
		readOnly            bool
	}{
		{"/", "/host", true},
		{"/sys/kernel/btf", "/sys/kernel/btf", true},
		{"/sys/kernel/tracing", "/sys/kernel/tracing", true},
		{"/var/log/pathtrace", "/var/log/pathtrace", false},
	}
	for _, w := range want {
		found := false
		for _, m := range c.VolumeMounts {
			v := volumes[m.Name]
			if m.MountPath != w.mountPath || v.HostPath == nil || v.HostPath.Path != w.hostPath {
				continue
			}
			found = true
			if m.ReadOnly != w.readOnly {
				t.Errorf("%s at %s: readOnly %v, want %v", w.hostPath, w.mountPath, m.ReadOnly, w.readOnly)
			}
		}
		if !found {
			t.Errorf("the pathtrace container does not mount the node's %s at %s", w.hostPath, w.mountPath)
		}
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/host" && (m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer) {
			t.Error("/host is not mounted HostToContainer: network namespaces of pods started during the trace would not be seen")
		}
	}

	args, err := expand(c.Args, c.Env, "node-a")
	if err != nil {
		t.Fatalf("pathtrace args: %v", err)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q replaces the image's entrypoint; give pathtrace's flags as args", c.Command)
	}
	cmd := newRootCmd()
	sub, rest, err := cmd.Find(args)
	if err != nil {
		t.Fatalf("pathtrace %q: %v", args, err)
	}
	if err := sub.ParseFlags(rest); err != nil {
		t.Fatalf("pathtrace %q: %v", args, err)
	}
	if err := sub.ValidateArgs(sub.Flags().Args()); err != nil {
		t.Fatalf("pathtrace %q: %v", args, err)
	}
	if sub != cmd {
		t.Fatalf("args run pathtrace %s, want a trace", sub.Name())
	}
	fl := sub.Flags()
	if d, _ := fl.GetDuration("duration"); d <= 0 || d > time.Hour {
		t.Errorf("--duration %s: the trace must end by itself for the pod to go on (and within an hour)", d)
	}
	if color, _ := fl.GetString("color"); color != "never" {
		t.Errorf("--color %q: logs are no terminal, say never", color)
	}
	if fl.Lookup("src").Value.String() == "" && fl.Lookup("dst").Value.String() == "" {
		t.Error("neither --src nor --dst: every packet on every node would be traced")
	}
	json, _ := fl.GetString("json")
	if filepath.Dir(json) != "/var/log/pathtrace" || !strings.Contains(filepath.Base(json), "node-a") {
		t.Errorf("--json %q: want /var/log/pathtrace/<node name>.json, on the node's disk and one file per node", json)
	}
	return json
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) the way the kubelet does for the variables the container's env
// defines (the node name from the downward API becomes node); an undefined one is an error,
// because the kubelet would leave it as it is, literally.
func expand(args []string, env []corev1.EnvVar, node string) ([]string, error) {
	vals := map[string]string{}
	for _, e := range env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			vals[e.Name] = node
		case e.ValueFrom == nil:
			vals[e.Name] = e.Value
		}
	}
	var out []string
	var missing []string
	for _, a := range args {
		out = append(out, varRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := vals[name]
			if !ok {
				missing = append(missing, name)
			}
			return v
		}))
	}
	if len(missing) > 0 {
		return nil, &undefinedVars{missing}
	}
	return out, nil
}

type undefinedVars struct{ names []string }

func (u *undefinedVars) Error() string {
	return "$(" + strings.Join(u.names, "), $(") + ") not defined in the container's env"
}

func tolerateAll(ts []corev1.Toleration) bool {
	for _, t := range ts {
		if t.Operator == corev1.TolerationOpExists && t.Key == "" && t.Effect == "" {
			return true
		}
	}
	return false
}

func mounts(c corev1.Container, volume, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPath == path {
			return true
		}
	}
	return false
}

// TestImageRecipesAgree: the Dockerfile's final stage and deploy/Containerfile.prebuilt
// (make image) must make the same image, only the binary's origin differs.
func TestImageRecipesAgree(t *testing.T) {
	docker := finalStage(t, "../../Dockerfile")
	prebuilt := finalStage(t, filepath.Join(deployDir, "Containerfile.prebuilt"))
	norm := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if strings.HasPrefix(l, "COPY ") {
				l = "COPY <rootfs> " + l[strings.LastIndex(l, " ")+1:]
			}
			out = append(out, l)
		}
		return out
	}
	d, p := norm(docker), norm(prebuilt)
	if strings.Join(d, "\n") != strings.Join(p, "\n") {
		t.Errorf("final stages differ:\nDockerfile:\n  %s\nContainerfile.prebuilt:\n  %s", strings.Join(docker, "\n  "), strings.Join(prebuilt, "\n  "))
	}
	if len(d) == 0 || d[0] != "FROM scratch" {
		t.Errorf("final stage %q: want FROM scratch", d)
	}
	if !containsLine(d, `ENTRYPOINT ["/usr/local/bin/pathtrace"]`) {
		t.Errorf("final stage %q: want ENTRYPOINT [\"/usr/local/bin/pathtrace\"]", d)
	}
}

// finalStage returns the instructions from the last FROM on, comments and blank lines left
// out, continuation lines joined.
func finalStage(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	cont := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		joined := strings.TrimSuffix(l, `\`)
		if cont {
			lines[len(lines)-1] += " " + strings.TrimSpace(joined)
		} else {
			lines = append(lines, strings.TrimSpace(joined))
		}
		cont = strings.HasSuffix(l, `\`)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			last = i
		}
	}
	if last < 0 {
		t.Fatalf("%s has no FROM", file)
	}
	return lines[last:]
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}
