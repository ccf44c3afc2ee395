// Command kube is a local Kubernetes control plane in one binary, built from the published Go
// modules of Kubernetes and etcd (see go.mod for the pinned versions). The first argument names
// the component, the rest are that component's own flags:
//
//	kube etcd --data-dir DIR --listen-client-url http://127.0.0.1:2379
//	kube kube-apiserver --etcd-servers http://127.0.0.1:2379 ...
//	kube kube-controller-manager --kubeconfig FILE ...
//	kube kubectl get nodes
//	kube keygen FILE     (a ServiceAccount token signing key)
//
// One binary, not four, so that the Go linker (the slowest step of a build) runs once.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // for timeZone support in CronJob, as upstream's mains do

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream's mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream's mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream's mains
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

const usage = "usage: kube {etcd|kube-apiserver|kube-controller-manager|kubectl|keygen} [flags]"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	component := os.Args[1]
	// Each component parses os.Args[1:] as its own command line.
	os.Args = append([]string{component}, os.Args[2:]...)
	switch component {
	case "etcd":
		os.Exit(runEtcd(os.Args[1:]))
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "keygen":
		os.Exit(runKeygen(os.Args[1:]))
	case "kubectl":
		logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) // nolint:errcheck
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q; %s\n", component, usage)
		os.Exit(2)
	}
}
