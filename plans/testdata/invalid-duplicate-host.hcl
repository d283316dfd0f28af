host "web" {
  address = "10.0.0.1"
}

host "web" {
  address = "10.0.0.2"
}
