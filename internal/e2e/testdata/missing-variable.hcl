# exit: 2
# want: 8:1: No value for required variable
variable "dir" {
  type = string
}

# The plan needs this, and nobody gives it.
variable "file_name" {
  type = string
}

write "greeting" {
  path    = "${var.dir}/${var.file_name}"
  content = "hello\n"
}
