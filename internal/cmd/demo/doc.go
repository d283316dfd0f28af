// Command demo shows rotplan rotating the TLS certificate of a real Vault
// listener. It starts the test harness Vault (internal/testvault) in a fresh
// directory, runs `rotplan run` with the example plan against it and checks
// that the served certificate changed.
//
// Usage:
//
//	go run ./internal/cmd/demo -vault BIN -rotplan BIN -dir .demo -plan examples/prod.hcl
//
// The directory given by -dir is removed and recreated. With -skip-rotplan
// only the Vault part runs (useful to check the harness).
package main
