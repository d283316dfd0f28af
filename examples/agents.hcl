# Rotating the apps' Vault Agents (step 3 of the "rotate everything" run):
# per app, in parallel, a new mTLS login certificate from the app's own
# role, written as the app's user; cert auth enabled, the policies and the
# cert-auth mapping in the declared state; the agent restarted, then proven
# from outside to have logged in with the new certificate.
#
#   rotplan run examples/agents.hcl
#
# The Vault connection comes from the environment (VAULT_ADDR,
# VAULT_CACERT, VAULT_CLIENT_CERT/VAULT_CLIENT_KEY or VAULT_TOKEN), as for
# prod.hcl: the admin identity, which may write the agents' mappings and
# policies and look up an agent's token.
#
# The variables below are a contract: tests and the demo set them.

variable "apps" {
  type        = list(string)
  default     = ["ncprd1", "resume2me"]
  description = "The app workloads, each a Unix user with its own Vault Agent."
}

variable "home_dir" {
  type        = string
  default     = "/home"
  description = "Where the apps' homes are: HOME_DIR/<app>/vault/{mtls,ca,agent}."
}

variable "vault_addr" {
  type        = string
  default     = env("VAULT_ADDR", "https://127.0.0.1:22400")
  description = "The production Vault listener, which the agents and the checks log in at."
}

variable "server_name" {
  type        = string
  default     = env("VAULT_TLS_SERVER_NAME", "vault.prod.privsec.ch")
  description = "The name the listener's certificate carries (SNI)."
}

variable "agent_restart" {
  type        = map(list(string))
  default     = null
  description = "The command that restarts each app's agent, by app; default: its systemd user unit, vault-agent-<app>.service."
}

variable "allowed_cn" {
  type        = string
  default     = "agent-%s.prod.privsec.ch"
  description = "The common name each app's mapping admits, with %s for the app: the name its certificates carry."
}

variable "renew_before" {
  type        = string
  default     = "240h"
  description = "Renew an agent's certificate only when it has this long left or less."
}

vault {
  address         = var.vault_addr
  tls_server_name = var.server_name
}

locals {
  apps = toset(var.apps)
  home = { for a in var.apps : a => "${var.home_dir}/${a}" }
  restart = var.agent_restart != null ? var.agent_restart : {
    for a in var.apps : a => ["systemctl", "--user", "--machine", "${a}@", "restart", "vault-agent-${a}.service"]
  }
  # Each app's cert-auth mapping but the CA it trusts: the agent's name
  # alone, both policies (named as vault_policy names them) and the TTLs.
  mapping = {
    for a in var.apps : a => {
      display_name         = "agent-${a}"
      allowed_common_names = [format(var.allowed_cn, a)]
      token_policies       = ["pki-issue-${a}", "marker-cert-auth"]
      token_ttl            = "1h"
      token_max_ttl        = "24h"
    }
  }
}

# Vault's side: cert auth, the policies the mappings name, the mappings.

vault_auth "cert" {
  path = "cert"
  type = "cert"
}

vault_policy "marker" {
  name   = "marker-cert-auth"
  policy = <<-EOT
    # marker-cert-auth: marks tokens that Vault Agents obtained through cert auth
    # with a mapping in the declared state. It grants only what every agent token
    # needs anyway.
    path "auth/token/lookup-self" {
      capabilities = ["read"]
    }
  EOT
}

vault_policy "pki_issue" {
  for_each = local.apps
  name     = "pki-issue-${each.key}"
  policy   = <<-EOT
    # pki-issue-${each.key}: issue the agent login certificate of app ${each.key}.
    path "pki-prod/issue/agent-mtls-${each.key}" {
      capabilities = ["create", "update"]
    }
  EOT
}

# The agent's login certificate: about 30 days, as in the seed.
issue "agent" {
  for_each          = local.apps
  mount             = "pki-prod"
  role              = "agent-mtls-${each.key}"
  common_name       = "agent-${each.key}.prod.privsec.ch"
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = "${local.home[each.key]}/vault/mtls/agent.crt"
  revoke_superseded = true
}

# The mapping trusts the CA that signs the agents' certificates and admits
# the agent's name alone; its token carries both policies.
vault_write "mapping" {
  for_each   = local.apps
  depends_on = [vault_auth.cert, vault_policy.pki_issue[each.key], vault_policy.marker]
  path       = "auth/cert/certs/agent-${each.key}"
  data = merge(local.mapping[each.key], {
    certificate = issue.agent[each.key].issuing_ca
  })
}

# The mapping's other fields, also on a day no certificate is due (when the
# step above, which reads the new certificate's CA, is skipped): a drifted
# mapping is how an agent looks healthy and cannot log in or renew. The
# agents are not restarted for it: their next login gets the policies.
vault_write "mapping_fields" {
  for_each   = local.apps
  depends_on = [vault_auth.cert, vault_policy.pki_issue[each.key], vault_policy.marker, vault_write.mapping[each.key]]
  path       = "auth/cert/certs/agent-${each.key}"
  data       = local.mapping[each.key]
}

# The app's files, as the app's user: it owns its home, so the steps trust
# it with the path (trust_owner).
write "agent_key" {
  for_each    = local.apps
  path        = "${local.home[each.key]}/vault/mtls/agent.key"
  content     = issue.agent[each.key].private_key
  mode        = "0600"
  owner       = each.key
  group       = each.key
  trust_owner = each.key
}

write "agent_crt" {
  for_each    = local.apps
  path        = "${local.home[each.key]}/vault/mtls/agent.crt"
  content     = issue.agent[each.key].certificate
  mode        = "0644"
  owner       = each.key
  group       = each.key
  trust_owner = each.key
}

# The root the agent trusts for the listener: the last of the chain.
write "agent_ca" {
  for_each    = local.apps
  path        = "${local.home[each.key]}/vault/ca/ca.pem"
  content     = issue.agent[each.key].ca_chain[length(issue.agent[each.key].ca_chain) - 1]
  mode        = "0644"
  owner       = each.key
  group       = each.key
  trust_owner = each.key
}

# The agent's cert auto-auth reads its files only when it starts: restart it
# once its own files and mapping are in place (an app whose certificate is
# not due is skipped, and its agent left alone).
reload "agent" {
  for_each = local.apps
  depends_on = [
    write.agent_key[each.key], write.agent_crt[each.key], write.agent_ca[each.key],
    vault_write.mapping[each.key],
  ]
  command = local.restart[each.key]
}

# The seed's manual `vault login -method=cert` with the app's own files.
verify "login" {
  for_each = local.apps
  since    = reload.agent[each.key].at
  timeout  = "30s"
  vault_login {
    address         = var.vault_addr
    server_name     = var.server_name
    ca_file         = write.agent_ca[each.key].path
    client_cert     = write.agent_crt[each.key].path
    client_key      = write.agent_key[each.key].path
    name            = "agent-${each.key}"
    expect_policies = [vault_policy.pki_issue[each.key].name, vault_policy.marker.name]
  }
}

# The restarted agent logged in with the new certificate: its token, looked
# up by the admin identity, names the new serial.
verify "agent" {
  for_each = local.apps
  since    = reload.agent[each.key].at
  timeout  = "60s"
  interval = "250ms" # an agent logs in within a few hundred milliseconds
  vault_agent {
    sink          = "${local.home[each.key]}/vault/agent/token"
    expect_serial = issue.agent[each.key].serial_number
    cert_name     = "agent-${each.key}"
  }
}
