// Command bench is what `make bench` runs: it measures, against a real
// Vault on loopback, how fast rotplan rotates many leaf certificates
// compared with the ceiling (the same work straight through vault/api) and
// with what operators do today (a shell loop over the vault CLI), and how
// rotplan copes with a plan of 10,000 steps. It prints a results table.
//
// It is a benchmark, never a test: its numbers depend on the machine, so it
// reports ratios measured in the same run rather than passing or failing on
// a time.
package main
