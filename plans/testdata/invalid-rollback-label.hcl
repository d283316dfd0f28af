write "a" {
  path = "/tmp/a.crt"
  rollback "notify" {
    command = ["/bin/true"]
  }
}
