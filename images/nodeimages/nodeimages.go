// Package nodeimages writes the container images that every kiln node carries, since no registry is
// there to pull them from: the pod sandbox image (kubecfg.SandboxImage, from cmd/kiln-pause) and the
// test workload (kubecfg.EchoImage, from cmd/kiln-echo), each a single static binary
// (package ociimage), as image archives that `ctr -n k8s.io images import` reads.
//
// hack/tools.sh node-images builds the binaries and runs cmd/kiln-node-images, which calls Main; the
// base image bakes the archives into /usr/share/kiln/images, and kiln-images.service imports them
// into containerd before the kubelet starts.
package nodeimages

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/images/ociimage"
)

// Image is one node image: the binary it is made of and the archive it is written to.
type Image struct {
	// Ref is the image's name and tag.
	Ref string
	// Binary is the base name of its static binary (cmd/<Binary>).
	Binary string
	// Archive is the base name of its image archive.
	Archive string
	// ExposedPorts of the image's program.
	ExposedPorts []string
}

// Images are the node images, the sandbox image first.
var Images = []Image{
	{Ref: kubecfg.SandboxImage, Binary: "kiln-pause", Archive: "pause.tar"},
	{Ref: kubecfg.EchoImage, Binary: "kiln-echo", Archive: "echo.tar", ExposedPorts: []string{"8080/tcp"}},
}

// Write writes the archive of every image into outDir, reading each binary from binDir.
func Write(binDir, outDir string) error {
	for _, im := range Images {
		spec := ociimage.Spec{Ref: im.Ref, Binary: filepath.Join(binDir, im.Binary), ExposedPorts: im.ExposedPorts}
		if err := ociimage.WriteFile(filepath.Join(outDir, im.Archive), spec); err != nil {
			return fmt.Errorf("nodeimages: %s: %w", im.Ref, err)
		}
	}
	return nil
}

// Main runs kiln-node-images with the command-line arguments args (without the program name) and
// returns its exit status:
//
//	kiln-node-images -bin DIR -out DIR   write every image's archive into -out from the binaries in -bin
//	kiln-node-images -list               print each image's archive name and reference
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kiln-node-images", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin", "", "directory with the static binaries (kiln-pause, kiln-echo)")
	outDir := fs.String("out", "", "directory to write the image archives to")
	list := fs.Bool("list", false, "print each image's archive and reference, and write nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kiln-node-images: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *list {
		for _, im := range Images {
			fmt.Fprintf(stdout, "%s %s\n", im.Archive, im.Ref)
		}
		return 0
	}
	if *binDir == "" || *outDir == "" {
		fmt.Fprintln(stderr, "kiln-node-images: -bin and -out are required (or -list)")
		return 2
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "kiln-node-images: %v\n", err)
		return 1
	}
	if err := Write(*binDir, *outDir); err != nil {
		fmt.Fprintf(stderr, "kiln-node-images: %v\n", err)
		return 1
	}
	for _, im := range Images {
		fmt.Fprintf(stdout, "%s %s\n", filepath.Join(*outDir, im.Archive), im.Ref)
	}
	return 0
}
