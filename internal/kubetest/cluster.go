// Package kubetest brings a real single-node Kubernetes up on this machine and down again:
// etcd, kube-apiserver and a kubelet built from the Go module proxy (Build), Debian's containerd
// and runc, and the bridge and host-local CNI plugins, all on loopback with ports of their own.
// Stop puts the host back as Start found it (sysctls, iptables chains, cgroups, mounts, the
// bridge, directories at fixed paths). There is no controller-manager or scheduler: pods must
// set nodeName, and Namespace makes a namespace usable (its default ServiceAccount and
// kube-root-ca.crt). Up wraps Start for tests; cmd/k8s-up for a developer (make k8s-up).
package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NodeName is the node's name (the kubelet's --hostname-override): the apiserver reaches the
// kubelet by it, over loopback.
const NodeName = "localhost"

// PauseImage is the sandbox image, built and imported by the harness; it doubles as a workload
// image whose entrypoint (/pause) sleeps until stopped.
const PauseImage = "pathtrace.test/pause:1"

// PodSubnet is the bridge network's range.
const PodSubnet = "10.251.77.0/24"

// Cluster is a running single-node cluster.
type Cluster struct {
	Dir        string // everything the cluster writes, but the fixed paths the host keeps
	Kubeconfig string // cluster-admin (system:masters)
	Server     string // https://127.0.0.1:<port>
	Bin        Binaries
	CRISocket  string
	Bridge     string

	ca    *ca
	snap  *snapshot
	procs []*proc
	log   io.Writer
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

// Start builds (or finds cached) binaries and starts the cluster; it returns once the node is
// Ready. On failure it stops what it started and restores the host.
func Start(ctx context.Context, log io.Writer) (c *Cluster, err error) {
	bin, err := Build(ctx, log)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "nft", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("kubetest: %s is not installed (make deps installs it): %w", p, err)
		}
	}
	cni := cniBinDir()
	if cni == "" {
		return nil, errors.New("kubetest: the CNI plugins bridge and host-local are not installed (make deps installs containernetworking-plugins)")
	}
	dir, err := os.MkdirTemp("", "k8s")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	c = &Cluster{Dir: dir, Bin: bin, log: log, snap: takeSnapshot()}
	c.Bridge = "ptk" + strconv.Itoa(os.Getpid()%100000)
	defer func() {
		if err != nil {
			if e := c.Stop(); e != nil {
				err = fmt.Errorf("%w (and stopping: %v)", err, e)
			}
			c = nil
		}
	}()
	t0 := time.Now()
	if err := c.certs(); err != nil {
		return c, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return c, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if err := c.start("etcd", bin.Etcd,
		"--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-cluster=kubetest=http://127.0.0.1:%d", ports[1]),
		"--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return c, err
	}
	if err := waitHTTP(ctx, nil, etcdURL+"/health", 30*time.Second); err != nil {
		return c, c.failed("etcd", err)
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	p := filepath.Join(dir, "pki")
	if err := c.start("kube-apiserver", bin.APIServer,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]), "--advertise-address=127.0.0.1",
		"--cert-dir="+p,
		"--tls-cert-file="+p+"/apiserver.crt", "--tls-private-key-file="+p+"/apiserver.key",
		"--client-ca-file="+p+"/ca.crt",
		"--service-account-key-file="+p+"/sa.key", "--service-account-signing-key-file="+p+"/sa.key",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.252.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--kubelet-client-certificate="+p+"/apiserver-kubelet-client.crt",
		"--kubelet-client-key="+p+"/apiserver-kubelet-client.key",
		"--kubelet-preferred-address-types=Hostname,InternalIP",
		"--profiling=false", "-v=0"); err != nil {
		return c, err
	}
	admin, err := c.tlsClient("admin")
	if err != nil {
		return c, err
	}
	if err := waitHTTP(ctx, admin, c.Server+"/readyz", 60*time.Second); err != nil {
		return c, c.failed("kube-apiserver", err)
	}
	if err := c.Namespace(ctx, "default", nil); err != nil {
		return c, err
	}
	if err := c.startContainerd(ctx, cni); err != nil {
		return c, err
	}
	if err := c.startKubelet(ctx, ports[3], ports[4]); err != nil {
		return c, err
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if _, err := c.Kubectl(ctx, "get", "node/"+NodeName); err == nil {
			break
		} else if time.Now().After(deadline) {
			return c, c.failed("kubelet", fmt.Errorf("the node did not register in 60s: %w", err))
		}
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", "node/"+NodeName, "--timeout=60s"); err != nil {
		return c, c.failed("kubelet", fmt.Errorf("the node is not Ready: %w", err))
	}
	fmt.Fprintf(log, "kubetest: node %s Ready in %s; KUBECONFIG=%s\n", NodeName, time.Since(t0).Round(100*time.Millisecond), c.Kubeconfig)
	return c, nil
}

