package kubetest_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/kubetest"
)

// A real node: a pod on the bridge network gets an address in PodSubnet, answers a ping from
// the host through the bridge, and the apiserver reaches the kubelet for its logs. Up's cleanup
// then checks that the host is as it was.
func TestClusterRunsPodOnBridge(t *testing.T) {
	c := kubetest.Up(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: %s
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - {name: web, image: %s, imagePullPolicy: Never}
`, kubetest.NodeName, kubetest.PauseImage)
	if _, err := c.KubectlIn(ctx, []byte(pod), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", "pod/web", "--timeout=90s"); err != nil {
		out, _ := c.Kubectl(ctx, "describe", "pod/web")
		t.Fatalf("%v\n%s", err, out)
	}
	ip, err := c.Kubectl(ctx, "get", "pod/web", "-o", "jsonpath={.status.podIP}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ip, strings.TrimSuffix(kubetest.PodSubnet, "0/24")) {
		t.Fatalf("pod IP %q is not in %s", ip, kubetest.PodSubnet)
	}
	if out, err := exec.CommandContext(ctx, "ping", "-c", "1", "-W", "2", ip).CombinedOutput(); err != nil {
		t.Errorf("ping %s from the host through %s: %v\n%s", ip, c.Bridge, err, out)
	}
	// logs go apiserver -> kubelet over loopback by the node's hostname.
	if _, err := c.Kubectl(ctx, "logs", "web"); err != nil {
		t.Errorf("kubectl logs: %v", err)
	}
	t.Logf("pod default/web %s on %s", ip, c.Bridge)
}
