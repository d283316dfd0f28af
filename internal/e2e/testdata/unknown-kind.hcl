# exit: 2
# want: 12:1: Unsupported block type
variable "dir" {
  type = string
}

write "greeting" {
  path    = "${var.dir}/existing.txt"
  content = "replaced\n"
}

rotate "greeting" {
  path = "${var.dir}/existing.txt"
}
