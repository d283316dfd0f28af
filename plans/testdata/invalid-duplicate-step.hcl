write "a" {
  path    = "a"
  content = ""
}

write "a" {
  path    = "b"
  content = ""
}
