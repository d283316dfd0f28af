# "Rotate everything" on one production host: the seed's whole run, in one
# plan. Seven steps, ordered by what really depends on what, not by one
# long chain:
#
#   1. the admin mTLS client certificate, so `vault status` stays possible;
#   2. the Vault listener certificate (reloaded with SIGHUP, then checked);
#   3. the apps' agent login certificates and their cert-auth mappings, the
#      apps in parallel, each agent restarted and proven logged in anew;
#   4. the apps' leaf certificates behind nginx (role nginx-<app>), each
#      app after its own agent, proven on disk and served by nginx;
#   5. the proxy's trust material: its agent's certificate and mapping,
#      the Vault edge's certificate, and the CA chain nginx verifies Vault
#      against, once the internal rotations are done;
#   6. the restarts: nginx, then Vault (which comes up sealed and is
#      unsealed by its unit), after `nginx -t` passed;
#   7. the healthcheck, a hard gate: `vault status` over mTLS and an SNI
#      handshake, directly and through the proxy, against the root alone.
#      If it does not pass within its timeout, everything is rolled back.
#
#   rotplan plan examples/everything.hcl
#   rotplan run  examples/everything.hcl
#
# The Vault connection comes from the environment, as for prod.hcl
# (VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_CERT/VAULT_CLIENT_KEY). The
# variables below are a contract: tests and the demo set them; their
# defaults are the seed's host (systemd user units for the restarts).

# --- Vault (steps 1, 2 and the Vault restart), as in prod.hcl -------------

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
  description = "The production Vault listener."
}

variable "server_name" {
  type        = string
  default     = env("VAULT_TLS_SERVER_NAME", "vault.prod.privsec.ch")
  description = "The name clients validate (SNI): Vault's and the Vault edge's."
}

variable "vault_pid_file" {
  type        = string
  default     = "/run/vault-prod/vault.pid"
  description = "Pid file of the Vault server, which reloads its listener certificate on SIGHUP."
}

variable "server_dir_owner" {
  type        = string
  default     = "vaultprod"
  description = "Who owns server_dir and its parent: the server steps trust that user with the path."
}

variable "owner" {
  type        = string
  default     = "vaultprod"
  description = "The user Vault runs as, who must own its TLS files."
}

variable "group" {
  type    = string
  default = "vaultprod"
}

variable "vault_restart" {
  type        = list(string)
  default     = ["systemctl", "--user", "--machine", "vaultprod@", "restart", "container-vaultprod.service"]
  description = "Restarts the Vault server (step 6). The new process must be unsealed by its unit, as the seed's is."
}

variable "renew_before" {
  type        = string
  default     = "240h"
  description = "Renew a certificate only when it has this long left or less, so the plan is safe to run from a timer."
}

variable "ca_cert" {
  type        = string
  default     = env("VAULT_CACERT")
  description = "The root CA clients trust; every check verifies against it alone."
}

# --- The apps (steps 3 and 4) ---------------------------------------------

variable "apps" {
  type        = list(string)
  default     = ["ncprd1", "resume2me"]
  description = "The app workloads, each a Unix user with its own Vault Agent and a leaf behind the proxy."
}

variable "home_dir" {
  type        = string
  default     = "/home"
  description = "Where the homes are: HOME_DIR/<app>/vault/{mtls,ca,agent}, HOME_DIR/proxyprod."
}

variable "agent_restart" {
  type        = map(list(string))
  default     = null
  description = "The command that restarts each app's agent, by app; default: its systemd user unit, vault-agent-<app>.service."
}

variable "leaf_name" {
  type        = string
  default     = "%s.prod.privsec.ch"
  description = "The name each app's leaf carries, with %s for the app; role nginx-<app> allows this name alone."
}

# --- The edge proxy (steps 4 to 6) ----------------------------------------

variable "proxy_addr" {
  type        = string
  default     = "127.0.0.1:22300"
  description = "Where nginx listens: every app's name and the Vault edge, by SNI."
}

