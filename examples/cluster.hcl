# Rotating the listener certificates of a 3-node Vault cluster (integrated
# storage, Raft) one node at a time: the standbys first, the active node
# last, and each node only once the one before serves its new certificate
# and the cluster is healthy again with every voter.
#
#   rotplan plan examples/cluster.hcl     # lists the batches in order
#   rotplan run  examples/cluster.hcl
#
# Per node: openssl generates the new key on the node itself, over SSH, and
# the key never leaves it: rotplan has the node sign a CSR with it, and
# Vault signs the CSR (pki-prod/sign/vault-server), so neither the network
# nor Vault ever sees the key. rotplan writes the certificate beside it on
# the node and renames the key into place, then sends Vault there SIGHUP
# (it reloads its listener certificate), then checks from here that the
# node serves the new serial (SNI vault.prod.privsec.ch) and that autopilot
# calls the cluster healthy with every voter. The sign has the node's `on`,
# so it belongs to the node's batch: each node's certificate is signed when
# its turn comes, and a node whose turn never comes gets none. A failure
# anywhere rolls back every node that was done (files restored, Vault
# reloaded again) and revokes the certificates signed so far.
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
  description = "The owner of the key and the certificate on the nodes: the vault user, by id or by name (looked up on the node)."
}

variable "vault_gid" {
  type    = string
  default = "997"
}

variable "key_owner" {
  type        = map(string)
  default     = {}
  description = "Per node, another owner (an id or a name) for the new key and certificate: a test makes a key unreadable by Vault."
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

# On the node (`on`): openssl makes the key there, in a temporary file
# created owner-only, and the node signs the CSR with it; rotplan sends the
# CSR to Vault, writes the certificate (leaf and issuing CA, so that
# clients that trust only the root can build the chain) and renames the
# key into place, owner and mode set first. Being on the node, the step is
# in the node's batch: it runs when the node's turn comes, after the
# checks of the node before.
sign "listener" {
  for_each         = var.nodes
  on               = host.vault[each.key]
  mount            = "pki-prod"
  role             = "vault-server"
  common_name      = var.server_name
  ip_sans          = [each.value.address]
  ttl              = "720h"
  key_type         = "rsa" # the role's key type, as its issue gave
  key_bits         = 2048
  key_path         = "${each.value.dir}/tls/tls.key"
  certificate_path = "${each.value.dir}/tls/tls.crt"
  key_mode         = "0600"
  certificate_mode = "0644"
  owner            = lookup(var.key_owner, each.key, var.vault_uid)
  group            = var.vault_gid
}

reload "vault" {
  for_each   = var.nodes
  on         = host.vault[each.key]
  depends_on = [sign.listener[each.key]]
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
    expect_serial = sign.listener[each.key].serial_number
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
