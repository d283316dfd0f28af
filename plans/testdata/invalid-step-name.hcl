write "9lives" {
}
