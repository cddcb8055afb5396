package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pathtrace/pathtrace/analysis/merge"
	"github.com/pathtrace/pathtrace/internal/kube"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
)

// Labels that mark a pod as kubectl-pathtrace's.
const (
	managedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "kubectl-pathtrace"
	selector       = managedByLabel + "=" + managedBy
)

func loadAPI(o options) (*kube.API, error) {
	api, err := kube.LoadAPI(kube.APIOptions{Kubeconfig: o.Kubeconfig, Context: o.Context})
	if err != nil {
		return nil, fmt.Errorf("no access to a cluster: %w", err)
	}
	return api, nil
}

// side is --src or --dst resolved: a pod (with its node and addresses) or an address.
type side struct {
	flag, value string
	pod         *kube.APIPod
}

// arg is what pathtrace on node is given for this side: the pod by name on its own node (the
// node's runtime then finds its namespace), else its address.
func (s side) arg(node string) string {
	if s.pod == nil {
		return s.value
	}
	if s.pod.Node == node {
		return s.pod.Key()
	}
	return s.pod.IPs[0].String()
}

func resolve(ctx context.Context, api *kube.API, ns, flag, value string) (side, error) {
	s := side{flag: flag, value: value}
	if value == "" {
		return s, nil
	}
	ref, isPod, err := kube.ParsePodRef(value)
	if err != nil {
		return s, fmt.Errorf("%s: %w", flag, err)
	}
	if !isPod {
		return s, nil
	}
	pns := ref.Namespace
	if pns == "" {
		pns = ns
	}
	p, err := api.Pod(ctx, pns, ref.Name)
	switch {
	case errors.Is(err, kube.ErrPodNotFound) && ref.Namespace == "":
		return s, notInNamespace(ctx, api, flag, pns, ref.Name)
	case errors.Is(err, kube.ErrPodNotFound):
		return s, fmt.Errorf("%s: pod %s/%s not found (kubectl get pods -n %s)", flag, pns, ref.Name, pns)
	case err != nil:
		return s, fmt.Errorf("%s: %w", flag, apiError(err))
	case p.Node == "":
		return s, fmt.Errorf("%s: pod %s is not scheduled on a node yet", flag, p.Key())
	case p.HostNetwork:
		return s, fmt.Errorf("%s: pod %s uses the host's network: trace its node's address with --node %s", flag, p.Key(), p.Node)
	case len(p.IPs) == 0:
		return s, fmt.Errorf("%s: pod %s has no IP address yet (phase %s)", flag, p.Key(), p.Phase)
	}
	s.pod = &p
	return s, nil
}

// notInNamespace is the error for a pod named without a namespace that is not in -n's: it says
// in which namespaces a pod of that name is, when the API lets us list them, so the user can
// say which one is meant (a bare name is never guessed: it is -n's, as for kubectl).
func notInNamespace(ctx context.Context, api *kube.API, flag, ns, name string) error {
	notFound := fmt.Errorf("%s: pod %s not found in namespace %s (kubectl get pods -n %s; give NAMESPACE/%s for another)", flag, name, ns, ns, name)
	others, err := api.PodsNamed(ctx, name)
	if err != nil || len(others) == 0 {
		return notFound
	}
	var where []string
	for _, p := range others {
		where = append(where, p.Namespace)
	}
	sort.Strings(where)
	if len(where) == 1 {
		return fmt.Errorf("%s: pod %s is not in namespace %s but in %s: give %s/%s (or -n %s)", flag, name, ns, where[0], where[0], name, where[0])
	}
	return fmt.Errorf("%s: pod %s is not in namespace %s, and is in %d others (%s): say which, as NAMESPACE/%s", flag, name, ns, len(where), strings.Join(where, ", "), name)
}

