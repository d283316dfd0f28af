variable "web" {
  type = map(object({ address = string }))
}

host "web" {
  for_each    = var.web
  address     = each.value.address
  known_hosts = "/root/.ssh/known_hosts"
}

host "db" {
  address     = "10.0.0.9"
  known_hosts = "/root/.ssh/known_hosts"
}

host "cache" {
  count       = 2
  address     = "10.0.1.${count.index}"
  known_hosts = "/root/.ssh/known_hosts"
}

write "key" {
  for_each = var.web
  on       = host.web[each.key]
  path     = "/etc/web.key"
  content  = "x"
}

write "one" {
  on      = host.web["a"]
  path    = "/etc/one"
  content = "x"
}

write "db" {
  on      = host.db
  path    = "/etc/db"
  content = "x"
}

write "cache" {
  count   = 2
  on      = host.cache[count.index]
  path    = "/etc/cache"
  content = "x"
}
