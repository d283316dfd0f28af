// Command rotplan runs rotation plans: `rotplan run PLAN.hcl` rotates the
// certificates and secrets the plan declares, in dependency order, and
// reports each step as it starts and ends.
//
// This package holds only the command line: flags, subcommands, rendering of
// diagnostics and progress, and exit codes. Everything a test of the other
// packages would need lives in plans, engine and steps.
package main
