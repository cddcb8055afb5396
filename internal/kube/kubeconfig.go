package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Where the API's credentials come from: a kubeconfig file (its contexts, clusters and users,
// exec credential plugins among them) or the pod's in-cluster service account.

// DefaultServiceAccountDir is where a pod finds its service account's token and CA.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// APIOptions says where to look for credentials. The zero value looks where kubectl does:
// $KUBECONFIG, ~/.kube/config, then the in-cluster service account.
type APIOptions struct {
	// Kubeconfig is an explicit kubeconfig file (a --kubeconfig flag); when set nothing else is
	// tried.
	Kubeconfig string
	// Context overrides the kubeconfig's current-context.
	Context string
	// Getenv reads the environment (KUBECONFIG, KUBERNETES_SERVICE_HOST/PORT); nil is os.Getenv.
	Getenv func(string) string
	// Home is the home directory whose .kube/config is tried; "" is the user's.
	Home string
	// ServiceAccountDir is the in-cluster token and CA's directory; "" is DefaultServiceAccountDir.
	ServiceAccountDir string
	// Timeout bounds each request; 0 is 10 s.
	Timeout time.Duration
}

// NoAPIError says why no Kubernetes API could be used: what was looked for and not found, or
// what was found and could not be used.
type NoAPIError struct {
	Tried []string // what was looked at, each with why it did not do
}

func (e *NoAPIError) Error() string {
	return "no Kubernetes API credentials: " + strings.Join(e.Tried, "; ")
}

// LoadAPI finds credentials for the Kubernetes API: opts.Kubeconfig if set; else the first
// file of $KUBECONFIG that exists, ~/.kube/config, then the in-cluster service account
// (KUBERNETES_SERVICE_HOST and a token). Finding none is a *NoAPIError. A kubeconfig that
// exists but cannot be used (bad YAML, unknown context, unreadable CA) is an error that names
// the file.
func LoadAPI(opts APIOptions) (*API, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if opts.Kubeconfig != "" {
		return loadKubeconfig(opts.Kubeconfig, opts.Context, timeout)
	}
	var tried []string
	if kc := getenv("KUBECONFIG"); kc != "" {
		for _, p := range filepath.SplitList(kc) {
			if p == "" {
				continue
			}
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, "$KUBECONFIG file "+p+" does not exist")
				continue
			}
			return loadKubeconfig(p, opts.Context, timeout)
		}
	} else {
		tried = append(tried, "$KUBECONFIG is not set")
	}
	home := opts.Home
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home != "" {
		p := filepath.Join(home, ".kube", "config")
		if _, err := os.Stat(p); err == nil {
			return loadKubeconfig(p, opts.Context, timeout)
		}
		tried = append(tried, p+" does not exist")
	}
	saDir := opts.ServiceAccountDir
	if saDir == "" {
		saDir = DefaultServiceAccountDir
	}
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	tokenFile := filepath.Join(saDir, "token")
	switch {
	case host == "" || port == "":
		tried = append(tried, "not in a pod (KUBERNETES_SERVICE_HOST/PORT are not set)")
	default:
		if _, err := os.Stat(tokenFile); err != nil {
			tried = append(tried, "in a pod but without a service account token ("+tokenFile+" does not exist)")
			break
		}
		return inCluster(net.JoinHostPort(host, port), saDir, timeout)
	}
	return nil, &NoAPIError{Tried: tried}
}

// inCluster uses the pod's service account: its token (re-read for every request, as the
// kubelet rotates it) and CA.
func inCluster(hostport, saDir string, timeout time.Duration) (*API, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	caFile := filepath.Join(saDir, "ca.crt")
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("in-cluster service account: %w", err)
	}
	if tlsConf.RootCAs, err = certPool(ca); err != nil {
		return nil, fmt.Errorf("in-cluster service account: %s: %w", caFile, err)
	}
	a := &API{
		Server: "https://" + hostport,
		Source: "in-cluster service account (" + saDir + ")",
		client: httpClient(tlsConf, timeout),
	}
	if ns, err := os.ReadFile(filepath.Join(saDir, "namespace")); err == nil {
		a.Namespace = strings.TrimSpace(string(ns))
	}
	tokenFile := filepath.Join(saDir, "token")
	a.auth = func(_ context.Context, req *http.Request) error {
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		return nil
	}
	return a, nil
}

// kubeconfig is the part of a kubeconfig file pathtrace reads.
type kubeconfig struct {
	CurrentContext string             `yaml:"current-context"`
	Clusters       []kubeNamedCluster `yaml:"clusters"`
	Users          []kubeNamedUser    `yaml:"users"`
	Contexts       []kubeNamedContext `yaml:"contexts"`
}

type kubeNamedCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthority     string `yaml:"certificate-authority"`
		CertificateAuthorityData string `yaml:"certificate-authority-data"`
		InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
		TLSServerName            string `yaml:"tls-server-name"`
	} `yaml:"cluster"`
}

type kubeNamedUser struct {
	Name string `yaml:"name"`
	User struct {
		Token                 string         `yaml:"token"`
		TokenFile             string         `yaml:"tokenFile"`
		ClientCertificate     string         `yaml:"client-certificate"`
		ClientCertificateData string         `yaml:"client-certificate-data"`
		ClientKey             string         `yaml:"client-key"`
		ClientKeyData         string         `yaml:"client-key-data"`
		Username              string         `yaml:"username"`
		Password              string         `yaml:"password"`
		Exec                  *execConfig    `yaml:"exec"`
		AuthProvider          map[string]any `yaml:"auth-provider"`
	} `yaml:"user"`
}

type kubeNamedContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster   string `yaml:"cluster"`
		User      string `yaml:"user"`
		Namespace string `yaml:"namespace"`
	} `yaml:"context"`
}

type execConfig struct {
	APIVersion string   `yaml:"apiVersion"`
	Command    string   `yaml:"command"`
	Args       []string `yaml:"args"`
	Env        []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
}

func loadKubeconfig(path, contextName string, timeout time.Duration) (*API, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("kubeconfig %s: %s", path, fmt.Sprintf(format, a...))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fail("%v", err)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if contextName == "" {
		contextName = kc.CurrentContext
	}
	if contextName == "" {
		return nil, fail("no current-context")
	}
	ci := lastNamed(kc.Contexts, func(c kubeNamedContext) string { return c.Name }, contextName)
	if ci < 0 {
		return nil, fail("no context %q", contextName)
	}
	kctx := kc.Contexts[ci].Context
	cl := lastNamed(kc.Clusters, func(c kubeNamedCluster) string { return c.Name }, kctx.Cluster)
	if cl < 0 {
		return nil, fail("context %q names cluster %q, which is not in the file", contextName, kctx.Cluster)
	}
	cluster := kc.Clusters[cl].Cluster
	if cluster.Server == "" {
		return nil, fail("cluster %q has no server", kctx.Cluster)
	}
	u, err := url.Parse(cluster.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fail("cluster %q: bad server %q", kctx.Cluster, cluster.Server)
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cluster.TLSServerName}
	switch {
	case cluster.InsecureSkipTLSVerify:
		tlsConf.InsecureSkipVerify = true
	case cluster.CertificateAuthorityData != "":
		ca, err := base64.StdEncoding.DecodeString(cluster.CertificateAuthorityData)
		if err != nil {
			return nil, fail("cluster %q: certificate-authority-data: %v", kctx.Cluster, err)
		}
		if tlsConf.RootCAs, err = certPool(ca); err != nil {
			return nil, fail("cluster %q: certificate-authority-data: %v", kctx.Cluster, err)
		}
	case cluster.CertificateAuthority != "":
		ca, err := os.ReadFile(rel(cluster.CertificateAuthority))
		if err != nil {
			return nil, fail("cluster %q: %v", kctx.Cluster, err)
		}
		if tlsConf.RootCAs, err = certPool(ca); err != nil {
			return nil, fail("cluster %q: %s: %v", kctx.Cluster, cluster.CertificateAuthority, err)
		}
	}

	a := &API{
		Server:    strings.TrimRight(cluster.Server, "/"),
		Source:    fmt.Sprintf("kubeconfig %s, context %s", path, contextName),
		Namespace: kctx.Namespace,
	}
	a.auth = func(context.Context, *http.Request) error { return nil }
	if kctx.User != "" {
		ui := lastNamed(kc.Users, func(u kubeNamedUser) string { return u.Name }, kctx.User)
		if ui < 0 {
			return nil, fail("context %q names user %q, which is not in the file", contextName, kctx.User)
		}
		user := kc.Users[ui].User
		certPEM, keyPEM := []byte(nil), []byte(nil)
		decode := func(data, file string) ([]byte, error) {
			if data != "" {
				return base64.StdEncoding.DecodeString(data)
			}
			if file != "" {
				return os.ReadFile(rel(file))
			}
			return nil, nil
		}
		if certPEM, err = decode(user.ClientCertificateData, user.ClientCertificate); err != nil {
			return nil, fail("user %q: client certificate: %v", kctx.User, err)
		}
		if keyPEM, err = decode(user.ClientKeyData, user.ClientKey); err != nil {
			return nil, fail("user %q: client key: %v", kctx.User, err)
		}
		if certPEM != nil || keyPEM != nil {
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fail("user %q: client certificate: %v", kctx.User, err)
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		}
		switch {
		case user.Token != "":
			tok := user.Token
			a.auth = func(_ context.Context, req *http.Request) error {
				req.Header.Set("Authorization", "Bearer "+tok)
				return nil
			}
		case user.TokenFile != "":
			f := rel(user.TokenFile)
			a.auth = func(_ context.Context, req *http.Request) error {
				tok, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
				return nil
			}
		case user.Username != "" || user.Password != "":
			name, pw := user.Username, user.Password
			a.auth = func(_ context.Context, req *http.Request) error {
				req.SetBasicAuth(name, pw)
				return nil
			}
		case user.Exec != nil:
			ex := &execAuth{cfg: *user.Exec, server: a.Server, dir: dir}
			a.auth = ex.authorize
			tlsConf.GetClientCertificate = ex.clientCert(tlsConf.Certificates)
		case user.AuthProvider != nil:
			name, _ := user.AuthProvider["name"].(string)
			return nil, fail("user %q uses auth-provider %q, which pathtrace does not support (use a token or an exec credential plugin)", kctx.User, name)
		}
	}
	a.client = httpClient(tlsConf, timeout)
	return a, nil
}