variable "proxy_reload" {
  type        = list(string)
  default     = ["systemctl", "--user", "--machine", "proxyprod@", "reload", "container-proxyprod.service"]
  description = "Reloads nginx (step 4): new connections get the new leaves."
}

variable "proxy_restart" {
  type        = list(string)
  default     = ["systemctl", "--user", "--machine", "proxyprod@", "restart", "container-proxyprod.service"]
  description = "Restarts nginx (step 6)."
}

variable "nginx_test" {
  type        = list(string)
  default     = ["nginx", "-t", "-q"]
  description = "nginx's configuration test, run before every reload or restart of the proxy."
}

variable "proxy_agent_restart" {
  type        = list(string)
  default     = ["systemctl", "--user", "--machine", "proxyprod@", "restart", "vault-agent-proxyprod-ca.service"]
  description = "Restarts the proxy's own Vault Agent."
}

variable "proxy_ca_chain_source" {
  type        = string
  default     = null
  description = "A file holding the chain nginx verifies Vault against; default: the chain of the listener certificate step 2 issues."
}

variable "health_timeout" {
  type        = string
  default     = "90s"
  description = "How long the final healthcheck may take after the restarts before the whole run is rolled back."
}

vault {
  address         = var.vault_addr
  tls_server_name = var.server_name
}

locals {
  admin_key = "${var.admin_dir}/admin.key"
  admin_crt = "${var.admin_dir}/admin.crt"

  apps = toset(var.apps)
  home = { for a in var.apps : a => "${var.home_dir}/${a}" }
  agent_restart = var.agent_restart != null ? var.agent_restart : {
    for a in var.apps : a => ["systemctl", "--user", "--machine", "${a}@", "restart", "vault-agent-${a}.service"]
  }
  agent_mapping = {
    for a in var.apps : a => {
      display_name         = "agent-${a}"
      allowed_common_names = ["agent-${a}.prod.privsec.ch"]
      token_policies       = ["pki-issue-${a}", "marker-cert-auth"]
      token_ttl            = "1h"
      token_max_ttl        = "24h"
    }
  }

  proxy      = "${var.home_dir}/proxyprod"
  proxy_tls  = "${local.proxy}/nginx/tls"
  proxy_mtls = "${local.proxy}/vault/mtls"
  proxy_mapping = {
    display_name         = "agent-proxyprod"
    allowed_common_names = ["agent-proxyprod.prod.privsec.ch"]
    token_policies       = ["marker-cert-auth", "pki-issue-proxyprod", "pki-ca-read-proxyprod"]
    token_ttl            = "1h"
    token_max_ttl        = "24h"
  }
  # The Vault edge, by name: nginx picks its server by the Host header.
  edge_addr = "https://${var.server_name}:${split(":", var.proxy_addr)[1]}"
}

# ==== 1) Admin client certificate ==========================================

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

# ==== 2) Vault listener certificate ========================================

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

write "server_fullchain" {
  path        = "${var.server_dir}/fullchain.crt"
  content     = issue.server.fullchain
  mode        = "0644"
  trust_owner = var.server_dir_owner
}

write "server_ca_chain" {
  path        = "${var.server_dir}/ca_chain.pem"
  content     = join("", issue.server.ca_chain)
  mode        = "0644"
  trust_owner = var.server_dir_owner
}

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

reload "vault" {
  depends_on = [chown.server_tls]
  pid_file   = var.vault_pid_file
  signal     = "SIGHUP"
  expect {
    name = "vault"
  }
}

