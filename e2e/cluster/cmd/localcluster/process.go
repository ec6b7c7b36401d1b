package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spawn starts a component detached from this process (own session, output to logs/NAME.log) and records its PID.
func (c *cluster) spawn(name string, args []string) error {
	logf, err := os.OpenFile(filepath.Join(c.data, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	if err := c.saveArgs(name, args); err != nil {
		return err
	}
	// Release, not Wait: the component must outlive this command. The pid file is how `down` finds it again.
	_ = cmd.Process.Release()
	return os.WriteFile(filepath.Join(c.data, "pids", name), []byte(strconv.Itoa(pid)), 0o600)
}

// pids maps each recorded component to its PID.
func (c *cluster) pids() map[string]int {
	out := map[string]int{}
	entries, _ := os.ReadDir(filepath.Join(c.data, "pids"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(c.data, "pids", e.Name()))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out[e.Name()] = pid
		}
	}
	return out
}

// isUp: the kubeconfig exists (written only after a complete start) and every recorded process is alive.
func (c *cluster) isUp() bool {
	if _, err := os.Stat(c.kubeconfigPath()); err != nil {
		return false
	}
	pids := c.pids()
	if len(pids) < 5 {
		return false
	}
	for _, pid := range pids {
		if !c.ours(pid) {
			return false
		}
	}
	return true
}

// ours tells whether pid is alive and one of this cluster's processes: every one of them names the data folder
// in its command line, which guards against a recycled PID.
func (c *cluster) ours(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && running(pid) && strings.Contains(string(cmdline), c.data)
}

// running tells whether a process this command has just started is still there (not gone, not a zombie). It does
// not read the command line as ours does: right after exec the kernel has already woken the parent (the vfork hand
// back) but not yet set the new program's argument pages, so /proc/PID/cmdline can read empty for a moment (seen
// on a loaded CI machine: a healthy controller-manager taken for exited).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may itself hold spaces.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z"
}

// down stops every process of this cluster, those in pid files and any other whose command line names the data
// folder (a start that died before writing its pid file), then removes the data folder and the kubeconfig.
func (c *cluster) down() error {
	victims := map[int]bool{}
	for _, pid := range c.pids() {
		if c.ours(pid) {
			victims[pid] = true
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if pid, err := strconv.Atoi(p.Name()); err == nil && pid != os.Getpid() && c.ours(pid) {
			victims[pid] = true
		}
	}
	for pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	// The data is thrown away, so there is nothing to shut down gracefully for: a short grace period, then SIGKILL.
	deadline := time.Now().Add(2 * time.Second)
	for pid := range victims {
		for c.ours(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if c.ours(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for pid := range victims {
		for i := 0; i < 100 && c.ours(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if c.ours(pid) {
			return fmt.Errorf("process %d did not stop", pid)
		}
	}
	if len(victims) > 0 {
		fmt.Printf("stopped %d processes\n", len(victims))
	}
	if err := os.Remove(c.kubeconfigPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(c.data)
}
