package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed stages.yaml
var kwokStages []byte

// NodeName is the one simulated Node; it has no taint, so every ordinary Pod is scheduled to it.
const NodeName = "kwok-node-0"

// Service account tokens are issued by this issuer and, unless a TokenRequest names other audiences, for it.
const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

type cluster struct {
	root string // .local: bin/, cluster/, kubeconfig
	bin  string
	data string
}

func newCluster(root string) *cluster {
	return &cluster{root: root, bin: filepath.Join(root, "bin"), data: filepath.Join(root, "cluster")}
}

func (c *cluster) kubeconfigPath() string { return filepath.Join(c.root, "kubeconfig") }

// component is one process of the control plane, in start order. When it serves is read from its own arguments
// (waitServing), the same way for `up` and for `restart`.
type component struct {
	name string
	args []string
}

func (c *cluster) up() error {
	if c.isUp() {
		fmt.Println("local cluster is already up")
		c.printNext()
		return nil
	}
	// Leftovers of a cluster that died or was half started: clear them so that this start is fresh.
	if err := c.down(); err != nil {
		return err
	}
	start := time.Now()
	if err := c.start(); err != nil {
		c.dumpLogs()
		_ = c.down()
		return err
	}
	fmt.Printf("local cluster ready in %.1fs\n", time.Since(start).Seconds())
	c.printNext()
	return nil
}

func (c *cluster) printNext() {
	fmt.Printf("export KUBECONFIG=%s\n", c.kubeconfigPath())
}

func (c *cluster) start() error {
	for _, tool := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(c.bin, tool)); err != nil {
			return fmt.Errorf("%s is not built (run `make cluster-build`): %w", tool, err)
		}
	}
	for _, d := range []string{"pids", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.data, d), 0o700); err != nil {
			return err
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	p, err := newPKI(filepath.Join(c.data, "pki"))
	if err != nil {
		return err
	}
	users := []struct{ name, cn, org string }{
		{"admin", "kubernetes-admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		// kwok plays every kubelet of the simulated nodes, so it needs rights on Nodes, Leases and Pod status.
		{"kwok", "kwok", "system:masters"},
	}
	for _, u := range users {
		var orgs []string
		if u.org != "" {
			orgs = []string{u.org}
		}
		if err := p.issue(u.name, u.cn, orgs, false); err != nil {
			return err
		}
		kc, err := p.kubeconfig(server, u.name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.data, u.name+".kubeconfig"), kc, 0o600); err != nil {
			return err
		}
	}
	if err := p.issue("apiserver", "kube-apiserver", nil, true); err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	stages := filepath.Join(c.data, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	kc := func(name string) string { return filepath.Join(c.data, name+".kubeconfig") }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	components := []component{
		{
			name: "etcd",
			args: []string{self, "etcd", "--data-dir", filepath.Join(c.data, "etcd"),
				"--client-url", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
				"--peer-url", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)},
		},
		{
			name: "kube-apiserver",
			args: []string{filepath.Join(c.bin, "kube-apiserver"),
				"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
				"--bind-address", "127.0.0.1",
				"--advertise-address", "127.0.0.1",
				"--secure-port", strconv.Itoa(apiPort),
				"--tls-cert-file", p.path("apiserver.crt"),
				"--tls-private-key-file", p.path("apiserver.key"),
				"--client-ca-file", p.path("ca.crt"),
				"--authorization-mode", "Node,RBAC",
				"--service-account-issuer", serviceAccountIssuer,
				"--service-account-key-file", p.path("sa.pub"),
				"--service-account-signing-key-file", p.path("sa.key"),
				"--api-audiences", serviceAccountIssuer,
				"--service-cluster-ip-range", "10.96.0.0/16",
				// Only loopback here: the default reconciler would publish 127.0.0.1 as the kubernetes Service endpoint.
				"--endpoint-reconciler-type", "none",
				"--allow-privileged=true",
				// PodNodeSelector: a namespace's scheduler.alpha.kubernetes.io/node-selector annotation joins its Pods'
				// nodeSelector, so a test can keep Pods that select "any process node" (the README's example) on its own.
				"--enable-admission-plugins", "NodeRestriction,PodNodeSelector",
				"--profiling=false",
				"--v=1",
			},
		},
		{
			name: "kube-controller-manager",
			args: []string{filepath.Join(c.bin, "kube-controller-manager"),
				"--kubeconfig", kc("controller-manager"),
				"--secure-port", "0",
				"--leader-elect=false",
				"--use-service-account-credentials",
				"--service-account-private-key-file", p.path("sa.key"),
				"--root-ca-file", p.path("ca.crt"),
				"--v=1",
			},
		},
		{
			name: "kube-scheduler",
			args: []string{filepath.Join(c.bin, "kube-scheduler"),
				"--kubeconfig", kc("scheduler"),
				"--secure-port", "0",
				"--leader-elect=false",
				"--v=1",
			},
		},
		{
			name: "kwok",
			args: []string{filepath.Join(c.bin, "kwok"),
				"--kubeconfig", kc("kwok"),
				"--config", stages,
				"--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
				"--node-lease-duration-seconds", "40",
				"--cidr", "10.244.0.0/16",
				"--node-ip", "10.0.0.10",
			},
		},
	}
	for _, comp := range components {
		if err := c.spawn(comp.name, comp.args); err != nil {
			return err
		}
		if err := c.waitServing(ctx, comp.name, comp.args); err != nil {
			return fmt.Errorf("%s did not become ready: %w", comp.name, err)
		}
	}
	if err := createNodeAndWait(ctx, kc("admin"), NodeName); err != nil {
		return err
	}
	// The controller-manager runs its controllers once the default ServiceAccount of "default" exists (one of them
	// makes it). Until then an API server that goes away is fatal to it (seen: a restart right after `up` left it
	// dead on a 403 while it built its clients), and Pods of a namespace without its ServiceAccount are refused.
	admin, err := c.adminClient()
	if err != nil {
		return err
	}
	if err := poll(ctx, "the controller-manager's default ServiceAccount", func() error {
		return httpOK(admin, server+"/api/v1/namespaces/default/serviceaccounts/default")
	}); err != nil {
		return err
	}
	adminKubeconfig, err := os.ReadFile(kc("admin"))
	if err != nil {
		return err
	}
	// Written last: its existence is the sign that the cluster came up.
	return os.WriteFile(c.kubeconfigPath(), adminKubeconfig, 0o600)
}

// freePorts picks n free loopback ports below the kernel's ephemeral range (32768 and up on Linux): a port from that
// range can be taken as the source port of some outgoing connection while its component is down, and then the
// component cannot listen on it again when `restart` starts it (seen: "bind: address already in use").
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	const low, high = 20000, 32768
	start := low + rand.Intn(high-low)
	for i := 0; i < high-low && len(ports) < n; i++ {
		port := low + (start-low+i)%(high-low)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		listeners = append(listeners, l)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("only %d free loopback ports in [%d, %d)", len(ports), low, high)
	}
	return ports, nil
}

func httpOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// poll retries check every 100ms until it succeeds or ctx ends, and then reports the last failure; a check that
// reports errExited (what it waits for is gone) ends it at once.
func poll(ctx context.Context, what string, check func() error) error {
	var last error
	for {
		if last = check(); last == nil || errors.Is(last, errExited) {
			return last
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *cluster) dumpLogs() {
	entries, _ := os.ReadDir(filepath.Join(c.data, "logs"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(c.data, "logs", e.Name()))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(os.Stderr, "----- last lines of %s -----\n%s\n", e.Name(), strings.Join(lines, "\n"))
	}
}
