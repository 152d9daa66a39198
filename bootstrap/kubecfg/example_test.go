package kubecfg_test

import (
	"fmt"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

func ExampleSchedulerFlags() {
	for _, f := range kubecfg.SchedulerFlags(kubecfg.SchedulerInput{}) {
		if len(f) > 60 {
			f = f[:57] + "..."
		}
		fmt.Println(f)
	}
	// Output:
	// --authentication-kubeconfig=/etc/kubernetes/scheduler.conf
	// --authorization-kubeconfig=/etc/kubernetes/scheduler.conf
	// --bind-address=127.0.0.1
	// --kubeconfig=/etc/kubernetes/scheduler.conf
	// --leader-elect=true
	// --profiling=false
	// --tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2...
	// --tls-min-version=VersionTLS12
}

func ExampleClusterDNSAddress() {
	addr, err := kubecfg.ClusterDNSAddress("10.96.0.0/12")
	fmt.Println(addr, err)
	// Output: 10.96.0.10 <nil>
}

func ExampleCheckEncryptionConfig() {
	// 16 zero bytes: kube-apiserver accepts this aescbc key, kiln does not.
	err := kubecfg.CheckEncryptionConfig([]byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - identity: {}
  - aescbc: {keys: [{name: key1, secret: AAAAAAAAAAAAAAAAAAAAAA==}]}
`))
	fmt.Println(err)
	// Output:
	// kubecfg: encryption config: resources[0].providers[1].aescbc.keys[0].secret: encryption key is not 32 bytes: decodes to 16 bytes
	// kubecfg: encryption config: resources[0].providers[0]: identity is the first provider for secrets: new secrets would be stored in plain text
}
