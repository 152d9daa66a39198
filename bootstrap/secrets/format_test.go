package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// leakForms are the ways a secret value could show up in printed text.
func leakForms(v []byte) []string {
	forms := []string{
		base64.StdEncoding.EncodeToString(v),
		hex.EncodeToString(v),
		fmt.Sprint(v), // [12 34 ...]
		strings.Trim(fmt.Sprint(v), "[]"),
		fmt.Sprintf("%q", v),
	}
	if block, _ := pem.Decode(v); block != nil {
		body := base64.StdEncoding.EncodeToString(block.Bytes)
		forms = append(forms, body[20:60], hex.EncodeToString(block.Bytes))
	} else {
		forms = append(forms, string(v))
	}
	// Only forms long enough not to match by chance.
	var out []string
	for _, f := range forms {
		if len(f) >= 12 {
			out = append(out, f)
		}
	}
	return out
}

func TestPrintingNeverLeaks(t *testing.T) {
	b := mustGenerate(t, cluster("leaky"), seeded(1))
	tok, err := b.AddBootstrapToken(seeded(2), t0, time.Hour, "join")
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		slog.New(h).Info("bundle", "b", b, "v", *b, "ssh", b.SSH, "ca", b.ClusterCA, "token", tok)
	}
	printed := map[string]string{
		"%v %+v":  fmt.Sprintf("%v %+v", b, *b),
		"%#v":     fmt.Sprintf("%#v %#v", b, *b),
		"%s %q":   fmt.Sprintf("%s %q", b, *b),
		"%x %X":   fmt.Sprintf("%x %X", b, *b),
		"%d":      fmt.Sprintf("%d", *b),
		"fields":  fmt.Sprintf("%v %+v %#v %v %+v %#v", b.SSH, b.SSH, b.SSH, b.ClusterCA, b.Admin, b.ServiceAccount),
		"slice":   fmt.Sprintf("%v %+v", []*Bundle{b}, map[string]Bundle{"x": *b}),
		"token":   fmt.Sprintf("%#v", tok),
		"Println": fmt.Sprintln(b, *b),
		"slog":    logs.String(),
	}
	for name, value := range allSecrets(b) {
		for _, form := range leakForms(value) {
			for how, out := range printed {
				if strings.Contains(out, form) {
					t.Errorf("%s printed with %s shows %s as %q", "bundle", how, name, form)
				}
			}
		}
	}
	for how, out := range printed {
		if strings.Contains(out, tok.Secret) {
			t.Errorf("%s shows the token secret", how)
		}
	}
	out := fmt.Sprintf("%v", b)
	for _, want := range []string{"kiln leaky cluster CA", "kube-apiserver", redacted, tok.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("%%v of the bundle does not show %q:\n%s", want, out)
		}
	}
	// The token's own String is the token: that is what it is for.
	if tok.String() != tok.ID+"."+tok.Secret {
		t.Errorf("BootstrapToken.String() = %q, want the token", tok.String())
	}
}
