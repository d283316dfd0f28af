write "a" {
  path = "a
}
