host "web" {
  count    = 2
  for_each = toset(["a"])
  address  = "10.0.0.1"
}
