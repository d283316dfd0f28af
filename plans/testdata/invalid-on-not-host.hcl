host "web" {
  address = "10.0.0.1"
}

write "key" {
  on      = var.web
  path    = "/etc/web.key"
  content = "x"
}
