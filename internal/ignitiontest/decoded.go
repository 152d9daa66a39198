package ignitiontest

import (
	"strings"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config/v3_5"
	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Decoded is an Ignition config with every data URL it holds decoded, the configs it merges too.
func Decoded(t testing.TB, raw []byte) string {
	t.Helper()
	cfg, _, err := ignconfig.Parse(raw)
	if err != nil {
		t.Fatalf("ignitiontest: config: %v", err)
	}
	out := string(raw)
	sources := append([]igntypes.Resource{}, cfg.Ignition.Config.Merge...)
	for _, f := range cfg.Storage.Files {
		sources = append(sources, f.Contents)
	}
	for _, r := range sources {
		if r.Source == nil || !strings.HasPrefix(*r.Source, "data:") {
			continue
		}
		b, err := lint.DecodeSource(*r.Source, r.Compression)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
			out += "\n" + Decoded(t, b)
		} else {
			out += "\n" + string(b)
		}
	}
	return out
}
