// Command packer-plugin-kiln is kiln's Packer plugin: the kiln-harden provisioner and the
// kiln-ignition data source. Install it with
//
//	packer plugins install --path packer-plugin-kiln github.com/kiln-dev/kiln
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/packer-plugin-sdk/plugin"
	"github.com/hashicorp/packer-plugin-sdk/version"

	"github.com/kiln-dev/kiln/images/packer/hardening"
	"github.com/kiln-dev/kiln/images/packer/ignitiondata"
)

// Version is the plugin's release version (Packer installs release versions only); set with
// -ldflags "-X main.Version=...".
var Version = "0.1.0"

func main() {
	set := plugin.NewSet()
	set.RegisterProvisioner("harden", new(hardening.Provisioner))
	set.RegisterDatasource("ignition", new(ignitiondata.Datasource))
	set.SetVersion(version.NewPluginVersion(Version, "", ""))
	if err := set.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
