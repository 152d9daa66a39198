package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvBinDir names a directory that FindBinaries searches before $PATH.
const EnvBinDir = "KILN_BIN_DIR"

// Binaries are the absolute paths of the programs a control plane runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler string
}

// program names, in the order messages list them.
var programs = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// FindBinaries looks each program up in dirs, in order, then in $KILN_BIN_DIR, then in $PATH. Its
// error wraps ErrMissingBinary, names every missing program and where it looked, and says how to get
// each one: `hack/tools.sh kubernetes` builds etcd and the Kubernetes binaries.
func FindBinaries(dirs ...string) (Binaries, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		dirs = append(dirs, d)
	}
	found := map[string]string{}
	var missing []string
	for _, name := range programs {
		p, err := lookPath(name, dirs)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		found[name] = p
	}
	if len(missing) > 0 {
		where := "$PATH"
		if len(dirs) > 0 {
			where = strings.Join(dirs, ", ") + " and $PATH"
		}
		return Binaries{}, fmt.Errorf("controlplane: %w: %s (looked in %s); build etcd and the Kubernetes binaries with hack/tools.sh kubernetes and pass --bin-dir \"$(dirname \"$(hack/tools.sh kubernetes)\")\"",
			ErrMissingBinary, strings.Join(missing, ", "), where)
	}
	return Binaries{
		Etcd:              found["etcd"],
		APIServer:         found["kube-apiserver"],
		ControllerManager: found["kube-controller-manager"],
		Scheduler:         found["kube-scheduler"],
	}, nil
}

// lookPath finds an executable name in dirs, then in $PATH, and returns its absolute path.
func lookPath(name string, dirs []string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}

// binary returns the program of a unit.
func (b Binaries) binary(unit string) string {
	switch unit {
	case UnitEtcd:
		return b.Etcd
	case UnitAPIServer:
		return b.APIServer
	case UnitControllerManager:
		return b.ControllerManager
	case UnitScheduler:
		return b.Scheduler
	}
	return ""
}
