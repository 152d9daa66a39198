// Package templates holds kiln's Packer templates, embedded so that `kiln image build` can write them
// out: qemu (qcow2 for local QEMU nodes, raw for bare metal), amazon-ebs and vsphere-clone. Each
// declares the plugins it needs in required_plugins and ends with the kiln-harden provisioner.
package templates

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed *.pkr.hcl
var files embed.FS

// Targets maps each `kiln image build --target` to its template file.
var Targets = map[string]string{
	"qemu":    "qemu.pkr.hcl",
	"aws":     "amazon-ebs.pkr.hcl",
	"vsphere": "vsphere-clone.pkr.hcl",
}

// Source returns the template of a target.
func Source(target string) ([]byte, error) {
	name, ok := Targets[target]
	if !ok {
		return nil, fmt.Errorf("templates: unknown target %q (want qemu, aws or vsphere)", target)
	}
	return files.ReadFile(name)
}

// Write writes the template of target into dir and returns its path.
func Write(dir, target string) (string, error) {
	data, err := Source(target)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, Targets[target])
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("templates: %w", err)
	}
	return path, nil
}
