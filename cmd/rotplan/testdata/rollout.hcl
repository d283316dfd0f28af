variable "web" {
  default = { a = "10.0.0.1", b = "10.0.0.2", c = "10.0.0.3" }
}

host "web" {
  for_each      = var.web
  address       = each.value
  known_hosts   = "/root/.ssh/known_hosts"
  identity_file = "/root/.ssh/id_ed25519"
}

host "vault" {
  count         = 3
  address       = "10.0.1.${count.index}"
  known_hosts   = "/root/.ssh/known_hosts"
  identity_file = "/root/.ssh/id_ed25519"
}

rollout "web" {
  hosts        = host.web
  batch_size   = 2
  max_failures = 1
  rollback     = "failed_batch"
}

rollout "vault" {
  groups     = [[host.vault[1], host.vault[2]], [host.vault[0]]]
  batch_size = "50%"
}

write "web" {
  for_each = var.web
  on       = host.web[each.key]
  path     = "/etc/nginx/tls/web.key"
  content  = "x"
  mode     = "0600"
}

write "vault" {
  count   = 3
  on      = host.vault[count.index]
  path    = "/etc/vault/tls/vault.key"
  content = "x"
  mode    = "0600"
}
