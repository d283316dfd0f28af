//go:build tools

// Package vaultbuild records the Vault server module as a build dependency.
// The Makefile builds the binary with `go build github.com/hashicorp/vault`.
package vaultbuild

import _ "github.com/hashicorp/vault"
