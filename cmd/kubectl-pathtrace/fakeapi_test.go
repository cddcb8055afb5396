package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pathtrace/pathtrace/internal/kube"
)

// fakeAPI is a Kubernetes API server (httptest, TLS) that serves what kubectl-pathtrace asks
// for: pods and nodes to read, pods to create (each created pod runs at once, or waits for
// the reason set in waiting), their logs (logs: per node, the pathtrace output), deletions and
// the label-selected list of cleanup.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	pods    map[string]map[string]any // "ns/name" -> a v1 Pod
	nodes   map[string]map[string]any // name -> a v1 Node
	created []createdPod              // pods posted, in order
	deleted []string                  // "ns/name"
	// refuse answers every POST of a pod with this status code and message (0: none).
	refuseCode int
	refuseMsg  string
	// waiting is the container's waiting reason of every created pod ("": it runs).
	waiting string
	// logs is each node's pod log, as followed; a node without one logs a trace of "{}".
	// relogs is what a later read, not followed, gives (default: logs).
	logs, relogs map[string]string
}

type createdPod struct {
	Namespace, Name, Node, Image string
	Args                         []string
	Spec                         map[string]any
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, pods: map[string]map[string]any{}, nodes: map[string]map[string]any{}, logs: map[string]string{}, relogs: map[string]string{}}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) addPod(ns, name, node, ip string) {
	f.pods[ns+"/"+name] = map[string]any{
		"metadata": map[string]any{"name": name, "namespace": ns, "uid": "uid-" + name},
		"spec":     map[string]any{"nodeName": node},
		"status":   map[string]any{"phase": "Running", "podIP": ip, "podIPs": []map[string]string{{"ip": ip}}},
	}
}

// addNode adds a node; ready "True", "False" or "" (no Ready condition); os "" says none.
func (f *fakeAPI) addNode(name, ready, reason, os string) {
	var conds []map[string]string
	if ready != "" {
		conds = append(conds, map[string]string{"type": "Ready", "status": ready, "reason": reason})
	}
	f.nodes[name] = map[string]any{
		"metadata": map[string]any{"name": name, "labels": map[string]string{"kubernetes.io/os": os}},
		"status":   map[string]any{"conditions": conds, "nodeInfo": map[string]string{"operatingSystem": os}},
	}
}

func (f *fakeAPI) status(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "status": "Failure", "message": msg, "code": code})
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer secret-token" {
		f.status(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 4 && parts[2] == "nodes":
		n, ok := f.nodes[parts[3]]
		if !ok {
			f.status(w, http.StatusNotFound, fmt.Sprintf("nodes %q not found", parts[3]))
			return
		}
		_ = json.NewEncoder(w).Encode(n)
	case r.Method == http.MethodGet && len(parts) == 3 && parts[2] == "pods":
		// every namespace: by name (fieldSelector) or kubectl-pathtrace's (labelSelector)
		var items []map[string]any
		name := strings.TrimPrefix(r.URL.Query().Get("fieldSelector"), "metadata.name=")
		for key, p := range f.pods {
			_, n, _ := strings.Cut(key, "/")
			if name != "" && n == name || r.URL.Query().Get("labelSelector") == selector && strings.HasPrefix(n, "pathtrace-") {
				items = append(items, p)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	case r.Method == http.MethodPost && len(parts) == 5 && parts[4] == "pods":
		if f.refuseCode != 0 {
			f.status(w, f.refuseCode, f.refuseMsg)
			return
		}
		var pod struct {
			Metadata struct {
				Name      string            `json:"name"`
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec map[string]any `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&pod); err != nil {
			f.status(w, http.StatusBadRequest, err.Error())
			return
		}
		c := pod.Spec["containers"].([]any)[0].(map[string]any)
		cp := createdPod{Namespace: parts[3], Name: pod.Metadata.Name, Node: pod.Spec["nodeName"].(string), Image: c["image"].(string), Spec: pod.Spec}
		for _, a := range c["args"].([]any) {
			cp.Args = append(cp.Args, a.(string))
		}
		f.created = append(f.created, cp)
		state := map[string]any{"running": map[string]any{}}
		if f.waiting != "" {
			state = map[string]any{"waiting": map[string]any{"reason": f.waiting, "message": "pull access denied"}}
		}
		f.pods[parts[3]+"/"+pod.Metadata.Name] = map[string]any{
			"metadata": map[string]any{"name": pod.Metadata.Name, "namespace": parts[3], "labels": pod.Metadata.Labels},
			"spec":     pod.Spec,
			"status":   map[string]any{"phase": "Running", "containerStatuses": []map[string]any{{"state": state}}},
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("{}"))
	case len(parts) >= 6 && parts[4] == "pods":
		key := parts[3] + "/" + parts[5]
		p, ok := f.pods[key]
		switch {
		case !ok:
			f.status(w, http.StatusNotFound, fmt.Sprintf("pods %q not found", parts[5]))
		case r.Method == http.MethodDelete:
			delete(f.pods, key)
			f.deleted = append(f.deleted, key)
			_, _ = w.Write([]byte("{}"))
		case len(parts) == 7 && parts[6] == "log":
			node := p["spec"].(map[string]any)["nodeName"].(string)
			log, ok := f.logs[node]
			if again, ok2 := f.relogs[node]; ok2 && r.URL.Query().Get("follow") != "true" {
				log, ok = again, true
			}
			if !ok {
				log = "Verdict: delivered\n" + traceLog(f.t, "{}\n")
			}
			_, _ = w.Write([]byte(log))
		case len(parts) == 6:
			_ = json.NewEncoder(w).Encode(p)
		default:
			f.status(w, http.StatusNotFound, "no such path")
		}
	default:
		f.status(w, http.StatusNotFound, "the fake serves no "+r.Method+" "+r.URL.Path)
	}
}

// traceLog is js as pathtrace --emit-json puts it in its log.
func traceLog(t *testing.T, js string) string {
	var b bytes.Buffer
	if err := kube.WriteTrace(&b, strings.NewReader(js)); err != nil {
		t.Error(err)
	}
	return b.String()
}

// kubeconfig writes a kubeconfig for the fake, whose context's namespace is "default".
func (f *fakeAPI) kubeconfig() string {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %s, certificate-authority-data: %s}
contexts:
- name: test
  context: {cluster: test, user: tester, namespace: default}
current-context: test
users:
- name: tester
  user: {token: secret-token}
`, f.srv.URL, base64.StdEncoding.EncodeToString(ca))
	p := filepath.Join(f.t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// left is the pathtrace pods still there.
func (f *fakeAPI) left() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for key := range f.pods {
		if strings.Contains(key, "/pathtrace-") {
			out = append(out, key)
		}
	}
	return out
}
