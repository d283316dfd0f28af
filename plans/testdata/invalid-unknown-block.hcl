rotate "x" {
}
