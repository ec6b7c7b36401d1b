package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// running must tell a live process from a finished one without reading its command line (which reads empty for a
// moment right after exec), and take a zombie for finished.
func TestRunningTellsLiveFromZombie(t *testing.T) {
	if !running(os.Getpid()) {
		t.Fatal("this test's own process is not running")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not waited for: once it exits it stays a zombie until Wait below.
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if running(pid) {
		t.Fatalf("pid %d (exited `true`, a zombie) still taken for running", pid)
	}
	_ = cmd.Wait()
	if running(pid) {
		t.Fatalf("pid %d (reaped) still taken for running", pid)
	}
}
