# kiln: bake a hardened AMI on AWS from a kiln base AMI (an image that runs Ignition from user-data).
#
#   kiln image build --target aws --var source_ami=ami-... --var subnet_id=subnet-... \
#     --var build_ignition=build.ign --var ssh_private_key_file=build_key
#
# The build instance runs in a private subnet with no public IP and IMDSv2 required; Packer reaches it
# on its private address (run the build from the bastion or a machine in the VPC). Its user-data is
# the build-time Ignition config that creates the build user; kiln-harden removes that user last.

packer {
  required_version = ">= 1.12.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.1"
    }
    kiln = {
      source  = "github.com/kiln-dev/kiln"
      version = ">= 0.1.0"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-central-1"
}

variable "source_ami" {
  type        = string
  description = "The kiln base AMI (boots with Ignition from user-data)."
}

variable "instance_type" {
  type    = string
  default = "t3.medium"
}

variable "subnet_id" {
  type        = string
  description = "A private subnet (egress through NAT) for the build instance."
}

variable "build_ignition" {
  type        = string
  description = "Build-time Ignition config file: the build user and its public key; sent as user-data."
}

variable "ssh_username" {
  type    = string
  default = "packer"
}

variable "ssh_private_key_file" {
  type = string
}

variable "ami_name_prefix" {
  type    = string
  default = "kiln-node"
}

locals {
  ami_name = "${var.ami_name_prefix}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
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

source "amazon-ebs" "kiln" {
  region                      = var.region
  source_ami                  = var.source_ami
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  associate_public_ip_address = false
  ssh_interface               = "private_ip"
  user_data_file              = var.build_ignition
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  encrypt_boot = true
  ami_name     = local.ami_name
  tags = {
    "kiln.dev/image" = "node"
  }

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "15m"
  # kiln-harden removes the build user and schedules the poweroff itself; EBS images are taken from
  # the stopped instance.
  shutdown_behavior = "stop"
}

build {
  sources = ["source.amazon-ebs.kiln"]

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
