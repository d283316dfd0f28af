// Package plans reads rotplan plan files: HCL2 with `variable` and `locals`
// blocks, settings blocks the steps share (`vault`, and the labelled
// `host "web" { ... }` with for_each or count), and one block type per step
// kind (`issue "admin" { ... }`), whose meta-arguments include `on`, the
// host a step is for, and `rollout "web" { ... }` blocks, which put hosts
// in batches (kept as host references: the engine resolves them).
//
// It decodes, it does not evaluate: step bodies stay hcl.Body until the
// engine evaluates them with the step kind's schema, and locals stay
// expressions. It also owns the inputs to evaluation that come from the user
// (variable values from -var flags and -var-file files) and the function
// table. It never contacts Vault, writes to disk or runs anything; the only
// files it reads are plan and variable files (and, through the file
// function, files a plan names, when the engine calls it).
//
// Every mistake a user can make is returned as an hcl.Diagnostic with the
// source range it comes from. That includes input too large to handle:
// files, nesting and computed values are bounded (limits.go, meter.go), so
// that no plan can overflow rotplan's stack or exhaust its memory.
package plans
