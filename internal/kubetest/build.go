package kubetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
)

// Versions of what the harness builds from the Go module proxy (pinned in build/*/go.mod).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.17"
)

// Binaries are the paths of the programs a cluster runs.
type Binaries struct {
	Etcd, APIServer, Kubelet, Kubectl string
}

// CacheDir is where built binaries are kept between runs: $PATHTRACE_K8S_CACHE, else
// $HOME/.cache/pathtrace-k8s/<kubernetes version>-etcd<etcd version>.
func CacheDir() string {
	if d := os.Getenv("PATHTRACE_K8S_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "pathtrace-k8s", KubernetesVersion+"-etcd"+EtcdVersion)
}

// sourceDir is internal/kubetest/build in this checkout.
func sourceDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "build")
}

// Build returns the cached binaries, building what is missing first (a cold build of
// Kubernetes takes ~7 minutes on 2 cores). Concurrent callers wait for one build. Progress goes
// to log.
func Build(ctx context.Context, log io.Writer) (Binaries, error) {
	dir := CacheDir()
	b := Binaries{
		Etcd:      filepath.Join(dir, "etcd"),
		APIServer: filepath.Join(dir, "kube-apiserver"),
		Kubelet:   filepath.Join(dir, "kubelet"),
		Kubectl:   filepath.Join(dir, "kubectl"),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, fmt.Errorf("kubetest: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return b, fmt.Errorf("kubetest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return b, fmt.Errorf("kubetest: lock %s: %w", dir, err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if _, e := os.Stat("/usr/local/go/bin/go"); e == nil {
			goBin = "/usr/local/go/bin/go"
		} else {
			return b, fmt.Errorf("kubetest: building Kubernetes needs go in PATH: %w", err)
		}
	}
	jobs := []struct {
		module string
		outs   []string
		pkgs   []string
	}{
		{"etcd", []string{b.Etcd}, []string{"."}},
		{"k8s", []string{b.APIServer, b.Kubelet, b.Kubectl}, []string{
			"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kubectl"}},
	}
	for _, j := range jobs {
		missing := false
		for _, o := range j.outs {
			if _, err := os.Stat(o); err != nil {
				missing = true
			}
		}
		if !missing {
			continue
		}
		tmp, err := os.MkdirTemp(dir, "build-")
		if err != nil {
			return b, fmt.Errorf("kubetest: %w", err)
		}
		defer os.RemoveAll(tmp)
		fmt.Fprintf(log, "kubetest: building %v into %s (minutes, once)\n", j.pkgs, dir)
		args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp + "/"}, j.pkgs...)
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = filepath.Join(sourceDir(), j.module)
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return b, fmt.Errorf("kubetest: go build in %s: %w", cmd.Dir, err)
		}
		if j.module == "etcd" {
			if err := os.Rename(filepath.Join(tmp, "etcdbuild"), b.Etcd); err != nil {
				return b, fmt.Errorf("kubetest: %w", err)
			}
			continue
		}
		for _, o := range j.outs {
			if err := os.Rename(filepath.Join(tmp, filepath.Base(o)), o); err != nil {
				return b, fmt.Errorf("kubetest: %w", err)
			}
		}
	}
	return b, nil
}
