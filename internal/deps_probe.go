package internal

import (
	_ "github.com/coreos/butane/config"
	_ "github.com/coreos/ignition/v2/config/v3_5"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/bbolt"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/ssh"
	_ "k8s.io/apiserver/pkg/apis/apiserver/v1"
	_ "k8s.io/pod-security-admission/admission/api/load"
	_ "sigs.k8s.io/yaml"
)
