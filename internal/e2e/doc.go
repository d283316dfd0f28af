// Package e2e holds rotplan's end-to-end tests: they build the rotplan
// binary, run it as an operator would, and check the outcome from outside,
// against a real Vault server brought up by internal/testvault. It has no
// code of its own besides tests.
package e2e
