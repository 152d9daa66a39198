package access_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/bootstrap/pki"
)

// A kubeconfig for alice in kiln:developers, for an hour, reaching the API through a forwarded port on
// loopback and checking its certificate against the load balancer's name.
func ExampleIssue() {
	now := time.Now()
	ca, err := pki.NewCA(rand.Reader, "kiln demo cluster CA", now, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	server := "https://127.0.0.1:40123"
	name, _ := access.TLSServerName(server, "api.demo.kiln.internal")
	cred, err := access.Issue(ca, rand.Reader, now, access.Request{
		Cluster: "demo", Server: server, TLSServerName: name,
		User: "kiln:alice", Groups: []string{"kiln:developers"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(cred.User, cred.Groups, cred.NotAfter.Sub(now).Round(time.Minute), name)

	_, err = access.Issue(ca, rand.Reader, now, access.Request{
		Cluster: "demo", Server: server, User: "kiln:alice", Groups: []string{access.MastersGroup},
	})
	fmt.Println(err)
	// Output:
	// kiln:alice [kiln:developers] 1h0m0s api.demo.kiln.internal
	// access: reserved identity: group system:masters bypasses RBAC and is given only with Admin (kiln kubeconfig --admin)
}
