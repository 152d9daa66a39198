package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

// ApplyEncryptionConfig writes config as the node's EncryptionConfiguration (the file kube-apiserver's
// --encryption-provider-config names, under Dir) and restarts kube-apiserver, returning once it
// answers /readyz again: what a rotation of the encryption key needs of every API server (package
// rotate). kube-apiserver reads the file only when it starts. config must pass
// kubecfg.CheckEncryptionConfig; the file is replaced atomically, mode 0600.
func (cp *ControlPlane) ApplyEncryptionConfig(ctx context.Context, config []byte) error {
	if err := kubecfg.CheckEncryptionConfig(config); err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	dst := under(cp.Dir, kubecfg.DefaultEncryptionConfigFile)
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".encryption-config-*")
	if err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(config); err != nil {
		tmp.Close()
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("controlplane: encryption config: %w", err)
	}
	return cp.restartAPIServer(ctx)
}

// restartAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after stopTimeout), starts it again with
// the same flags and waits until it is ready.
func (cp *ControlPlane) restartAPIServer(ctx context.Context) error {
	name := strings.TrimSuffix(cp.apiCmd.Unit, ".service")
	i := slices.IndexFunc(cp.procs, func(p *process) bool { return p.name == name })
	if i < 0 {
		return fmt.Errorf("controlplane: restart %s: %w", name, ErrNotRunning)
	}
	old := cp.procs[i]
	old.restarting.Store(true)
	_ = old.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-old.done:
	case <-time.After(stopTimeout):
		_ = old.cmd.Process.Kill()
		<-old.done
	}
	start := time.Now()
	p, err := cp.run(cp.binaries, cp.apiCmd)
	if err != nil {
		return err
	}
	// run appended p; it takes the old process's place, so that Stop keeps the start order.
	cp.procs = cp.procs[:len(cp.procs)-1]
	cp.procs[i] = p
	cp.progress("restarted %s", name)
	if err := waitReady(ctx, p, cp.readyTimeout, cp.progress, func(ctx context.Context) error {
		return apiReady(ctx, cp.apiClient, cp.APIURL+"/readyz")
	}); err != nil {
		return err
	}
	cp.progress("%s ready after %v", name, time.Since(start).Round(time.Millisecond))
	return nil
}
