package kubecfg

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	goldenfile "github.com/kiln-dev/kiln/internal/golden"
	"io"
	"os"
	"path/filepath"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, *update, name, got)
}

// documents splits a multi-document YAML stream as kubectl does.
func documents(t *testing.T, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("split documents: %v", err)
		}
		docs = append(docs, doc)
	}
}

// strict decodes one document into v and fails the test on any unknown or duplicate field.
func strict(t *testing.T, doc []byte, v any) {
	t.Helper()
	findings, err := decodeStrict(doc, v)
	if err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	if err := errors.Join(findings...); err != nil {
		t.Fatalf("decode %T strictly: %v\n%s", v, err, doc)
	}
}

// writeTemp writes data to a file in a fresh temporary directory and returns its path.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testKey is a fixed 32-byte key for golden files.
func testKey(n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}