func cniBinDir() string {
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "host-local")); err == nil {
				return d
			}
		}
	}
	return ""
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) certs() error {
	p := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(p, 0o700); err != nil {
		return err
	}
	ca, err := newCA()
	if err != nil {
		return fmt.Errorf("kubetest: ca: %w", err)
	}
	c.ca = ca
	if err := os.WriteFile(filepath.Join(p, "ca.crt"), ca.pem, 0o644); err != nil {
		return err
	}
	type spec struct {
		name, cn string
		orgs     []string
		server   bool
		sans     []string
	}
	for _, s := range []spec{
		{"apiserver", "kube-apiserver", nil, true, []string{"127.0.0.1", "localhost", "10.252.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false, nil},
		{"admin", "kubetest-admin", []string{"system:masters"}, false, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, true, []string{"localhost", "127.0.0.1"}},
	} {
		if _, _, err := ca.issue(p, s.name, s.cn, s.orgs, s.server, s.sans...); err != nil {
			return fmt.Errorf("kubetest: cert %s: %w", s.name, err)
		}
	}
	// The service-account signing key: any key the apiserver reads will do.
	if _, _, err := ca.issue(p, "sa", "service-accounts", nil, false); err != nil {
		return err
	}
	return nil
}

// UserKubeconfig writes a kubeconfig for a user that is in no group but system:authenticated
// (what RBAC then lets it do is the test's to grant) and returns its path.
func (c *Cluster) UserKubeconfig(user string, groups ...string) (string, error) {
	p := filepath.Join(c.Dir, "pki")
	cert, key, err := c.ca.issue(p, "user-"+user, user, groups, false)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+user)
	return path, writeKubeconfig(path, c.Server, c.ca.pem, cert, key, user)
}

func (c *Cluster) tlsClient(name string) (*http.Client, error) {
	p := filepath.Join(c.Dir, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(p, name+".crt"), filepath.Join(p, name+".key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, c.ca.pem, filepath.Join(p, name+".crt"), filepath.Join(p, name+".key"), "kubetest"); err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool}}}, nil
}

func waitHTTP(ctx context.Context, cl *http.Client, url string, timeout time.Duration) error {
	if cl == nil {
		cl = &http.Client{Timeout: 2 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := cl.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s: %v", url, timeout, last)
}

// start runs a program with its output in Dir/<name>.log.
func (c *Cluster) start(name, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), logf: logf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// failed adds the end of a component's log to err.
func (c *Cluster) failed(name string, err error) error {
	return fmt.Errorf("kubetest: %s: %w\n%s", name, err, c.LogTail(name, 30))
}

// LogTail is the last n lines of a component's log (etcd, kube-apiserver, containerd, kubelet).
func (c *Cluster) LogTail(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kubectl runs the built kubectl as cluster-admin and returns its standard output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlIn(ctx, nil, args...)
}

// KubectlIn is Kubectl with stdin.
func (c *Cluster) KubectlIn(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Bin.Kubectl, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Namespace creates a namespace (unless it exists) with labels, and what a controller-manager
// would put in it: the default ServiceAccount and the kube-root-ca.crt ConfigMap.
func (c *Cluster) Namespace(ctx context.Context, name string, labels map[string]string) error {
	var lb strings.Builder
	for k, v := range labels {
		fmt.Fprintf(&lb, "    %s: %q\n", k, v)
	}
	caIndented := "    " + strings.ReplaceAll(strings.TrimSpace(string(c.ca.pem)), "\n", "\n    ")
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels:
    kubernetes.io/metadata.name: %[1]s
%[2]s---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: %[1]s
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-root-ca.crt
  namespace: %[1]s
data:
  ca.crt: |
%[3]s
`, name, lb.String(), caIndented)
	if _, err := c.KubectlIn(ctx, []byte(manifest), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubetest: namespace %s: %w", name, err)
	}
	return nil
}

// ImportImage imports an image archive (docker-archive or OCI, as make image writes) into the
// node's containerd, where the kubelet finds it (pods must use imagePullPolicy: Never or
// IfNotPresent: there is no registry).
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.CRISocket, "--namespace", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubetest: ctr images import %s: %w: %s", archive, err, out)
	}
	return nil
}

func netName(dir string) string { return "pathtrace-" + filepath.Base(dir) }
