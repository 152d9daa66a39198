package harden

import (
	"fmt"
	"strings"
)

// Family is a group of distros that one plan serves.
type Family string

// The distro families kiln knows.
const (
	// FamilyDebian is Debian and Ubuntu: apt, unattended-upgrades.
	FamilyDebian Family = "debian"
	// FamilyRHEL is RHEL, Rocky, AlmaLinux, CentOS Stream and Fedora: dnf, dnf-automatic.
	FamilyRHEL Family = "rhel"
	// FamilyFlatcar is Flatcar and other image-based systems, updated as a whole image: kiln verifies them
	// and changes nothing.
	FamilyFlatcar Family = "flatcar"
)

// Distro is the target of a plan: its family, and its os-release ID where the family's distros differ
// (Debian and Ubuntu name their security origins differently).
type Distro struct {
	Family Family
	// ID is the os-release ID: "debian" or "ubuntu" in FamilyDebian; informational elsewhere.
	ID string
}

// The distros of the golden plans.
var (
	Debian  = Distro{Family: FamilyDebian, ID: "debian"}
	Ubuntu  = Distro{Family: FamilyDebian, ID: "ubuntu"}
	RHEL    = Distro{Family: FamilyRHEL, ID: "rhel"}
	Flatcar = Distro{Family: FamilyFlatcar, ID: "flatcar"}
)

// familyOf maps os-release IDs to their family.
var familyOf = map[string]Family{
	"debian":    FamilyDebian,
	"ubuntu":    FamilyDebian,
	"rhel":      FamilyRHEL,
	"rocky":     FamilyRHEL,
	"almalinux": FamilyRHEL,
	"centos":    FamilyRHEL,
	"fedora":    FamilyRHEL,
	"flatcar":   FamilyFlatcar,
}

// ParseDistro returns the Distro of an os-release ID ("debian", "ubuntu", "rocky", "flatcar", ...).
func ParseDistro(id string) (Distro, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	f, ok := familyOf[id]
	if !ok {
		return Distro{}, fmt.Errorf("harden: %w: %q", ErrUnknownDistro, id)
	}
	return Distro{Family: f, ID: id}, nil
}

// String returns "family" or "family/id".
func (d Distro) String() string {
	if d.ID == "" || d.ID == string(d.Family) {
		return string(d.Family)
	}
	return string(d.Family) + "/" + d.ID
}

// securityOrigins returns the unattended-upgrades Origins-Pattern entries of the distro's security
// archives, matched by codename so that an image never follows "stable" into the next release.
func securityOrigins(d Distro) ([]string, error) {
	switch d.ID {
	case "", "debian":
		return []string{"origin=Debian,codename=${distro_codename}-security,label=Debian-Security"}, nil
	case "ubuntu":
		return []string{
			"origin=Ubuntu,archive=${distro_codename}-security,label=Ubuntu",
			"origin=UbuntuESMApps,archive=${distro_codename}-apps-security",
			"origin=UbuntuESM,archive=${distro_codename}-infra-security",
		}, nil
	}
	return nil, fmt.Errorf("harden: %w: no security origins for apt distro %q", ErrUnknownDistro, d.ID)
}
