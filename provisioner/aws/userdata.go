package aws

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// Stub is the small Ignition config (spec 3.5.0) that an instance gets as user-data instead of its
// full config: it merges the config fetched from url (an https presigned S3 URL) and verified
// against its sha512, so a config that was changed in the bucket is refused.
func Stub(configURL string, config []byte) ([]byte, error) {
	u, err := url.Parse(configURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("ignition stub: config URL is not an https URL: %w", ErrInvalidConfig)
	}
	sum := sha512.Sum512(config)
	hash := "sha512-" + hex.EncodeToString(sum[:])
	cfg := types.Config{Ignition: types.Ignition{
		Version: "3.5.0",
		Config: types.IgnitionConfig{Merge: []types.Resource{{
			Source:       &configURL,
			Verification: types.Verification{Hash: &hash},
		}}},
	}}
	return json.Marshal(cfg)
}
