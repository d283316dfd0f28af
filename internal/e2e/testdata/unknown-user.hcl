# exit: 1
# want: 16:13: Cannot run write.cert
variable "dir" {
  type = string
}

write "ok" {
  path    = "${var.dir}/existing.txt"
  content = "replaced\n"
}

write "cert" {
  path    = "${var.dir}/cert.pem"
  content = "not a cert\n"
  mode    = "0644"
  owner   = "rotplan-no-such-user"
}
