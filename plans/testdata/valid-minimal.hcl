write "hello" {
  path    = "hello.txt"
  content = "hello\n"
}
