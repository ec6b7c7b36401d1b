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
// `up` is a no-op, and `down` leaves no process and no data folder behind.
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
