# Rotating a production Vault's control-plane certificates:
# first the admin mTLS client certificate, so there is always a fresh,
# known-good identity, then the Vault listener's TLS certificate.
#
#   rotplan run examples/prod.hcl
#
# The Vault connection comes from the environment, as in prod.env:
# VAULT_ADDR and VAULT_TLS_SERVER_NAME (else the seed's listener and name),
# VAULT_CACERT (the root CA clients trust), VAULT_CLIENT_CERT and
# VAULT_CLIENT_KEY (the current admin certificate), or VAULT_TOKEN.
#
# The variables below are a contract: tests and the demo set them.

variable "admin_dir" {
  type        = string
  default     = "/root/vault/tls-admin/prod"
  description = "Where the admin mTLS client certificate lives."
}

variable "server_dir" {
  type        = string
  default     = "/home/vaultprod/tls-prod"
  description = "The Vault listener's TLS directory."
}

variable "vault_addr" {
  type        = string
  default     = env("VAULT_ADDR", "https://127.0.0.1:22400")
  description = "The production Vault listener: VAULT_ADDR when exported."
}

variable "server_name" {
  type        = string
  default     = env("VAULT_TLS_SERVER_NAME", "vault.prod.privsec.ch")
  description = "The name clients validate (SNI), VAULT_TLS_SERVER_NAME when exported; the server certificate must carry it."
}

variable "vault_pid_file" {
  type        = string
  default     = "/run/vault-prod/vault.pid"
  description = "Pid file of the Vault server, which reloads its listener certificate on SIGHUP."
}

variable "server_dir_owner" {
  type        = string
  default     = "vaultprod"
  description = "Who owns server_dir and the directory it is in (vaultprod's home): the server steps trust that user with the path (trust_owner)."
}

variable "owner" {
  type    = string
  default = "vaultprod"
}

variable "group" {
  type    = string
  default = "vaultprod"
}

variable "renew_before" {
  type        = string
  default     = "240h"
  description = "Renew a certificate only when it has this long left or less, so the plan is safe to run from a timer."
}

variable "ca_cert" {
  type        = string
  default     = env("VAULT_CACERT")
  description = "The root CA bundle clients trust; the checks verify against it alone."
}

vault {
  address         = var.vault_addr
  tls_server_name = var.server_name
}

locals {
  # How every check reaches the listener: the name clients validate, the root
  # they trust, and the admin identity just written.
  admin_key = "${var.admin_dir}/admin.key"
  admin_crt = "${var.admin_dir}/admin.crt"
}

# 1) Admin client certificate (mTLS identity for privileged access).

# renew_before/current: the step, and every step that depends on nothing
# else, is skipped while the certificate in use has more than renew_before
# left.
# revoke_superseded: if a resumed run has to issue again (the key of the
# interrupted run's certificate was never journaled), the certificate it
# replaces is revoked once the rotation has succeeded.
issue "admin" {
  mount             = "pki-prod"
  role              = "admin-client"
  common_name       = "vault-admin-prod"
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = local.admin_crt
  revoke_superseded = true
}

write "admin_key" {
  path    = local.admin_key
  content = issue.admin.private_key
  mode    = "0600"
}

# rotplan logs in to Vault with admin.crt and admin.key. Writing the key first
# means a crash between the two writes leaves a state resume can finish
# without Vault: the certificate is in the journal, the key on disk.
write "admin_crt" {
  depends_on = [write.admin_key]
  path       = local.admin_crt
  content    = issue.admin.certificate
  mode       = "0644"
}

write "admin_issuing_ca" {
  path    = "${var.admin_dir}/issuing_ca.pem"
  content = issue.admin.issuing_ca
  mode    = "0644"
}

# The new admin identity must work before anything touches the server.
verify "admin_status" {
  depends_on = [write.admin_key, write.admin_crt, write.admin_issuing_ca]
  vault_status {
    address     = var.vault_addr
    server_name = var.server_name
    ca_file     = var.ca_cert
    client_cert = local.admin_crt
    client_key  = local.admin_key
  }
}

# 2) Vault server TLS certificate (the listener).
#
# The TLS directory is in vaultprod's home, which vaultprod owns: vaultprod
# could rename tls-prod and put another directory in its place. rotplan
# refuses to work in a directory that anyone but root (or the user it runs
# as) can replace, unless the step names that user in trust_owner. Vault
# runs as vaultprod and these files are its own, so the server steps trust
# it (server_dir_owner); rotplan still never follows a symbolic link there,
# and works in the directory it found at the start of the run.

issue "server" {
  depends_on        = [verify.admin_status]
  mount             = "pki-prod"
  role              = "vault-server"
  common_name       = var.server_name
  ip_sans           = ["127.0.0.1"]
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = "${var.server_dir}/server.crt"
  revoke_superseded = true
}

write "server_key" {
  path        = "${var.server_dir}/server.key"
  content     = issue.server.private_key
  mode        = "0600"
  trust_owner = var.server_dir_owner
}

write "server_crt" {
  path        = "${var.server_dir}/server.crt"
  content     = issue.server.certificate
  mode        = "0644"
  trust_owner = var.server_dir_owner
}

# The listener serves this file: leaf and intermediate, or clients that only
# trust the root cannot build the chain.
write "server_fullchain" {
  path        = "${var.server_dir}/fullchain.crt"
  content     = issue.server.fullchain
  mode        = "0644"
  trust_owner = var.server_dir_owner
}

# Intermediate and root: the trust chain clients need to validate.
write "server_ca_chain" {
  path        = "${var.server_dir}/ca_chain.pem"
  content     = join("", issue.server.ca_chain)
  mode        = "0644"
  trust_owner = var.server_dir_owner
}

# Vault runs as vaultprod: it must own its key, or the reload keeps the old
# certificate.
chown "server_tls" {
  paths = [
    write.server_key.path,
    write.server_crt.path,
    write.server_fullchain.path,
    write.server_ca_chain.path,
  ]
  owner       = var.owner
  group       = var.group
  trust_owner = var.server_dir_owner
}

# Rotating files does nothing until the process reloads.
reload "vault" {
  depends_on = [chown.server_tls]
  pid_file   = var.vault_pid_file
  signal     = "SIGHUP"
  # Signal Vault alone: a stale pid file may name another process by now.
  # Its user is checked by default: it must own the pid file, or root must.
  expect {
    name = "vault"
  }
}

# Check A: client auth, server TLS, CA trust and routing, with the admin
# certificate (the new one, when it was due: the server steps come after it).
# The checks name the admin files by path, not by the writes' outputs, so
# that they still run when only the server certificate was due.
verify "check_a" {
  depends_on = [reload.vault]
  timeout    = "30s"
  interval   = "250ms"
  vault_status {
    address     = var.vault_addr
    server_name = var.server_name
    ca_file     = var.ca_cert
    client_cert = local.admin_crt
    client_key  = local.admin_key
  }
}

# Check B: the TLS handshake with SNI set explicitly must present the new
# certificate, chained to the root.
verify "check_b" {
  depends_on = [reload.vault]
  timeout    = "30s"
  interval   = "250ms"
  tls {
    address       = var.vault_addr
    server_name   = var.server_name
    ca_file       = var.ca_cert
    client_cert   = local.admin_crt
    client_key    = local.admin_key
    expect_serial = issue.server.serial_number
  }
}
