# exit: 2
# want: 9:13: Reference to undeclared step
variable "dir" {
  type = string
}

write "cert" {
  path    = "${var.dir}/existing.txt"
  content = issue.nope.certificate
}