func certPool(pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

func httpClient(tlsConf *tls.Config, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     tlsConf,
			TLSHandshakeTimeout: timeout,
			ForceAttemptHTTP2:   true,
		},
	}
}

// execAuth runs a kubeconfig exec credential plugin (aws eks get-token, gke-gcloud-auth-plugin,
// kubelogin...) and keeps its credential until it expires.
type execAuth struct {
	cfg    execConfig
	server string
	dir    string

	mu      sync.Mutex
	token   string
	cert    *tls.Certificate
	expires time.Time
	fetched bool
}

func (e *execAuth) get(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fetched && (e.expires.IsZero() || time.Now().Before(e.expires)) {
		return nil
	}
	apiVersion := e.cfg.APIVersion
	if apiVersion == "" {
		apiVersion = "client.authentication.k8s.io/v1"
	}
	cmdPath := e.cfg.Command
	if strings.Contains(cmdPath, "/") && !filepath.IsAbs(cmdPath) {
		cmdPath = filepath.Join(e.dir, cmdPath)
	}
	cmd := exec.CommandContext(ctx, cmdPath, e.cfg.Args...)
	cmd.Env = os.Environ()
	for _, kv := range e.cfg.Env {
		cmd.Env = append(cmd.Env, kv.Name+"="+kv.Value)
	}
	info, _ := json.Marshal(map[string]any{
		"apiVersion": apiVersion,
		"kind":       "ExecCredential",
		"spec":       map[string]any{"interactive": false},
	})
	cmd.Env = append(cmd.Env, "KUBERNETES_EXEC_INFO="+string(info))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return fmt.Errorf("exec credential plugin %s: %w: %s", e.cfg.Command, err, msg)
		}
		return fmt.Errorf("exec credential plugin %s: %w", e.cfg.Command, err)
	}
	var cred struct {
		Status struct {
			Token                 string    `json:"token"`
			ClientCertificateData string    `json:"clientCertificateData"`
			ClientKeyData         string    `json:"clientKeyData"`
			ExpirationTimestamp   time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out, &cred); err != nil {
		return fmt.Errorf("exec credential plugin %s: bad ExecCredential: %w", e.cfg.Command, err)
	}
	e.token, e.cert = cred.Status.Token, nil
	if cred.Status.ClientCertificateData != "" {
		c, err := tls.X509KeyPair([]byte(cred.Status.ClientCertificateData), []byte(cred.Status.ClientKeyData))
		if err != nil {
			return fmt.Errorf("exec credential plugin %s: client certificate: %w", e.cfg.Command, err)
		}
		e.cert = &c
	}
	e.expires, e.fetched = cred.Status.ExpirationTimestamp, true
	return nil
}

func (e *execAuth) authorize(ctx context.Context, req *http.Request) error {
	if err := e.get(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	return nil
}

func (e *execAuth) clientCert(static []tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.cert != nil {
			return e.cert, nil
		}
		if len(static) > 0 {
			return &static[0], nil
		}
		return &tls.Certificate{}, nil
	}
}

// lastNamed is the index of the last entry of list called name, or -1: kubeconfig lists are
// looked up by name, and a later entry of the same name wins, as kubectl has it.
func lastNamed[T any](list []T, nameOf func(T) string, name string) int {
	found := -1
	for i, e := range list {
		if nameOf(e) == name {
			found = i
		}
	}
	return found
}
