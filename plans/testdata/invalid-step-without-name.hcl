issue {
}
