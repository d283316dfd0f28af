// Package engine turns a decoded plan into a run: it evaluates variables
// and locals, builds the dependency graph of the steps from the references
// in their bodies and from depends_on, rejects cycles before anything runs,
// validates every step with the values known so far (outputs of steps not yet
// run are cty unknowns), and then applies the steps in dependency order.
//
// The engine never names a concrete step kind: it asks a steps.Registry for
// a kind's schema and outputs, and calls the steps.Step interface. Nor does
// it name a service the kinds use: it evaluates the plan's settings blocks
// with the schemas the kinds give (steps.Setting), has them set up the
// steps.Env the steps share, and passes that along unopened. The same goes
// for hosts: it expands and evaluates each `host` block's instances, and
// hands a step whose `on` names one that instance, unread (steps.Env.On);
// only kinds that say they can (steps.HostRunner) take `on`. A rollout's
// batches of hosts become ordinary edges between the steps for them, so
// the walker, journal, resume and rollback know nothing of rollouts. It owns the
// source locations: errors that step kinds and settings return are turned
// into diagnostics that point at the step or the block, or at the argument
// to blame.
package engine
