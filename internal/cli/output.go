package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state"
)

// printStructured writes v as JSON or YAML; format text is the caller's job.
func printStructured(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	default:
		return fmt.Errorf("unknown output format %q (want text, json or yaml)", format)
	}
}

func checkFormat(format string) error {
	switch format {
	case "text", "json", "yaml":
		return nil
	}
	return fmt.Errorf("-o %s: unknown output format (want text, json or yaml)", format)
}

// loadSpec reads and decodes a cluster spec file.
func loadSpec(path string) (*v1alpha1.Cluster, error) {
	data, err := readlimit.ReadFile(path, readlimit.Spec)
	if err != nil {
		return nil, fmt.Errorf("read cluster spec: %w", err)
	}
	return v1alpha1.Decode(data, path)
}

// openState opens the state store in the state directory, creating it and its key on first use.
func (g *globals) openState() (*state.Store, error) {
	key, err := state.LoadOrCreateKey(g.stateDir)
	if err != nil {
		return nil, err
	}
	return state.Open(stateFile(g.stateDir), key)
}

func stateFile(dir string) string { return dir + "/state.db" }

// loadCluster reads a spec and its cluster's secrets from the state store.
func (g *globals) loadCluster(specPath string) (*v1alpha1.Cluster, *secrets.Bundle, error) {
	c, err := loadSpec(specPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := g.openState()
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	b, err := secrets.Load(st, c.Metadata.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w (run 'kiln init %s' first)", c.Metadata.Name, err, c.Metadata.Name)
	}
	return c, b, nil
}
