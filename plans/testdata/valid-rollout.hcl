variable "web" {
  type = map(object({ address = string }))
}

host "web" {
  for_each    = var.web
  address     = each.value.address
  known_hosts = "/root/.ssh/known_hosts"
}

host "vault" {
  count       = 3
  address     = "10.0.2.${count.index}"
  known_hosts = "/root/.ssh/known_hosts"
}

rollout "web" {
  hosts        = host.web
  batch_size   = "50%"
  max_failures = 1
  rollback     = "failed_batch"
}

rollout "vault" {
  groups     = [[host.vault[1], host.vault[2]], [host.vault[0]]]
  batch_size = 1
}

write "key" {
  for_each = var.web
  on       = host.web[each.key]
  path     = "/etc/web.key"
  content  = "x"
}
