// Package provisioner will hold the Provider interface and its contract suite, the reconcile loop,
// health verdicts and rollouts (issue 4), and the AWS provider (provisioner/aws, issue 6).
package provisioner
