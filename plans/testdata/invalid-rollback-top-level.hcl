rollback {
  command = ["/bin/true"]
}
