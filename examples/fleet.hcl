# Rotating the certificate of a web fleet: every host serves
# web.prod.privsec.ch with nginx, and the hosts get their new leaves two at
# a time, so that most of the fleet serves while a batch reloads, and a
# batch starts only once the hosts of the one before serve their new
# certificates.
#
#   rotplan plan -var-file fleet.vars.hcl examples/fleet.hcl   # lists the batches
#   rotplan run  -var-file fleet.vars.hcl examples/fleet.hcl
#
# rotplan runs on a controller that reaches every host over SSH (host keys
# in known_hosts) and Vault; the Vault connection comes from the
# environment (VAULT_ADDR, VAULT_CACERT, VAULT_TLS_SERVER_NAME,
# VAULT_CLIENT_CERT/VAULT_CLIENT_KEY or VAULT_TOKEN), as for prod.hcl. Per
# host: openssl generates the new key on the host, over SSH, and the key
# never leaves it (Vault signs a CSR the host signed with it), the
# certificate is written beside it, `nginx -t` runs there, nginx reloads
# there, and then the controller checks, over TLS, that the host serves
# the new serial. The fleet test (internal/e2e/fleet_test.go) and `make
# bench-fleet` run this file.

variable "web" {
  type        = map(object({ address = string, ssh_port = number, dir = string }))
  description = "The web hosts by name: address, SSH port, and nginx's prefix directory there (nginx.conf, tls/web.key, tls/web.crt)."
}

variable "known_hosts" {
  type        = string
  default     = "/root/.ssh/known_hosts"
  description = "The hosts' keys: rotplan connects to no host whose key is not in it."
}

variable "identity" {
  type        = string
  default     = "/root/.ssh/id_ed25519"
  description = "The controller's SSH key."
}

variable "server_name" {
  type        = string
  default     = "web.prod.privsec.ch"
  description = "The name every host serves."
}

variable "role" {
  type        = string
  default     = "nginx-web"
  description = "The pki-prod role that signs for server_name."
}

variable "ca_file" {
  type        = string
  description = "The root CA a client of the fleet trusts, where rotplan runs."
}

variable "nginx" {
  type        = string
  default     = "nginx"
  description = "nginx on the hosts (a name looked up there, or a path)."
}

variable "batch_size" {
  type        = number
  default     = 2
  description = "How many hosts reload together: a batch starts once every host of the one before serves its new certificate."
}

variable "max_failures" {
  type        = number
  default     = 0
  description = "How many hosts may fail, each rolled back alone while the rollout goes on; one more ends the rollout. 0: the first failure does."
}

variable "rollback" {
  type        = string
  default     = "all"
  description = "What a failure that ends the rollout undoes: \"all\" (every host, so the fleet ends on one version) or \"failed_batch\" (the batches that completed keep their new certificate)."
}

variable "check_interval" {
  type        = string
  default     = "1s"
  description = "How often the TLS check tries again while nginx reloads."
}

host "web" {
  for_each      = var.web
  address       = each.value.address
  port          = each.value.ssh_port
  known_hosts   = var.known_hosts
  identity_file = var.identity
}

# batch_size hosts a batch (two by default), in key order. By default the
# first failure ends the rollout and the whole fleet is rolled back.
rollout "web" {
  hosts        = host.web
  batch_size   = var.batch_size
  max_failures = var.max_failures
  rollback     = var.rollback
}

# On the host (`on`): openssl makes the key there, in a temporary file
# created owner-only, and the host signs the CSR with it; Vault sees only
# the CSR (pki-prod/sign/ROLE). rotplan writes the certificate (leaf and
# issuing CA) and renames the key into place, owner and mode set first.
# Being on the host, the step is in the host's batch: each host's leaf is
# signed when its batch starts, and a batch that never starts gets none.
sign "web" {
  for_each         = var.web
  on               = host.web[each.key]
  mount            = "pki-prod"
  role             = var.role
  common_name      = var.server_name
  ttl              = "720h"
  key_path         = "${each.value.dir}/tls/web.key"
  certificate_path = "${each.value.dir}/tls/web.crt"
  key_mode         = "0600"
  certificate_mode = "0644"
  owner            = "root"
  group            = "root"
}

verify "config" {
  for_each   = var.web
  on         = host.web[each.key]
  depends_on = [sign.web[each.key]]
  command {
    argv = [var.nginx, "-t", "-q", "-c", "${each.value.dir}/nginx.conf", "-p", "${each.value.dir}/"]
  }
}

# nginx reloads asynchronously: its master starts new workers, and the old
# ones take new connections, with the old certificate, until they have
# been told to stop. So the reload returns once every old worker has
# exited (pgrep, from procps): from then on every client gets the new
# certificate, and the check below cannot pass on one lucky connection.
locals {
  reload_nginx = <<-EOT
    old=$(pgrep -P "$(cat "$3/nginx.pid")") || true
    "$1" -s reload -c "$2" -p "$3/"
    for pid in $old; do
      while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
    done
  EOT
}

reload "nginx" {
  for_each   = var.web
  on         = host.web[each.key]
  command    = ["sh", "-c", local.reload_nginx, "sh", var.nginx, "${each.value.dir}/nginx.conf", each.value.dir]
  depends_on = [verify.config[each.key]]
}

# From where rotplan runs, as a client would: the host serves the new
# certificate for the name, and it verifies to the root. The check looks
# from here; its `on` makes it a step of the host's batch, so the next
# batch starts only once it has passed.
verify "served" {
  for_each   = var.web
  on         = host.web[each.key]
  depends_on = [reload.nginx[each.key]]
  interval   = var.check_interval
  tls {
    address       = "${each.value.address}:443"
    server_name   = var.server_name
    ca_file       = var.ca_file
    expect_serial = sign.web[each.key].serial_number
  }
}
