host "9web" {
  address = "10.0.0.1"
}
