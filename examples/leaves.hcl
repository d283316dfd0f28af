# Rotating many leaf certificates at once: the agents and app servers that
# come after the control plane. One issue, three writes and a check per
# app, all from one for_each; each app's steps wait for its own certificate
# only.
#
#   rotplan run -var apps=200 -var dir=/etc/tls/apps examples/leaves.hcl
#
# The Vault connection comes from the environment (VAULT_ADDR, VAULT_CACERT,
# VAULT_CLIENT_CERT/VAULT_CLIENT_KEY or VAULT_TOKEN), as for prod.hcl.

variable "apps" {
  type        = number
  default     = 3
  description = "How many apps: app0 ... app(N-1), up to 1024."
}

variable "names" {
  type        = list(string)
  default     = null
  description = "The apps by name, instead of apps (as many as you like, from a -var-file)."
}

variable "dir" {
  type        = string
  description = "Where each app's key, certificate and chain go."
}

variable "domain" {
  type    = string
  default = "apps.privsec.ch"
}

variable "ttl" {
  type    = string
  default = "72h"
}

locals {
  apps = toset(var.names != null ? var.names : [for i in range(var.apps) : "app${i}"])
}

issue "leaf" {
  for_each    = local.apps
  mount       = "pki-prod"
  role        = "leaf"
  common_name = "${each.key}.${var.domain}"
  ttl         = var.ttl
}

write "key" {
  for_each = local.apps
  path     = "${var.dir}/${each.key}.key"
  content  = issue.leaf[each.key].private_key
  mode     = "0600"
}

write "crt" {
  for_each = local.apps
  path     = "${var.dir}/${each.key}.crt"
  content  = issue.leaf[each.key].certificate
  mode     = "0644"
}

write "chain" {
  for_each = local.apps
  path     = "${var.dir}/${each.key}.chain.pem"
  content  = join("", issue.leaf[each.key].ca_chain)
  mode     = "0644"
}

# The written key must belong to the written certificate.
verify "pair" {
  for_each = local.apps
  key_pair {
    cert_file = write.crt[each.key].path
    key_file  = write.key[each.key].path
  }
}