// node is what the plugin checks of a node before tracing on it.
type nodeJSON struct {
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		Conditions []struct {
			Type, Status, Reason string
		} `json:"conditions"`
		NodeInfo struct {
			OperatingSystem string `json:"operatingSystem"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

func checkNode(ctx context.Context, api *kube.API, name string) error {
	var n nodeJSON
	if err := api.Do(ctx, http.MethodGet, "/api/v1/nodes/"+kube.PathEscape(name), nil, &n); err != nil {
		var se *kube.APIStatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			return fmt.Errorf("node %s not found (kubectl get nodes)", name)
		}
		if errors.As(err, &se) && se.Code == http.StatusForbidden {
			return nil // a user who may not read nodes may still trace: the pod's status says the rest
		}
		return apiError(err)
	}
	os := n.Status.NodeInfo.OperatingSystem
	if os == "" {
		os = n.Metadata.Labels["kubernetes.io/os"]
	}
	if os != "" && os != "linux" {
		return fmt.Errorf("node %s runs %s: pathtrace traces Linux nodes only", name, os)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status != "True" {
				return fmt.Errorf("node %s is NotReady (%s): pathtrace cannot run there until it is Ready", name, c.Reason)
			}
			return nil
		}
	}
	return fmt.Errorf("node %s is NotReady (its kubelet has not reported): pathtrace cannot run there until it is Ready", name)
}

// apiError turns the API's refusals into what to do.
func apiError(err error) error {
	var se *kube.APIStatusError
	if !errors.As(err, &se) {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("no access to the cluster at %s: %v", ue.URL, ue.Err)
		}
		return err
	}
	switch {
	case se.Code == http.StatusUnauthorized:
		return fmt.Errorf("the cluster at %s does not accept these credentials (401): check --kubeconfig/--context", se.Server)
	case strings.Contains(se.Message, "violates PodSecurity"):
		return fmt.Errorf("PodSecurity admission refuses a privileged pod here (%s): label the namespace pod-security.kubernetes.io/enforce=privileged or use -n with a namespace that allows privileged pods", se.Message)
	case se.Code == http.StatusForbidden:
		return fmt.Errorf("RBAC forbids it: %s", se.Message)
	}
	return err
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.Src == "" && o.Dst == "" {
		return errors.New("give --src and/or --dst (a pod as NS/POD, or an address)")
	}
	api, err := loadAPI(o)
	if err != nil {
		return err
	}
	ns := o.Namespace
	if ns == "" {
		ns = api.Namespace
	}
	if ns == "" {
		ns = "default"
	}
	src, err := resolve(ctx, api, ns, "--src", o.Src)
	if err != nil {
		return err
	}
	dst, err := resolve(ctx, api, ns, "--dst", o.Dst)
	if err != nil {
		return err
	}
	nodes := o.Node
	if len(nodes) == 0 {
		for _, s := range []side{src, dst} {
			if s.pod != nil && !contains(nodes, s.pod.Node) {
				nodes = append(nodes, s.pod.Node)
			}
		}
	}
	if len(nodes) == 0 {
		return errors.New("neither --src nor --dst is a pod: say where to trace with --node NODE")
	}
	if o.Probe != "" && (src.pod == nil || !contains(nodes, src.pod.Node)) {
		return errors.New("--probe sends from the source pod: --src must be a pod on a traced node")
	}
	for _, n := range nodes {
		if err := checkNode(ctx, api, n); err != nil {
			return err
		}
	}
	if o.Probe != "" && o.Duration == 0 && o.Count == 0 {
		o.Duration = time.Duration(o.ProbeCount)*200*time.Millisecond + 5*time.Second
	}

	// From here on every ending deletes the pods, with a context of its own (ctx may be done).
	s := &session{api: api, ns: ns, stderr: stderr, prefix: len(nodes) > 1}
	defer s.deleteAll()
	for _, n := range nodes {
		if err := s.create(ctx, n, o, src, dst); err != nil {
			return err
		}
	}
	traces, err := s.collect(ctx, o, stdout)
	if err != nil {
		return err
	}
	return s.finish(o, traces, stdout)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

type session struct {
	api    *kube.API
	ns     string
	stderr io.Writer
	prefix bool

	mu   sync.Mutex
	pods []tracePod
}

type tracePod struct{ node, name string }

func (s *session) create(ctx context.Context, node string, o options, src, dst side) error {
	args := []string{"pathtrace", "--color=never", "--json=/tmp/trace.json", "--emit-json"}
	for _, a := range [][2]string{{"--src", src.arg(node)}, {"--dst", dst.arg(node)}, {"--proto", o.Proto}, {"--sport", o.Sport}, {"--dport", o.Dport}} {
		if a[1] != "" {
			args = append(args, a[0]+"="+a[1])
		}
	}
	if o.CRISocket != "" {
		args = append(args, "--cri-socket=/host"+o.CRISocket) // the node's root is at /host
	}
	if o.Duration > 0 {
		args = append(args, "--duration="+o.Duration.String())
	}
	if o.Count > 0 {
		args = append(args, fmt.Sprintf("--count=%d", o.Count))
	}
	if o.Probe != "" && src.pod != nil && src.pod.Node == node {
		args = append(args, "--probe="+o.Probe, fmt.Sprintf("--probe-count=%d", o.ProbeCount))
	}
	// A pod outlives a crashed plugin by at most this long.
	deadline := int64(3600)
	if o.Duration > 0 {
		deadline = int64(o.Duration/time.Second) + int64(o.Timeout/time.Second) + 60
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := "pathtrace-" + hex.EncodeToString(b)
	privileged := true
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"name": name, "namespace": s.ns,
			"labels": map[string]string{managedByLabel: managedBy, "app.kubernetes.io/name": "pathtrace"},
		},
		"spec": map[string]any{
			"nodeName": node, "hostPID": true, "hostNetwork": true, "restartPolicy": "Never",
			"automountServiceAccountToken": false, "activeDeadlineSeconds": deadline,
			"terminationGracePeriodSeconds": 10, "enableServiceLinks": false,
			"tolerations": []map[string]string{{"operator": "Exists"}},
			"containers": []map[string]any{{
				"name": "pathtrace", "image": o.Image, "imagePullPolicy": "IfNotPresent",
				"args":            args[1:], // the image's entrypoint is pathtrace
				"securityContext": map[string]any{"privileged": privileged},
				"volumeMounts":    []map[string]any{{"name": "host", "mountPath": "/host"}},
			}},
			"volumes": []map[string]any{{"name": "host", "hostPath": map[string]string{"path": "/"}}},
		},
	}
	if err := s.api.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+kube.PathEscape(s.ns)+"/pods", pod, nil); err != nil {
		return fmt.Errorf("cannot start pathtrace on node %s in namespace %s: %w", node, s.ns, apiError(err))
	}
	s.mu.Lock()
	s.pods = append(s.pods, tracePod{node: node, name: name})
	s.mu.Unlock()
	fmt.Fprintf(s.stderr, "kubectl pathtrace: pod %s/%s traces on node %s: %s\n", s.ns, name, node, strings.Join(args, " "))
	return nil
}

// deleteAll deletes the session's pods, on every ending.
func (s *session) deleteAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pods {
		err := s.api.Do(ctx, http.MethodDelete, "/api/v1/namespaces/"+kube.PathEscape(s.ns)+"/pods/"+kube.PathEscape(p.name)+"?gracePeriodSeconds=0", nil, nil)
		var se *kube.APIStatusError
		if err != nil && !(errors.As(err, &se) && se.Code == http.StatusNotFound) {
			fmt.Fprintf(s.stderr, "kubectl pathtrace: could not delete pod %s/%s: %v (kubectl pathtrace cleanup)\n", s.ns, p.name, err)
		}
	}
	s.pods = nil
}

type podStatus struct {
	Status struct {
		Phase             string `json:"phase"`
		Reason            string `json:"reason"`
		Message           string `json:"message"`
		ContainerStatuses []struct {
			State struct {
				Waiting *struct {
					Reason, Message string
				} `json:"waiting"`
				Running    *struct{} `json:"running"`
				Terminated *struct {
					ExitCode int `json:"exitCode"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// waitStarted waits until the pod's container runs or ran, and says why it cannot start.
func (s *session) waitStarted(ctx context.Context, p tracePod, o options) error {
	deadline := time.Now().Add(o.Timeout)
	for {
		var st podStatus
		if err := s.api.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+kube.PathEscape(s.ns)+"/pods/"+kube.PathEscape(p.name), nil, &st); err != nil {
			return apiError(err)
		}
		for _, c := range st.Status.ContainerStatuses {
			if c.State.Running != nil || c.State.Terminated != nil {
				return nil
			}
			if w := c.State.Waiting; w != nil {
				switch w.Reason {
				case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
					return fmt.Errorf("node %s cannot pull the image %s (%s): load it on the node (ctr -n k8s.io images import) or set --image", p.node, o.Image, w.Reason)
				case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
					return fmt.Errorf("node %s cannot start pathtrace: %s: %s", p.node, w.Reason, w.Message)
				}
			}
		}
		if st.Status.Phase == "Failed" {
			return fmt.Errorf("pathtrace's pod on node %s failed: %s %s", p.node, st.Status.Reason, st.Status.Message)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pathtrace's pod on node %s did not start within %s (phase %s)", p.node, o.Timeout, st.Status.Phase)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// collect streams every pod's log (prefixed by node when there are several) until the pods end,
// and returns each node's trace JSON. On Ctrl-C the pods are deleted, which stops pathtrace with
// SIGTERM: it still prints its verdict and trace, which are collected.
func (s *session) collect(ctx context.Context, o options, stdout io.Writer) (map[string][]byte, error) {
	traces := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(s.pods))
	streamCtx, cancelStreams := context.WithCancel(context.Background())
	defer cancelStreams()
	for _, p := range s.pods {
		if err := s.waitStarted(ctx, p, o); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func(p tracePod) {
			defer wg.Done()
			js, err := s.follow(streamCtx, p, stdout)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			traces[p.node] = js
			mu.Unlock()
		}(p)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		fmt.Fprintln(s.stderr, "kubectl pathtrace: stopping the pods")
		s.stopPods()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cancelStreams()
			<-done
		}
	}
	close(errs)
	for err := range errs {
		return nil, err
	}
	return traces, nil
}

// stopPods asks the pods to end (SIGTERM to pathtrace, which then prints its verdict).
func (s *session) stopPods() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range s.pods {
		_ = s.api.Do(ctx, http.MethodDelete, "/api/v1/namespaces/"+kube.PathEscape(s.ns)+"/pods/"+kube.PathEscape(p.name)+"?gracePeriodSeconds=10", nil, nil)
	}
}

func (s *session) follow(ctx context.Context, p tracePod, stdout io.Writer) ([]byte, error) {
	path := "/api/v1/namespaces/" + kube.PathEscape(s.ns) + "/pods/" + kube.PathEscape(p.name) + "/log?follow=true&container=pathtrace"
	body, err := s.api.Stream(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("logs of pathtrace on node %s: %w", p.node, apiError(err))
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var tl kube.TraceLog
	for sc.Scan() {
		line := sc.Text()
		if tl.Line(line) {
			continue
		}
		s.mu.Lock()
		if s.prefix {
			fmt.Fprintf(stdout, "[%s] %s\n", p.node, line)
		} else {
			fmt.Fprintln(stdout, line)
		}
		s.mu.Unlock()
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("logs of pathtrace on node %s: %w", p.node, err)
	}
	js, err := tl.Trace()
	if err != nil && !errors.Is(err, kube.ErrNoTrace) {
		// The followed stream missed lines: it broke, or the kubelet rotated the log under
		// it. The pod has ended and is still there: its log, read again from the start of
		// the newest file, may hold the whole trace.
		if again, aerr := s.reread(ctx, p); aerr == nil {
			fmt.Fprintf(s.stderr, "kubectl pathtrace: the log followed from node %s missed part of the trace (%v); read again: whole\n", p.node, err)
			return again, nil
		}
	}
	switch {
	case errors.Is(err, kube.ErrNoTrace):
		return nil, fmt.Errorf("pathtrace on node %s ended without a trace (its output is above)", p.node)
	case err != nil:
		return nil, fmt.Errorf("the trace of node %s arrived incomplete: %v: its log was cut (the node's kubelet containerLogMaxSize, or a broken stream); trace fewer packets (--count, --duration) or raise the limit", p.node, err)
	}
	return js, nil
}

// reread reads the pod's log once more, not followed, for its trace only.
func (s *session) reread(ctx context.Context, p tracePod) ([]byte, error) {
	path := "/api/v1/namespaces/" + kube.PathEscape(s.ns) + "/pods/" + kube.PathEscape(p.name) + "/log?container=pathtrace"
	body, err := s.api.Stream(ctx, path)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var tl kube.TraceLog
	for sc.Scan() {
		tl.Line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return tl.Trace()
}

// finish writes --json and, for several nodes, prints the merged journey and its verdict.
func (s *session) finish(o options, traces map[string][]byte, stdout io.Writer) error {
	dir, err := os.MkdirTemp("", "kubectl-pathtrace")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var nodes []string
	for n := range traces {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var paths []string
	for _, n := range nodes {
		p := filepath.Join(dir, n+".json")
		if err := os.WriteFile(p, traces[n], 0o600); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	if len(paths) == 1 {
		if o.JSON != "" {
			return os.WriteFile(o.JSON, traces[nodes[0]], 0o644)
		}
		return nil
	}
	streams := make([]merge.Stream, len(paths))
	for i, p := range paths {
		r, err := jsontrace.OpenFile(p)
		if err != nil {
			return err
		}
		defer r.Close()
		streams[i] = r
	}
	inputs, _, err := merge.Gather(nodes, streams, merge.DefaultMaxPackets)
	if err != nil {
		return err
	}
	merged, report, err := merge.Merge(inputs...)
	if err != nil {
		return err
	}
	if o.JSON != "" {
		f, err := os.Create(o.JSON)
		if err != nil {
			return err
		}
		if err := jsontrace.Write(f, merged); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", o.JSON, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\n=== one journey across %s ===\n", strings.Join(nodes, ", "))
	color := o.Color == "always" || (o.Color == "auto" && text.AutoColor(os.Stdout))
	if err := text.Render(stdout, merged, text.Options{Color: color}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "\n%s\n", report)
	return err
}

// cleanup deletes every pod labelled as kubectl-pathtrace's, in namespace ns ("" for all).
func cleanup(ctx context.Context, api *kube.API, ns string) (int, error) {
	path := "/api/v1/pods?labelSelector=" + url.QueryEscape(selector)
	if ns != "" {
		path = "/api/v1/namespaces/" + kube.PathEscape(ns) + "/pods?labelSelector=" + url.QueryEscape(selector)
	}
	var l struct {
		Items []struct {
			Metadata struct{ Name, Namespace string } `json:"metadata"`
		} `json:"items"`
	}
	if err := api.Do(ctx, http.MethodGet, path, nil, &l); err != nil {
		return 0, apiError(err)
	}
	n := 0
	for _, it := range l.Items {
		err := api.Do(ctx, http.MethodDelete, "/api/v1/namespaces/"+kube.PathEscape(it.Metadata.Namespace)+"/pods/"+kube.PathEscape(it.Metadata.Name)+"?gracePeriodSeconds=0", nil, nil)
		if err != nil {
			return n, apiError(err)
		}
		fmt.Printf("deleted pod %s/%s\n", it.Metadata.Namespace, it.Metadata.Name)
		n++
	}
	return n, nil
}
