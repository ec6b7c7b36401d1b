// Command localcluster runs a real Kubernetes control plane on loopback for development and end-to-end tests:
// embedded etcd, kube-apiserver, kube-controller-manager, kube-scheduler (all built from the upstream modules pinned
// in go.mod) and kwok, which simulates one Node and the lifecycle of the Pods bound to it.
//
//	localcluster up     start everything in the background, wait until it is ready, write the kubeconfig
//	localcluster down   stop every process it started and remove the data folder
//	localcluster status exit 0 when the cluster is up
//	localcluster restart --component NAME [--signal KILL|TERM]
//	                    stop one component and start it again as `up` did (chaos tests restart kube-apiserver)
//	localcluster etcd   (internal) run the embedded etcd in the foreground
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	if cmd == "etcd" {
		if err := runEtcd(args); err != nil {
			fmt.Fprintln(os.Stderr, "etcd:", err)
			os.Exit(1)
		}
		return
	}
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	root := fs.String("root", ".local", "folder holding bin/, cluster/ (the data folder) and kubeconfig")
	componentName := fs.String("component", "", "restart: the component (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)")
	signalName := fs.String("signal", "KILL", "restart: how to stop it, KILL (a crash) or TERM (a graceful stop)")
	_ = fs.Parse(args)
	abs, err := filepath.Abs(*root)
	if err != nil {
		fail(err)
	}
	c := newCluster(abs)
	switch cmd {
	case "up":
		err = c.up()
	case "down":
		err = c.down()
	case "restart":
		sig, ok := map[string]syscall.Signal{"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM}[*signalName]
		if !ok {
			fail(fmt.Errorf("--signal %q: want KILL or TERM", *signalName))
		}
		if *componentName == "" {
			fail(errors.New("restart needs --component NAME"))
		}
		err = c.restart(*componentName, sig)
	case "status":
		if !c.isUp() {
			fmt.Println("local cluster is down")
			os.Exit(1)
		}
		fmt.Println("local cluster is up:", c.kubeconfigPath())
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up|down|status|restart [--root .local] [--component NAME --signal KILL|TERM]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "localcluster:", err)
	os.Exit(1)
}
