package provisioner

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// MachineName is the name of machine ordinal of a pool: "<cluster>-<pool>-<ordinal>", which for the
// control plane (ControlPlanePool) is "<cluster>-control-plane-<ordinal>".
func MachineName(cluster, pool string, ordinal int) string {
	return cluster + "-" + pool + "-" + strconv.Itoa(ordinal)
}

// Ordinal is the ordinal of a machine name made by MachineName(cluster, pool, ordinal), and false for
// any other name.
func Ordinal(cluster, pool, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, cluster+"-"+pool+"-")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return 0, false
	}
	return n, true
}

// ClientToken is the idempotency token of creating machine name of cluster: the same for the same
// machine, different for any other, 64 hexadecimal characters (the most EC2's ClientToken allows).
// A create retried after a crash carries the same token, so the cloud makes one machine.
func ClientToken(cluster, name string) string {
	h := sha256.New()
	// Lengths first, so that ("a-b", "c") and ("a", "b-c") differ.
	h.Write([]byte("kiln.dev/machine\x00" + strconv.Itoa(len(cluster)) + "\x00" + cluster + "\x00" + name))
	return hex.EncodeToString(h.Sum(nil))
}
