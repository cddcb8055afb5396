package kubetest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Built reports whether the cached binaries exist (Build would not compile anything).
func Built() bool {
	for _, n := range []string{"etcd", "kube-apiserver", "kubelet", "kubectl"} {
		if _, err := os.Stat(CacheDir() + "/" + n); err != nil {
			return false
		}
	}
	return true
}

// Up starts a cluster for a test and stops it when the test ends, failing the test if the host
// is not as it was (sysctls, iptables chains, nft tables, cgroups, mounts, links, named netns,
// fixed paths, processes). It skips the test when not root or when containerd or the CNI plugins
// are missing; it builds the Kubernetes binaries when they are not cached (minutes, once).
func Up(t testing.TB) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a kubelet and containerd")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Skip("containerd is not installed (make deps)")
	}
	if cniBinDir() == "" {
		t.Skip("the CNI plugins are not installed (make deps)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	before := takeSnapshot()
	c, err := Start(ctx, testWriter{t})
	if err != nil {
		if d := before.diff(); len(d) > 0 {
			t.Errorf("the host differs after a failed start:\n%s", strings.Join(d, "\n"))
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"kubelet", "containerd"} {
				t.Logf("%s's log:\n%s", n, c.LogTail(n, 40))
			}
		}
		t0 := time.Now()
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		t.Logf("kubetest: stopped and host restored in %s", time.Since(t0).Round(100*time.Millisecond))
		if d := before.diff(); len(d) > 0 {
			t.Errorf("the host is not as the test found it:\n%s", strings.Join(d, "\n"))
		}
	})
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
