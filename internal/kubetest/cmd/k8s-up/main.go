// Command k8s-up runs the test harness's single-node Kubernetes for a developer (make k8s-up,
// make k8s-down): `k8s-up start` starts it in the background and prints how to use it,
// `k8s-up stop` stops it and restores the host, `k8s-up run` runs it in the foreground until
// Ctrl-C.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pathtrace/pathtrace/internal/kubetest"
)

const stateDir = "/run/pathtrace-k8s"

func main() {
	cmd := "run"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "run":
		err = run()
	case "start":
		err = start()
	case "stop":
		err = stop()
	case "build":
		var b kubetest.Binaries
		if b, err = kubetest.Build(context.Background(), os.Stdout); err == nil {
			fmt.Printf("k8s-up: built in %s: %s\n", kubetest.CacheDir(), strings.Join([]string{b.Etcd, b.APIServer, b.Kubelet, b.Kubectl}, " "))
		}
	default:
		err = fmt.Errorf("usage: k8s-up build|start|stop|run")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-up:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	c, err := kubetest.Start(ctx, os.Stdout)
	if err != nil {
		return err
	}
	env := fmt.Sprintf("export KUBECONFIG=%s\nexport PATH=%s:$PATH\n# CRI socket: %s; images: ctr --address %s -n k8s.io images import IMAGE.tar\n",
		c.Kubeconfig, filepath.Dir(c.Bin.Kubectl), c.CRISocket, c.CRISocket)
	_ = os.WriteFile(filepath.Join(stateDir, "env"), []byte(env), 0o644)
	_ = os.WriteFile(filepath.Join(stateDir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	fmt.Print(env)
	<-ctx.Done()
	fmt.Println("k8s-up: stopping")
	return c.Stop()
}

func start() error {
	if pid, err := readPid(); err == nil && syscall.Kill(pid, 0) == nil {
		return fmt.Errorf("already running (pid %d): k8s-up stop first", pid)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := "/tmp/pathtrace-k8s.log"
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		if b, err := os.ReadFile(filepath.Join(stateDir, "env")); err == nil {
			fmt.Printf("k8s-up: running (pid %d, log %s); k8s-up stop (make k8s-down) ends it\n%s", cmd.Process.Pid, logPath, b)
			return nil
		}
		select {
		case err := <-done:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("the cluster did not start (%v):\n%s", err, b)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readPid() (int, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, "pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func stop() error {
	pid, err := readPid()
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("k8s-up: not running")
		return nil
	} else if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			fmt.Println("k8s-up: stopped; the host is restored (log: /tmp/pathtrace-k8s.log)")
			return nil
		}
	}
	return fmt.Errorf("pid %d still running after 2m", pid)
}
