host "web" {
  for_each    = toset(["a", "b"])
  address     = each.key
  known_hosts = "/root/.ssh/known_hosts"
}

rollout "web" {
  hosts        = host.web
  rollback     = "failed_host"
}