verify "server_status" {
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

verify "server_served" {
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

# ==== 3) Agent login certificates and their cert-auth mappings =============
# Per app, in parallel; every agent restart waits for the listener's checks
# (an agent restarted before would log in twice). Everything that talks to
# Vault waits for the new admin identity to pass its check: rotplan logs in
# with admin.key and admin.crt, and a run killed between their writes must
# leave nothing in flight that a resume would need Vault to judge.

vault_auth "cert" {
  depends_on = [verify.admin_status]
  path       = "cert"
  type       = "cert"
}

vault_policy "marker" {
  depends_on = [verify.admin_status]
  name       = "marker-cert-auth"
  policy     = <<-EOT
    # marker-cert-auth: marks tokens that Vault Agents obtained through cert auth
    # with a mapping in the declared state. It grants only what every agent token
    # needs anyway.
    path "auth/token/lookup-self" {
      capabilities = ["read"]
    }
  EOT
}

vault_policy "pki_issue" {
  for_each   = local.apps
  depends_on = [verify.admin_status]
  name       = "pki-issue-${each.key}"
  policy     = <<-EOT
    # pki-issue-${each.key}: issue the agent login certificate of app ${each.key}.
    path "pki-prod/issue/agent-mtls-${each.key}" {
      capabilities = ["create", "update"]
    }
  EOT
}

issue "agent" {
  for_each          = local.apps
  depends_on        = [verify.admin_status]
  mount             = "pki-prod"
  role              = "agent-mtls-${each.key}"
  common_name       = "agent-${each.key}.prod.privsec.ch"
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = "${local.home[each.key]}/vault/mtls/agent.crt"
  revoke_superseded = true
}

vault_write "agent_mapping" {
  for_each   = local.apps
  depends_on = [vault_auth.cert, vault_policy.pki_issue[each.key], vault_policy.marker]
  path       = "auth/cert/certs/agent-${each.key}"
  data = merge(local.agent_mapping[each.key], {
    certificate = issue.agent[each.key].issuing_ca
  })
}

vault_write "agent_mapping_fields" {
  for_each   = local.apps
  depends_on = [vault_auth.cert, vault_policy.pki_issue[each.key], vault_policy.marker, vault_write.agent_mapping[each.key]]
  path       = "auth/cert/certs/agent-${each.key}"
  data       = local.agent_mapping[each.key]
}

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

write "agent_ca" {
  for_each    = local.apps
  path        = "${local.home[each.key]}/vault/ca/ca.pem"
  content     = issue.agent[each.key].ca_chain[length(issue.agent[each.key].ca_chain) - 1]
  mode        = "0644"
  owner       = each.key
  group       = each.key
  trust_owner = each.key
}

reload "agent" {
  for_each = local.apps
  depends_on = [
    verify.server_status, verify.server_served,
    write.agent_key[each.key], write.agent_crt[each.key], write.agent_ca[each.key],
    vault_write.agent_mapping[each.key],
  ]
  command = local.agent_restart[each.key]
}

verify "agent_login" {
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

verify "agent_token" {
  for_each = local.apps
  since    = reload.agent[each.key].at
  timeout  = "60s"
  interval = "250ms"
  vault_agent {
    sink          = "${local.home[each.key]}/vault/agent/token"
    expect_serial = issue.agent[each.key].serial_number
    cert_name     = "agent-${each.key}"
  }
}

# ==== 4) App leaf certificates behind nginx ================================
# Each app after its own agent; role nginx-<app> issues for the app's name
# alone, so a wrong name is refused by `rotplan plan` and before a run
# changes anything.

issue "leaf" {
  for_each          = local.apps
  depends_on        = [verify.agent_login[each.key], verify.agent_token[each.key]]
  mount             = "pki-prod"
  role              = "nginx-${each.key}"
  common_name       = format(var.leaf_name, each.key)
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = "${local.proxy_tls}/${each.key}.fullchain.pem"
  revoke_superseded = true
}

write "leaf_key" {
  for_each    = local.apps
  path        = "${local.proxy_tls}/${each.key}.key"
  content     = issue.leaf[each.key].private_key
  mode        = "0600"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

# Leaf and intermediate: a client that trusts only the root must be able to
# build the chain (the seed's "incomplete chain").
write "leaf_fullchain" {
  for_each    = local.apps
  path        = "${local.proxy_tls}/${each.key}.fullchain.pem"
  content     = issue.leaf[each.key].fullchain
  mode        = "0644"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

# The file as a client will see it served, before nginx loads it: the new
# leaf, its chain to the root, the app's name, and the key that belongs to
# it (nginx -t does not check that the key matches).
verify "leaf_bundle" {
  for_each = local.apps
  bundle {
    file          = write.leaf_fullchain[each.key].path
    root_file     = var.ca_cert
    key_file      = write.leaf_key[each.key].path
    expect_serial = issue.leaf[each.key].serial_number
    expect_name   = format(var.leaf_name, each.key)
  }
}

verify "nginx_config_leaves" {
  depends_on = [verify.leaf_bundle]
  timeout    = "30s"
  command {
    argv = var.nginx_test
  }
}

reload "proxy_leaves" {
  depends_on = [verify.nginx_config_leaves]
  command    = var.proxy_reload
}

verify "leaf_served" {
  for_each = local.apps
  since    = reload.proxy_leaves.at
  timeout  = "30s"
  interval = "250ms"
  tls {
    address       = var.proxy_addr
    server_name   = format(var.leaf_name, each.key)
    ca_file       = var.ca_cert
    expect_serial = issue.leaf[each.key].serial_number
  }
}

# ==== 5) The proxy's trust material ========================================
# After the internal rotations (the listener, the agents, the leaves),
# before the restarts.

vault_policy "pki_issue_proxy" {
  depends_on = [verify.admin_status]
  name       = "pki-issue-proxyprod"
  policy     = <<-EOT
    # pki-issue-proxyprod: issue the proxy agent's login certificate.
    path "pki-prod/issue/agent-mtls-proxyprod" {
      capabilities = ["create", "update"]
    }
  EOT
}

vault_policy "pki_ca_read_proxy" {
  depends_on = [verify.admin_status]
  name       = "pki-ca-read-proxyprod"
  policy     = <<-EOT
    # pki-ca-read-proxyprod: read the CA chain the proxy verifies Vault against.
    path "pki-prod/cert/ca_chain" {
      capabilities = ["read"]
    }
    path "pki-prod/ca_chain" {
      capabilities = ["read"]
    }
  EOT
}

# The proxy agent's certificate is also the one nginx presents to Vault.
issue "proxy_agent" {
  depends_on        = [verify.server_status, verify.server_served, verify.leaf_served]
  mount             = "pki-prod"
  role              = "agent-mtls-proxyprod"
  common_name       = "agent-proxyprod.prod.privsec.ch"
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = "${local.proxy_mtls}/agent.crt"
  revoke_superseded = true
}

vault_write "proxy_mapping" {
  depends_on = [vault_auth.cert, vault_policy.marker, vault_policy.pki_issue_proxy, vault_policy.pki_ca_read_proxy]
  path       = "auth/cert/certs/agent-proxyprod"
  data = merge(local.proxy_mapping, {
    certificate = issue.proxy_agent.issuing_ca
  })
}

vault_write "proxy_mapping_fields" {
  depends_on = [vault_auth.cert, vault_policy.marker, vault_policy.pki_issue_proxy, vault_policy.pki_ca_read_proxy, vault_write.proxy_mapping]
  path       = "auth/cert/certs/agent-proxyprod"
  data       = local.proxy_mapping
}

write "proxy_agent_key" {
  path        = "${local.proxy_mtls}/agent.key"
  content     = issue.proxy_agent.private_key
  mode        = "0600"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

write "proxy_agent_crt" {
  path        = "${local.proxy_mtls}/agent.crt"
  content     = issue.proxy_agent.certificate
  mode        = "0644"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

# The root, mirrored for the proxy's agent.
write "proxy_root" {
  path        = "${local.proxy}/vault/ca/ca.pem"
  content     = issue.proxy_agent.ca_chain[length(issue.proxy_agent.ca_chain) - 1]
  mode        = "0644"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

reload "proxy_agent" {
  depends_on = [write.proxy_agent_key, write.proxy_agent_crt, write.proxy_root, vault_write.proxy_mapping]
  command    = var.proxy_agent_restart
}

verify "proxy_agent_token" {
  since    = reload.proxy_agent.at
  timeout  = "60s"
  interval = "250ms"
  vault_agent {
    sink          = "${local.proxy}/vault/agent/token"
    expect_serial = issue.proxy_agent.serial_number
    cert_name     = "agent-proxyprod"
  }
}

# The Vault edge's own certificate: what clients of the edge are served.
issue "edge" {
  depends_on        = [verify.server_status, verify.server_served, verify.leaf_served]
  mount             = "pki-prod"
  role              = "vault-server"
  common_name       = var.server_name
  ttl               = "720h"
  renew_before      = var.renew_before
  current           = "${local.proxy_tls}/vault.fullchain.pem"
  revoke_superseded = true
}

write "edge_key" {
  path        = "${local.proxy_tls}/vault.key"
  content     = issue.edge.private_key
  mode        = "0600"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

write "edge_fullchain" {
  path        = "${local.proxy_tls}/vault.fullchain.pem"
  content     = issue.edge.fullchain
  mode        = "0644"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

verify "edge_bundle" {
  bundle {
    file          = write.edge_fullchain.path
    root_file     = var.ca_cert
    key_file      = write.edge_key.path
    expect_serial = issue.edge.serial_number
    expect_name   = var.server_name
  }
}

# The chain nginx verifies Vault's listener against: the one that signed
# the listener's certificate now. A stale or wrong chain breaks the edge
# only once nginx has restarted: the final healthcheck catches it.
write "proxy_ca_chain" {
  depends_on  = [verify.server_status, verify.server_served, verify.leaf_served]
  path        = "${local.proxy}/nginx/ca/current-ca-chain.pem"
  content     = var.proxy_ca_chain_source == null ? join("", issue.server.ca_chain) : file(var.proxy_ca_chain_source)
  mode        = "0644"
  owner       = "proxyprod"
  group       = "proxyprod"
  trust_owner = "proxyprod"
}

# ==== 6) Restarts: the proxy, then Vault ===================================

verify "nginx_config" {
  depends_on = [
    write.proxy_agent_key, write.proxy_agent_crt, write.proxy_ca_chain,
    verify.edge_bundle, verify.proxy_agent_token,
  ]
  timeout = "30s"
  command {
    argv = var.nginx_test
  }
}

reload "proxy_restart" {
  depends_on = [verify.nginx_config, verify.agent_login, verify.agent_token]
  command    = var.proxy_restart
}

# The proxy must be back before Vault goes down: each app's name answers
# again (running is not ready).
verify "proxy_ready" {
  for_each = local.apps
  since    = reload.proxy_restart.at
  timeout  = var.health_timeout
  interval = "250ms"
  tls {
    address     = var.proxy_addr
    server_name = format(var.leaf_name, each.key)
    ca_file     = var.ca_cert
  }
}

reload "vault_restart" {
  depends_on = [verify.proxy_ready, verify.server_status, verify.server_served]
  command    = var.vault_restart
}

# ==== 7) The healthcheck: a hard gate ======================================
# Running is not ready: right after a restart a connection may be refused
# or reset, or Vault still sealed. Each check retries until its timeout and
# reports how long after the restart it first passed.

verify "health_status" {
  since    = reload.vault_restart.at
  timeout  = var.health_timeout
  interval = "250ms"
  vault_status {
    address     = var.vault_addr
    server_name = var.server_name
    ca_file     = var.ca_cert
    client_cert = local.admin_crt
    client_key  = local.admin_key
  }
}

verify "health_sni" {
  since    = reload.vault_restart.at
  timeout  = var.health_timeout
  interval = "250ms"
  tls {
    address     = var.vault_addr
    server_name = var.server_name
    ca_file     = var.ca_cert
    client_cert = local.admin_crt
    client_key  = local.admin_key
  }
}

verify "health_edge_status" {
  since    = reload.vault_restart.at
  timeout  = var.health_timeout
  interval = "250ms"
  vault_status {
    address     = local.edge_addr
    connect_to  = var.proxy_addr
    server_name = var.server_name
    ca_file     = var.ca_cert
    client_cert = local.admin_crt
    client_key  = local.admin_key
  }
}

verify "health_edge_sni" {
  since    = reload.vault_restart.at
  timeout  = var.health_timeout
  interval = "250ms"
  tls {
    address     = var.proxy_addr
    server_name = var.server_name
    ca_file     = var.ca_cert
    client_cert = local.admin_crt
    client_key  = local.admin_key
  }
}
