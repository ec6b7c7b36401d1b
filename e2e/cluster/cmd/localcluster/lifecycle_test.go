package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestUpIsIdempotentAndDownLeavesNothing starts a second, private cluster from the binaries in .local/bin: a second
// `up` is a no-op, `restart` replaces one component only, and `down` leaves no process and no data folder behind.
func TestUpIsIdempotentAndDownLeavesNothing(t *testing.T) {
	bin, err := filepath.Abs("../../../../.local/bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bin, "kube-apiserver")); err != nil {
		t.Fatalf("control plane not built (run `make cluster-build`): %v", err)
	}
	root := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(bin, "localcluster")
	run := func(args ...string) string {
		out, err := exec.Command(self, append(args, "--root", root)...).CombinedOutput()
		if err != nil {
			t.Fatalf("localcluster %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command(self, "down", "--root", root).Run() })

	run("up")
	c := newCluster(root)
	first := c.pids()
	if len(first) != 5 {
		t.Fatalf("want 5 processes, got %v", first)
	}
	if out := run("up"); !strings.Contains(out, "already up") {
		t.Fatalf("second up was not a no-op: %s", out)
	}
	for name, pid := range c.pids() {
		if first[name] != pid {
			t.Fatalf("second up restarted %s", name)
		}
	}
	// A restarted API server is a new process with the same arguments, serving again, and nothing else restarted.
	if out := run("restart", "--component", "kube-apiserver"); !strings.Contains(out, "kube-apiserver restarted and ready") {
		t.Fatalf("restart said: %s", out)
	}
	after := c.pids()
	for name, pid := range after {
		if changed := first[name] != pid; changed != (name == "kube-apiserver") {
			t.Fatalf("after restarting kube-apiserver, %s has pid %d (was %d)", name, pid, first[name])
		}
	}
	if !c.isUp() {
		t.Fatal("the cluster is not up after the restart")
	}
	if out, err := exec.Command(self, "restart", "--component", "nope", "--root", root).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), `no component "nope"`) {
		t.Fatalf("restart of an unknown component: %v %s", err, out)
	}
	for name, pid := range after {
		first[name] = pid
	}
	run("down")
	for name, pid := range first {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil && c.ours(pid) {
			t.Errorf("%s (pid %d) still running after down", name, pid)
		}
	}
	if _, err := os.Stat(c.data); !os.IsNotExist(err) {
		t.Errorf("data folder %s left behind: %v", c.data, err)
	}
	if _, err := os.Stat(c.kubeconfigPath()); !os.IsNotExist(err) {
		t.Errorf("kubeconfig left behind: %v", err)
	}
	run("down") // idempotent
}
