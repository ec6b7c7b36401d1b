package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// errExited: the component being waited for is no longer running.
var errExited = errors.New("exited")

// The arguments each component was started with, kept so that `restart` starts it again exactly as `up` did.
func (c *cluster) argsPath(name string) string { return filepath.Join(c.data, "args", name+".json") }

func (c *cluster) saveArgs(name string, args []string) error {
	if err := os.MkdirAll(filepath.Join(c.data, "args"), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(args)
	if err != nil {
		return err
	}
	return os.WriteFile(c.argsPath(name), b, 0o600)
}

func (c *cluster) savedArgs(name string) ([]string, error) {
	b, err := os.ReadFile(c.argsPath(name))
	if err != nil {
		return nil, err
	}
	var args []string
	return args, json.Unmarshal(b, &args)
}

// restart stops one component of a running cluster with sig (SIGKILL: as a crash would; SIGTERM: as a rollout
// would), starts it again with the arguments `up` gave it, and waits until it serves again (kube-apiserver: /readyz;
// etcd: /health). Everything else keeps running, and the data stays: this is how the chaos tests restart the API
// server under a running workload.
func (c *cluster) restart(name string, sig syscall.Signal) error {
	if !c.isUp() {
		return errors.New("the local cluster is not up (run `localcluster up`)")
	}
	pids := c.pids()
	pid, ok := pids[name]
	if !ok {
		var names []string
		for n := range pids {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("no component %q: the components are %v", name, names)
	}
	args, err := c.savedArgs(name)
	if err != nil {
		return fmt.Errorf("the arguments %s was started with: %w", name, err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", name, pid, err)
	}
	// A component that ignores SIGTERM past the grace period is killed, as the kubelet would.
	deadline := time.Now().Add(10 * time.Second)
	for c.ours(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c.ours(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 250 && c.ours(pid); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if c.ours(pid) {
			return fmt.Errorf("%s (pid %d) did not stop", name, pid)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A component that exits at once (its port briefly held by another socket, say) is started again, a few times.
	for attempt := 1; ; attempt++ {
		if err := c.spawn(name, args); err != nil {
			return err
		}
		err := c.waitServing(ctx, name, args)
		if err == nil {
			break
		}
		if !errors.Is(err, errExited) || attempt == 5 {
			return fmt.Errorf("%s did not serve again (attempt %d): %w", name, attempt, err)
		}
		fmt.Printf("%s exited before serving (attempt %d); starting it again\n", name, attempt)
	}
	fmt.Printf("%s restarted and ready in %.2fs\n", name, time.Since(start).Seconds())
	return nil
}

// waitServing waits until a component that was just started serves: kube-apiserver /readyz, etcd /health (the
// endpoints read back from its own arguments); the others serve nothing this command could ask, so running is what
// is checked. It gives up at once (errExited) when the process is gone.
func (c *cluster) waitServing(ctx context.Context, name string, args []string) error {
	check := func() error { return nil }
	switch name {
	case "kube-apiserver":
		client, err := c.adminClient()
		if err != nil {
			return err
		}
		url := fmt.Sprintf("https://127.0.0.1:%s/readyz", argValue(args, "--secure-port"))
		check = func() error { return httpOK(client, url) }
	case "etcd":
		url := argValue(args, "--client-url") + "/health"
		check = func() error { return httpOK(http.DefaultClient, url) }
	}
	return poll(ctx, name+" serving", func() error {
		if pid, ok := c.pids()[name]; !ok || !running(pid) {
			return errExited
		}
		return check()
	})
}

func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// adminClient speaks to the API server as the admin user, with the certificate and CA of the data folder (so it
// works for a cluster another run of this command started).
func (c *cluster) adminClient() (*http.Client, error) {
	dir := filepath.Join(c.data, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no CA certificate in " + filepath.Join(dir, "ca.crt"))
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}},
	}, nil
}
