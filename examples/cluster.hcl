# Rotating the listener certificates of a 3-node Vault cluster (integrated
# storage, Raft) one node at a time: the standbys first, the active node
# last, and each node only once the one before serves its new certificate
# and the cluster is healthy again with every voter.
#
#   rotplan plan examples/cluster.hcl     # lists the batches in order
#   rotplan run  examples/cluster.hcl
#
# Per node: Vault issues the certificate (here, where rotplan runs), rotplan
# writes key and certificate on the node over SSH (the key travels only
# inside the SSH channel), sends Vault there SIGHUP (it reloads its
# listener certificate), then checks from here that the node serves the
# new serial (SNI vault.prod.privsec.ch) and that autopilot calls the
# cluster healthy with every voter. A failure anywhere rolls back every
# node that was done (files restored, Vault reloaded again) and revokes
# the new certificates.
#
# The Vault connection comes from the variables below or the environment
# (VAULT_ADDR, VAULT_CACERT): the admin identity logs in with cert auth.
# The variables are a contract: tests set them (internal/e2e/cluster_test.go).

variable "nodes" {
  type = map(object({ address = string, dir = string }))
  default = {
    "vault-1" = { address = "10.0.0.11", dir = "/opt/vault" }
    "vault-2" = { address = "10.0.0.12", dir = "/opt/vault" }
    "vault-3" = { address = "10.0.0.13", dir = "/opt/vault" }
  }
  description = "The nodes by Raft node id: each host's address and Vault's directory there (tls/, run/vault.pid)."
}

variable "known_hosts" {
  type    = string
  default = "/root/.ssh/known_hosts"
}

variable "identity" {
  type        = string
  default     = "/root/.ssh/id_ed25519"
  description = "The SSH key rotplan logs in to the nodes with."
}

variable "ssh_port" {
  type    = number
  default = 22
}

variable "vault_port" {
  type    = number
  default = 8200
}

variable "vault_addr" {
  type        = string
  default     = env("VAULT_ADDR", "https://10.0.0.11:8200")
  description = "Where rotplan talks to Vault: the active node, or any node (a standby forwards)."
}

variable "server_name" {
  type    = string
  default = "vault.prod.privsec.ch"
}

variable "ca_cert" {
  type        = string
  default     = env("VAULT_CACERT", "/root/vault/env/ca.pem")
  description = "The root CA clients trust; the checks verify against it alone."
}

variable "admin_dir" {
  type        = string
  default     = "/root/vault/tls-admin/prod"
  description = "The admin mTLS identity (admin.crt, admin.key): rotplan's login, and the client certificate the listeners require."
}

variable "vault_uid" {
  type        = string
  default     = "997"
  description = "The vault user's numeric id on the nodes (a write on a host takes ids)."
}

variable "vault_gid" {
  type    = string
  default = "997"
}

variable "key_owner" {
  type        = map(string)
  default     = {}
  description = "Per node, another owner (a numeric id) for the new key: a test makes one unreadable by Vault."
}

variable "check_timeout" {
  type    = string
  default = "30s"
}

vault {
  address         = var.vault_addr
  tls_server_name = var.server_name
  ca_cert         = var.ca_cert
  client_cert     = "${var.admin_dir}/admin.crt"
  client_key      = "${var.admin_dir}/admin.key"
}

host "vault" {
  for_each      = var.nodes
  address       = each.value.address
  port          = var.ssh_port
  known_hosts   = var.known_hosts
  identity_file = var.identity
}

# The standbys one by one, then the active node: a node is touched only
# once the batch before it passed its checks.
rollout "vault" {
  groups     = [[host.vault["vault-2"], host.vault["vault-3"]], [host.vault["vault-1"]]]
  batch_size = 1
}

issue "listener" {
  for_each    = var.nodes
  mount       = "pki-prod"
  role        = "vault-server"
  common_name = var.server_name
  ip_sans     = [each.value.address]
  ttl         = "720h"
}

write "key" {
  for_each = var.nodes
  on       = host.vault[each.key]
  path     = "${each.value.dir}/tls/tls.key"
  content  = issue.listener[each.key].private_key
  mode     = "0600"
  owner    = lookup(var.key_owner, each.key, var.vault_uid)
  group    = var.vault_gid
}

# The listener serves this file: leaf and issuing CA, so that clients that
# trust only the root can build the chain.
write "cert" {
  for_each = var.nodes
  on       = host.vault[each.key]
  path     = "${each.value.dir}/tls/tls.crt"
  content  = issue.listener[each.key].fullchain
  mode     = "0644"
  owner    = var.vault_uid
  group    = var.vault_gid
}

reload "vault" {
  for_each   = var.nodes
  on         = host.vault[each.key]
  depends_on = [write.key[each.key], write.cert[each.key]]
  pid_file   = "${each.value.dir}/run/vault.pid"
  signal     = "SIGHUP"
  expect {
    name = "vault"
  }
}

# From here, with the node's `on`, so that the next batch waits for it:
# the node serves the new certificate for the name clients validate.
verify "served" {
  for_each = var.nodes
  on       = host.vault[each.key]
  since    = reload.vault[each.key].at
  timeout  = var.check_timeout
  interval = "250ms"
  tls {
    address       = "${each.value.address}:${var.vault_port}"
    server_name   = var.server_name
    ca_file       = var.ca_cert
    client_cert   = "${var.admin_dir}/admin.crt"
    client_key    = "${var.admin_dir}/admin.key"
    expect_serial = issue.listener[each.key].serial_number
  }
}

# And the cluster has every voter back, healthy, before the next node.
verify "cluster" {
  for_each   = var.nodes
  on         = host.vault[each.key]
  depends_on = [verify.served[each.key]]
  timeout    = var.check_timeout
  interval   = "250ms"
  vault_cluster {
    voters = keys(var.nodes)
  }
}
