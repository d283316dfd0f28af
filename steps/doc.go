// Package steps holds rotplan's step kinds: one file per kind (issue, write,
// chown, reload, verify), each with its body schema, its output type and its
// Apply, and the registry that names them.
//
// A step kind never sees HCL source: the engine evaluates a step's body with
// the kind's Spec and hands the result over as a Config. A kind returns plain
// errors (an *AttrError when one argument is to blame) and the engine attaches
// the source location. This package must never import the engine, and the
// engine never names a concrete kind: adding a kind is one file here, one line
// in Default, and one `var _ Step = (*Kind)(nil)` assertion. What a kind can
// do beyond Apply (preview, resume, roll back, decide whether it is due) it
// says by implementing the optional interfaces in step.go and plan.go.
//
// What steps share beyond their own blocks (a Vault session, connections to
// hosts) is set up here too: a kind declares the plan-level settings blocks
// it uses (SettingsUser, settings.go), each Setting opens into the Env that
// every step receives, and the engine passes that Env along without looking
// in. A step with `on` gets the evaluated host block it names in its Env
// (Env.On, host.go); a kind that can act there (HostRunner: write, chown,
// reload, sign, verify's command check; KIND_remote.go beside each, the
// check in verify_command.go) reaches it over SSH through internal/remote,
// one connection per host per run, and looks owner and group names up
// there. verify's checks over the network (tls, vault_status, vault_login,
// vault_cluster) take `on` only to belong to the host for its rollout: they
// look from where rotplan runs.
package steps
