package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

// EncryptionConfigAppliedFile, in a control plane's directory, holds the SHA-256 (hex) of the
// encryption config that the running kube-apiserver was started with: how another process (kiln
// rotate encryption-key, through DirAPIServers) learns that its change took effect.
const EncryptionConfigAppliedFile = "encryption-config.applied"

// followEvery is how often Wait looks for a changed encryption config.
const followEvery = time.Second

// ApplyEncryptionConfig writes config as the node's EncryptionConfiguration (the file kube-apiserver's
// --encryption-provider-config names, under Dir) and restarts kube-apiserver, returning once it
// answers /readyz again: what a rotation of the encryption key needs of every API server (package
// rotate). kube-apiserver reads the file only when it starts. config must pass
// kubecfg.CheckEncryptionConfig; the file is replaced atomically, mode 0600.
func (cp *ControlPlane) ApplyEncryptionConfig(ctx context.Context, config []byte) error {
	if err := writeEncryptionConfig(cp.Dir, config); err != nil {
		return err
	}
	return cp.restartAPIServer(ctx, config)
}

func writeEncryptionConfig(dir string, config []byte) error {
	if err := kubecfg.CheckEncryptionConfig(config); err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	if err := atomicfile.Write(under(dir, kubecfg.DefaultEncryptionConfigFile), config, 0o600, false); err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	return nil
}

// followEncryptionConfig restarts kube-apiserver if the encryption config file is not the one it was
// started with and passes kiln's check; a config that does not is reported and left alone.
func (cp *ControlPlane) followEncryptionConfig(ctx context.Context) error {
	config, err := os.ReadFile(under(cp.Dir, kubecfg.DefaultEncryptionConfigFile))
	if err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	if sum(config) == cp.appliedSum {
		return nil
	}
	if err := kubecfg.CheckEncryptionConfig(config); err != nil {
		cp.progress("the changed encryption config is not applied: %v", err)
		cp.appliedSum = sum(config) // reported once
		return nil
	}
	cp.progress("the encryption config changed: restarting kube-apiserver")
	return cp.restartAPIServer(ctx, config)
}

// markApplied records config as the one the running kube-apiserver was started with.
func (cp *ControlPlane) markApplied(config []byte) error {
	cp.appliedSum = sum(config)
	if err := atomicfile.Write(filepath.Join(cp.Dir, EncryptionConfigAppliedFile), []byte(cp.appliedSum+"\n"), 0o600, false); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	return nil
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// restartAPIServer restarts kube-apiserver, waits until it is ready, then restarts its clients
// (kube-controller-manager, kube-scheduler), which exit when they lose their leader lease while the API
// is away (on a node, systemd restarts them), and records config as the one kube-apiserver runs with.
func (cp *ControlPlane) restartAPIServer(ctx context.Context, config []byte) error {
	const api = 1 // cp.cmds and cp.procs: etcd, kube-apiserver, then its clients
	if len(cp.procs) != len(cp.cmds) || len(cp.cmds) <= api {
		return fmt.Errorf("controlplane: restart kube-apiserver: %w", ErrNotRunning)
	}
	// Their exits from now on are kiln's doing, not failures for Wait to report.
	for _, p := range cp.procs[api:] {
		p.restarting.Store(true)
	}
	for i := api; i < len(cp.cmds); i++ {
		terminate(cp.procs[i])
		start := time.Now()
		p, err := cp.run(cp.binaries, cp.cmds[i])
		if err != nil {
			return err
		}
		// run appended p; it takes the old process's place, so that Stop keeps the start order.
		cp.procs = cp.procs[:len(cp.procs)-1]
		cp.procs[i] = p
		cp.progress("restarted %s", p.name)
		if i != api {
			continue
		}
		if err := waitReady(ctx, p, cp.readyTimeout, cp.progress, func(ctx context.Context) error {
			return apiReady(ctx, cp.apiClient, cp.APIURL+"/readyz")
		}); err != nil {
			return err
		}
		cp.progress("%s ready after %v", p.name, time.Since(start).Round(time.Millisecond))
	}
	return cp.markApplied(config)
}

// DirAPIServers is the kube-apiserver of a control plane that another process runs (`kiln
// controlplane run`), reached through its directory: ApplyEncryptionConfig writes the encryption
// config file there and waits until that process's Wait has restarted kube-apiserver with it (see
// EncryptionConfigAppliedFile). A node agent on a real control-plane node would do the same.
type DirAPIServers struct {
	// Dir is the control plane's directory (`kiln controlplane run --dir`).
	Dir string
}

// ApplyEncryptionConfig writes config and waits, polling within ctx's budget, until the running
// kube-apiserver was restarted with it. Writing the config it already runs with returns at once.
func (d DirAPIServers) ApplyEncryptionConfig(ctx context.Context, config []byte) error {
	if err := writeEncryptionConfig(d.Dir, config); err != nil {
		return err
	}
	want := []byte(sum(config) + "\n")
	applied := filepath.Join(d.Dir, EncryptionConfigAppliedFile)
	err := wait.PollUntilContextCancel(ctx, readyPoll*5, true, func(context.Context) (bool, error) {
		got, err := os.ReadFile(applied)
		return err == nil && bytes.Equal(got, want), nil
	})
	if err != nil {
		return fmt.Errorf("controlplane: waiting for the kube-apiserver of %s to restart with the new encryption config (is 'kiln controlplane run --dir %s' running?): %w", d.Dir, d.Dir, err)
	}
	return nil
}
