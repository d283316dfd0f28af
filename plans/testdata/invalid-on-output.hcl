host "web" {
  address = "10.0.0.1"
}

write "key" {
  on      = host.web.address
  path    = "/etc/web.key"
  content = "x"
}
