issue "a" {
  mount       = "pki"
  role        = "r"
  common_name = "x"

  rollback {
    command = ["/usr/local/bin/notify", "issue.a rolled back"]
    timeout = "30s"
  }
}

write "a" {
  path    = "/tmp/a.crt"
  content = issue.a.certificate

  rollback {
    command = ["/usr/local/bin/notify", "${issue.a.serial_number} rolled back"]
  }
}
