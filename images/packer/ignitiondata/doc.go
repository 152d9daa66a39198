// Package ignitiondata is the kiln-ignition Packer data source: it renders one node's Ignition config
// from a cluster spec file and the cluster's secrets in kiln's state store (bootstrap/ignition, the
// same renderer as `kiln render ignition`), for a template to put into vSphere guestinfo, EC2
// user-data or QEMU's fw_cfg.
package ignitiondata
