# kiln: bake a hardened vSphere template by cloning a kiln base template (a VM that runs Ignition from
# guestinfo) into a private port group.
#
#   kiln image build --target vsphere --var vcenter_server=... --var username=... --var password=... \
#     --var cluster=... --var template=kiln-base --var network=kiln-private --var build_ignition=build.ign \
#     --var ssh_private_key_file=build_key
#
# The build-time Ignition config goes in guestinfo.ignition.config.data (base64); it holds only the
# build user's public key. kiln-harden removes that user last.

packer {
  required_version = ">= 1.12.0"
  required_plugins {
    vsphere = {
      source  = "github.com/hashicorp/vsphere"
      version = ">= 1.4.2"
    }
    kiln = {
      source  = "github.com/kiln-dev/kiln"
      version = ">= 0.1.0"
    }
  }
}

variable "vcenter_server" {
  type = string
}

variable "username" {
  type = string
}

variable "password" {
  type      = string
  sensitive = true
}

variable "insecure_connection" {
  type    = bool
  default = false
}

variable "datacenter" {
  type    = string
  default = ""
}

variable "cluster" {
  type        = string
  default     = ""
  description = "The vSphere cluster to build in; set cluster or host."
}

variable "host" {
  type        = string
  default     = ""
  description = "The ESXi host to build on; set cluster or host."
}

variable "datastore" {
  type    = string
  default = ""
}

variable "folder" {
  type    = string
  default = ""
}

variable "template" {
  type        = string
  description = "The kiln base template to clone."
}

variable "network" {
  type        = string
  description = "A private port group for the build VM."
}

variable "vm_name_prefix" {
  type    = string
  default = "kiln-node"
}

locals {
  vm_name = "${var.vm_name_prefix}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
}

variable "build_ignition" {
  type = string
}

variable "ssh_username" {
  type    = string
  default = "packer"
}

variable "ssh_private_key_file" {
  type = string
}

variable "allow_groups" {
  type    = list(string)
  default = []
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
  type    = string
  default = "02:00"
}

source "vsphere-clone" "kiln" {
  vcenter_server      = var.vcenter_server
  username            = var.username
  password            = var.password
  insecure_connection = var.insecure_connection
  datacenter          = var.datacenter
  cluster             = var.cluster
  host                = var.host
  datastore           = var.datastore
  folder              = var.folder
  template            = var.template
  vm_name             = local.vm_name
  network             = var.network
  configuration_parameters = {
    "guestinfo.ignition.config.data"          = base64encode(file(var.build_ignition))
    "guestinfo.ignition.config.data.encoding" = "base64"
  }
  convert_to_template = true

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "15m"
  # kiln-harden removes the build user and schedules the poweroff itself.
  shutdown_command = "true"
  shutdown_timeout = "5m"
}

build {
  sources = ["source.vsphere-clone.kiln"]

  provisioner "shell" {
    inline = ["sudo -n sh -c 'mkdir -p /etc/kiln && touch /etc/kiln/ignition-firstboot'"]
  }

  provisioner "kiln-harden" {
    level                 = var.hardening_level
    skip                  = var.hardening_skip
    allow_groups          = var.allow_groups
    automatic_reboot_time = var.automatic_reboot_time
    remove_build_user     = true
  }
}
