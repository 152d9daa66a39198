package qemu_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/onprem/qemu"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

// testConfig is a Config for real QEMU processes with small VMs, state in a short temporary
// directory (unix socket paths are limited), and ports from a random base.
func testConfig(t *testing.T) qemu.Config {
	t.Helper()
	bin := testtool.Tool(t, "qemu")
	return qemu.Config{
		StateDir:    shortTempDir(t),
		QEMU:        bin,
		MemoryMiB:   64,
		CPUs:        1,
		SSHPortBase: 20000 + rand.IntN(20000),
		APIPortBase: 41000 + rand.IntN(20000),
		StopTimeout: 5 * time.Second,
	}
}

// shortTempDir is a temporary directory with a short path (t.TempDir's names the test, and the
// private network's unix sockets must fit in 108 bytes). When the test ends, any process still running
// from it (a VM or switch a failed test left) is killed, before the directory is removed.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kq-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pidfiles, _ := filepath.Glob(filepath.Join(dir, "*", "*", "qemu.pid"))
		switches, _ := filepath.Glob(filepath.Join(dir, "*", ".switch.pid"))
		for _, f := range append(pidfiles, switches...) {
			data, _ := os.ReadFile(f)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if pid > 0 && strings.Contains(string(cmdline), dir) {
				t.Logf("killing process %d left by the test (%s)", pid, f)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(dir)
	})
	return dir
}

// blankImage is a tiny empty qcow2 disk: the VM finds nothing to boot and its firmware waits, a real
// QEMU process all the same, which is what the contract needs.
func blankImage(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	return img
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Setup {
		cfg := testConfig(t)
		img := blankImage(t)
		return providertest.Setup{
			New: func() provisioner.Provider {
				p, err := qemu.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return p
			},
			Image:    img,
			Machines: 2,
			Timeout:  2 * time.Minute,
		}
	})
}
