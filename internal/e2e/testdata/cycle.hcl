# exit: 2
# want: 7:1: Dependency cycle between steps: write.a, write.b
variable "dir" {
  type = string
}

write "a" {
  path    = "${var.dir}/a.txt"
  content = write.b.sha256
}

write "b" {
  path    = "${var.dir}/b.txt"
  content = write.a.sha256
}
