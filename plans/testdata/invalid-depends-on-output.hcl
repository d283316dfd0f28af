issue "a" {}

write "b" {
  depends_on = [issue.a.certificate]
}
