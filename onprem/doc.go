// Package onprem will hold the on-premises providers: vSphere (onprem/vsphere), the local QEMU
// provider (onprem/qemu) and the PXE boot server with its bare-metal pool (onprem/pxe).
package onprem
