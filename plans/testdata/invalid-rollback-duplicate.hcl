write "a" {
  path = "/tmp/a.crt"
  rollback {
    command = ["/bin/true"]
  }
  rollback {
    command = ["/bin/false"]
  }
}
