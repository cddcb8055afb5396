package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is a Kubernetes API server over TLS (httptest) serving v1 Pods as the real one
// does: GET one pod (404 with a Status when absent), list pods across namespaces with a
// metadata.name field selector. It wants a bearer token, basic auth or a client certificate,
// as configured.
type fakeAPI struct {
	srv *httptest.Server

	mu        sync.Mutex
	pods      []map[string]any
	token     string // the bearer token it accepts ("" accepts none)
	basic     [2]string
	forbidden bool // answer 403 to everything, as RBAC does for a service account without rights
	requests  []string
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{token: "secret-token"}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-CA test's handshake errors
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) addPod(ns, name, node, phase string, hostNetwork bool, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var podIPs []map[string]string
	for _, ip := range ips {
		podIPs = append(podIPs, map[string]string{"ip": ip})
	}
	status := map[string]any{"phase": phase, "hostIP": "192.0.2.100"}
	if len(ips) > 0 {
		status["podIP"] = ips[0]
		status["podIPs"] = podIPs
	}
	f.pods = append(f.pods, map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns, "uid": "uid-" + ns + "-" + name, "labels": map[string]string{"app": "x"}},
		"spec":     map[string]any{"nodeName": node, "hostNetwork": hostNetwork, "containers": []any{map[string]any{"name": "c", "image": "nginx"}}},
		"status":   status,
	})
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	status := func(code int, reason, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": reason, "code": code})
	}
	authed := false
	if f.token != "" && r.Header.Get("Authorization") == "Bearer "+f.token {
		authed = true
	}
	if u, p, ok := r.BasicAuth(); ok && f.basic[0] != "" && u == f.basic[0] && p == f.basic[1] {
		authed = true
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		authed = true
	}
	if !authed {
		status(http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	if f.forbidden {
		status(http.StatusForbidden, "Forbidden", `pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" at the cluster scope`)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case len(parts) == 6 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "namespaces" && parts[4] == "pods":
		for _, p := range f.pods {
			md := p["metadata"].(map[string]any)
			if md["namespace"] == parts[3] && md["name"] == parts[5] {
				json.NewEncoder(w).Encode(p)
				return
			}
		}
		status(http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found", parts[5]))
	case r.URL.Path == "/api/v1/pods":
		sel := r.URL.Query().Get("fieldSelector")
		name, ok := strings.CutPrefix(sel, "metadata.name=")
		if !ok {
			status(http.StatusBadRequest, "BadRequest", "want a metadata.name field selector")
			return
		}
		items := []map[string]any{}
		for _, p := range f.pods {
			if p["metadata"].(map[string]any)["name"] == name {
				items = append(items, p)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"kind": "PodList", "apiVersion": "v1", "metadata": map[string]any{"resourceVersion": "1"}, "items": items})
	default:
		status(http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	}
}

// caPEM is the PEM of the test server's certificate.
func (f *fakeAPI) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
}

// writeKubeconfig writes a kubeconfig for the fake API with the given user stanza (YAML, under
// "user:") and returns its path.
func writeKubeconfig(t *testing.T, dir, server string, ca []byte, user string) string {
	t.Helper()
	if user == "" {
		user = "token: secret-token"
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://192.0.2.1:6443
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
contexts:
- name: other
  context:
    cluster: other
    user: nobody
- name: test
  context:
    cluster: test
    user: tester
    namespace: team-a
current-context: test
users:
- name: tester
  user:
    %s
preferences: {}
`, server, base64.StdEncoding.EncodeToString(ca), strings.ReplaceAll(user, "\n", "\n    "))
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestAPIKubeconfigToken(t *testing.T) {
	f := newFakeAPI(t)
	f.addPod("default", "web", "node-b", "Running", false, "10.2.0.7", "fd00:2::7")
	kc := writeKubeconfig(t, t.TempDir(), f.srv.URL, f.caPEM(), "")
	api, err := LoadAPI(APIOptions{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	if api.Server != f.srv.URL || api.Namespace != "team-a" || api.Source != "kubeconfig "+kc+", context test" {
		t.Errorf("API = %+v", api)
	}
	ctx := context.Background()
	p, err := api.Pod(ctx, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	want := APIPod{Namespace: "default", Name: "web", UID: "uid-default-web", Node: "node-b", Phase: "Running",
		IPs: []netip.Addr{netip.MustParseAddr("10.2.0.7"), netip.MustParseAddr("fd00:2::7")}, HostIP: netip.MustParseAddr("192.0.2.100")}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		t.Errorf("Pod = %+v, want %+v", p, want)
	}
	if _, err := api.Pod(ctx, "default", "nope"); !errors.Is(err, ErrPodNotFound) {
		t.Errorf("absent pod: %v, want ErrPodNotFound", err)
	}
	ps, err := api.PodsNamed(ctx, "web")
	if err != nil || len(ps) != 1 || ps[0].Key() != "default/web" {
		t.Errorf("PodsNamed = %+v, %v", ps, err)
	}
	if got := f.requests[len(f.requests)-1]; got != "GET /api/v1/pods?fieldSelector=metadata.name%3Dweb" {
		t.Errorf("list request = %q", got)
	}

	// Another context (its server is not reachable: only its choice is checked).
	other, err := LoadAPI(APIOptions{Kubeconfig: kc, Context: "other"})
	if err == nil || !strings.Contains(err.Error(), `context "other" names user "nobody", which is not in the file`) {
		t.Errorf("context other: %+v, %v", other, err)
	}
}

func TestAPIAuthKinds(t *testing.T) {
	f := newFakeAPI(t)
	f.addPod("default", "web", "node-b", "Running", false, "10.2.0.7")
	dir := t.TempDir()
	ctx := context.Background()

	// tokenFile, relative to the kubeconfig's directory.
	os.WriteFile(filepath.Join(dir, "tok"), []byte("secret-token\n"), 0o600)
	// An exec credential plugin (as aws eks get-token or gke-gcloud-auth-plugin are).
	plugin := filepath.Join(dir, "plugin.sh")
	os.WriteFile(plugin, []byte(`#!/bin/sh
echo "$KUBERNETES_EXEC_INFO" > "$(dirname "$0")/exec-info"
echo "$@ $PLUGIN_ENV" > "$(dirname "$0")/exec-args"
cat <<EOF
{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
 "status": {"token": "secret-token", "expirationTimestamp": "2999-01-01T00:00:00Z"}}
EOF
`), 0o755)
	f.basic = [2]string{"admin", "pw"}

	for _, tc := range []struct {
		name, user string
	}{
		{"tokenFile", "tokenFile: tok"},
		{"basic", "username: admin\npassword: pw"},
		{"exec", "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./plugin.sh\n  args: [get-token, --cluster, c1]\n  env:\n  - name: PLUGIN_ENV\n    value: from-kubeconfig"},
	} {
		kc := writeKubeconfig(t, dir, f.srv.URL, f.caPEM(), tc.user)
		api, err := LoadAPI(APIOptions{Kubeconfig: kc})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if _, err := api.Pod(ctx, "default", "web"); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "exec-args")); strings.TrimSpace(string(b)) != "get-token --cluster c1 from-kubeconfig" {
		t.Errorf("exec plugin ran with %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "exec-info")); !strings.Contains(string(b), `"kind":"ExecCredential"`) {
		t.Errorf("exec plugin's KUBERNETES_EXEC_INFO = %q", b)
	}

	// A wrong token: 401, said so.
	kc := writeKubeconfig(t, dir, f.srv.URL, f.caPEM(), "token: wrong")
	api, err := LoadAPI(APIOptions{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.Pod(ctx, "default", "web")
	var se *APIStatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("wrong token: %v", err)
	}

	// An auth-provider (gone from kubectl): a clear refusal.
	kc = writeKubeconfig(t, dir, f.srv.URL, f.caPEM(), "auth-provider:\n  name: gcp")
	if _, err := LoadAPI(APIOptions{Kubeconfig: kc}); err == nil || !strings.Contains(err.Error(), `auth-provider "gcp"`) {
		t.Errorf("auth-provider: %v", err)
	}

	// An unknown CA: the TLS error, not a silent success.
	kc = writeKubeconfig(t, dir, f.srv.URL, pemOfNewCert(t), "")
	api, err = LoadAPI(APIOptions{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Pod(ctx, "default", "web"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong CA: %v", err)
	}
}

// A client certificate (kubeadm's admin.conf, kind's kubeconfig) from files next to the
// kubeconfig.
func TestAPIClientCertificate(t *testing.T) {
	f := &fakeAPI{}
	f.addPod("default", "web", "node-b", "Running", false, "10.2.0.7")
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)

	dir := t.TempDir()
	certPEM, keyPEM := newClientCert(t)
	os.WriteFile(filepath.Join(dir, "client.crt"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "client.key"), keyPEM, 0o600)
	kc := writeKubeconfig(t, dir, f.srv.URL, f.caPEM(), "client-certificate: client.crt\nclient-key: "+filepath.Join(dir, "client.key"))
	api, err := LoadAPI(APIOptions{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Pod(context.Background(), "default", "web"); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	// The same as data.
	kc = writeKubeconfig(t, dir, f.srv.URL, f.caPEM(), "client-certificate-data: "+base64.StdEncoding.EncodeToString(certPEM)+"\nclient-key-data: "+base64.StdEncoding.EncodeToString(keyPEM))
	if api, err = LoadAPI(APIOptions{Kubeconfig: kc}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Pod(context.Background(), "default", "web"); err != nil {
		t.Errorf("client certificate data: %v", err)
	}
}

func TestAPIInCluster(t *testing.T) {
	f := newFakeAPI(t)
	f.addPod("default", "web", "node-b", "Running", false, "10.2.0.7")
	sa := t.TempDir()
	os.WriteFile(filepath.Join(sa, "token"), []byte("secret-token"), 0o600)
	os.WriteFile(filepath.Join(sa, "ca.crt"), f.caPEM(), 0o600)
	os.WriteFile(filepath.Join(sa, "namespace"), []byte("debug\n"), 0o600)
	u, _ := url.Parse(f.srv.URL)
	api, err := LoadAPI(APIOptions{
		Getenv:            env(map[string]string{"KUBERNETES_SERVICE_HOST": u.Hostname(), "KUBERNETES_SERVICE_PORT": u.Port()}),
		Home:              t.TempDir(),
		ServiceAccountDir: sa,
	})
	if err != nil {
		t.Fatal(err)
	}
	if api.Namespace != "debug" || !strings.HasPrefix(api.Source, "in-cluster service account") {
		t.Errorf("API = %+v", api)
	}
	if _, err := api.Pod(context.Background(), "default", "web"); err != nil {
		t.Error(err)
	}
	// The kubelet rotates the token: it is read again for each request.
	os.WriteFile(filepath.Join(sa, "token"), []byte("rotated"), 0o600)
	f.token = "rotated"
	if _, err := api.Pod(context.Background(), "default", "web"); err != nil {
		t.Errorf("after rotation: %v", err)
	}
}

func TestLoadAPIWhere(t *testing.T) {
	f := newFakeAPI(t)
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".kube"), 0o755)
	dir := t.TempDir()
	kc := writeKubeconfig(t, dir, f.srv.URL, f.caPEM(), "")
	noSA := filepath.Join(t.TempDir(), "none")

	// $KUBECONFIG: the first file of the list that exists.
	api, err := LoadAPI(APIOptions{Getenv: env(map[string]string{"KUBECONFIG": filepath.Join(dir, "missing") + ":" + kc}), Home: home, ServiceAccountDir: noSA})
	if err != nil || !strings.Contains(api.Source, kc) {
		t.Errorf("$KUBECONFIG: %+v, %v", api, err)
	}
	// ~/.kube/config.
	b, _ := os.ReadFile(kc)
	os.WriteFile(filepath.Join(home, ".kube", "config"), b, 0o600)
	api, err = LoadAPI(APIOptions{Getenv: env(nil), Home: home, ServiceAccountDir: noSA})
	if err != nil || !strings.Contains(api.Source, filepath.Join(home, ".kube", "config")) {
		t.Errorf("~/.kube/config: %+v, %v", api, err)
	}
	os.Remove(filepath.Join(home, ".kube", "config"))

	// Nothing: a NoAPIError that says what was looked at.
	_, err = LoadAPI(APIOptions{Getenv: env(nil), Home: home, ServiceAccountDir: noSA})
	var na *NoAPIError
	if !errors.As(err, &na) {
		t.Fatalf("nothing: %v, want a *NoAPIError", err)
	}
	for _, want := range []string{"$KUBECONFIG is not set", filepath.Join(home, ".kube", "config") + " does not exist", "not in a pod (KUBERNETES_SERVICE_HOST/PORT are not set)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// In a pod without a token (automountServiceAccountToken: false).
	_, err = LoadAPI(APIOptions{Getenv: env(map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}), Home: home, ServiceAccountDir: noSA})
	if !errors.As(err, &na) || !strings.Contains(err.Error(), "in a pod but without a service account token") {
		t.Errorf("pod without token: %v", err)
	}

	// An explicit kubeconfig that is missing or broken is an error about that file.
	if _, err := LoadAPI(APIOptions{Kubeconfig: filepath.Join(dir, "nope")}); err == nil || errors.As(err, &na) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing explicit kubeconfig: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("clusters: [\n"), 0o600)
	if _, err := LoadAPI(APIOptions{Kubeconfig: bad}); err == nil || !strings.Contains(err.Error(), "kubeconfig "+bad) {
		t.Errorf("broken kubeconfig: %v", err)
	}
	if _, err := LoadAPI(APIOptions{Kubeconfig: kc, Context: "nope"}); err == nil || !strings.Contains(err.Error(), `no context "nope"`) {
		t.Errorf("unknown context: %v", err)
	}
}

// pemOfNewCert is a self-signed certificate that signed nothing the test server uses.
func pemOfNewCert(t *testing.T) []byte {
	c, _ := newClientCert(t)
	return c
}

func newClientCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
