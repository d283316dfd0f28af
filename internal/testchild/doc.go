// Package testchild runs part of a test in a child process of the test
// binary, under an address-space limit: for inputs that, before rotplan
// bounded them, overflowed the Go stack or exhausted memory. Either is
// fatal to a Go process (recover cannot catch it), so a test that ran the
// input in its own process would die with the whole test binary instead of
// failing.
//
// Only tests import it.
package testchild
