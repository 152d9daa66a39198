# kiln: bake a hardened image from a base disk image with the QEMU builder, as qcow2 (local QEMU
# nodes) or raw (bare metal, written to disks or served by the PXE boot server).
#
#   kiln image build --target qemu --base-image DIR [--var format=raw]
#   kiln image build --target qemu --var base_image=... --var build_ignition=... --var ssh_private_key_file=...
#
# The build machine boots the base image with a build-time Ignition config (build_ignition, passed
# through QEMU's fw_cfg) that creates the build user with the public half of ssh_private_key_file and
# passwordless sudo; kiln image build makes a one-time pair when neither is given (images/buildaccess). kiln-harden then hardens it, verifies it and cleans it; by default it removes the
# build user last and powers the machine off itself.

packer {
  required_version = ">= 1.12.0"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = "= 1.0.9"
    }
    kiln = {
      source  = "github.com/kiln-dev/kiln"
      version = ">= 0.1.0"
    }
  }
}

variable "base_image" {
  type        = string
  description = "Path or URL of the base disk image (qcow2), e.g. the kiln Debian 12 base image."
}

variable "base_image_checksum" {
  type        = string
  default     = "none"
  description = "Checksum of base_image: \"sha256:...\", \"file:/path/SHA256SUMS\" or \"none\"."
}

variable "kernel" {
  type        = string
  default     = ""
  description = "Kernel to boot with -kernel when the image has no boot loader (the kiln base image); empty boots the disk."
}

variable "initrd" {
  type        = string
  default     = ""
  description = "Initramfs to boot with -initrd, with kernel."
}

variable "kernel_cmdline" {
  type        = string
  default     = "root=LABEL=kiln-root rw console=ttyS0 ignition.firstboot ignition.platform.id=qemu"
  description = "Kernel command line, with kernel."
}

variable "build_ignition" {
  type        = string
  default     = ""
  description = "Build-time Ignition config file passed through fw_cfg (opt/com.coreos/config); empty passes none."
}

variable "format" {
  type        = string
  default     = "qcow2"
  description = "Output format: qcow2 (local QEMU) or raw (bare metal)."
  validation {
    condition     = contains(["qcow2", "raw"], var.format)
    error_message = "The format must be qcow2 or raw."
  }
}

variable "accelerator" {
  type        = string
  default     = "kvm"
  description = "QEMU accelerator: kvm, or tcg where there is no KVM."
}

variable "memory" {
  type    = number
  default = 2048
}

variable "cpus" {
  type    = number
  default = 2
}

variable "ssh_username" {
  type        = string
  default     = "packer"
  description = "The build user that build_ignition creates."
}

variable "ssh_private_key_file" {
  type        = string
  description = "Private key of the build user (its public half is in build_ignition). kiln image build makes a one-time one, with build_ignition, when neither is given."
}

variable "serial_log" {
  type        = string
  default     = ""
  description = "File that receives the build machine's serial console (boot and Ignition messages); empty keeps none."
}

variable "output_directory" {
  type    = string
  default = "output-kiln-qemu"
}

variable "vm_name" {
  type    = string
  default = "kiln"
}

variable "allow_groups" {
  type        = list(string)
  default     = []
  description = "kiln-harden allow_groups: the only groups allowed to log in over SSH; empty allows every user with a key."
}

variable "hardening_level" {
  type        = string
  default     = "level1"
  description = "kiln-harden level: level1 (CIS Debian 12 Level 1 items for a Kubernetes node, docs/hardening.md) or baseline (SSH policy and upgrades only)."
}

variable "hardening_skip" {
  type        = list(string)
  default     = []
  description = "kiln-harden skip: ids of level1 rules to leave out (e.g. [\"cis-3.3.7\"]); each is logged and recorded in /usr/share/kiln/hardening.json."
}

variable "automatic_reboot_time" {
  type        = string
  default     = "02:00"
  description = "kiln-harden automatic_reboot_time: when unattended upgrades reboot, HH:MM."
}

variable "rsa_host_key_bits" {
  type        = number
  default     = 4096
  description = "kiln-harden rsa_host_key_bits: size of the RSA host key each machine makes on its first boot."
}

variable "remove_build_user" {
  type        = bool
  default     = true
  description = "kiln-harden remove_build_user: delete the build user last; the machine then powers itself off."
}

locals {
  # qemuargs entries are lists of strings; the conditionals add nothing when their input is empty.
  kernel_args   = var.kernel == "" ? [] : [["-kernel", var.kernel], ["-initrd", var.initrd], ["-append", var.kernel_cmdline]]
  ignition_args = var.build_ignition == "" ? [] : [["-fw_cfg", "name=opt/com.coreos/config,file=${var.build_ignition}"]]
  serial_args   = var.serial_log == "" ? [] : [["-serial", "file:${var.serial_log}"]]
  # User networking restricted to the forwarded SSH port on loopback: the build reaches nothing else.
  net_args = [["-netdev", "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"]]
}

source "qemu" "kiln" {
  iso_url          = var.base_image
  iso_checksum     = var.base_image_checksum
  disk_image       = true
  use_backing_file = false
  skip_resize_disk = true
  format           = var.format
  accelerator      = var.accelerator
  headless         = true
  memory           = var.memory
  cpus             = var.cpus
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  qemuargs         = concat(local.net_args, local.kernel_args, local.ignition_args, local.serial_args)

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "30m"
  # With remove_build_user, kiln-harden schedules the poweroff itself: sudo is gone by now.
  shutdown_command = var.remove_build_user ? "true" : "sudo -n systemctl poweroff"
  shutdown_timeout = "5m"

  output_directory = var.output_directory
  vm_name          = "${var.vm_name}.${var.format}"
}

build {
  sources = ["source.qemu.kiln"]

  # The kiln base image runs Ignition only while /etc/kiln/ignition-firstboot exists, and this build's
  # boot consumed it: re-arm it so that each machine made from the image runs its own config.
  provisioner "shell" {
    inline = ["sudo -n sh -c 'mkdir -p /etc/kiln && touch /etc/kiln/ignition-firstboot'"]
  }

  provisioner "kiln-harden" {
    level                 = var.hardening_level
    skip                  = var.hardening_skip
    allow_groups          = var.allow_groups
    automatic_reboot_time = var.automatic_reboot_time
    rsa_host_key_bits     = var.rsa_host_key_bits
    remove_build_user     = var.remove_build_user
  }
}
