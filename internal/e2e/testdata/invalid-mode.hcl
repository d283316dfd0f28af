# exit: 2
# want: 16:13: Invalid step write.key
variable "dir" {
  type = string
}

write "ok" {
  path    = "${var.dir}/existing.txt"
  content = "replaced\n"
  mode    = "0644"
}

write "key" {
  path    = "${var.dir}/key.pem"
  content = "not a key\n"
  mode    = "0999"
}
