package steps

import (
	"fmt"

	"github.com/hashicorp/hcl/v2/hcldec"
)

// Setting is a type of plan-level settings block that kinds share, written
// once outside any step (`vault { ... }`: how to reach Vault). plans reads
// the block; the engine evaluates it with Spec (it may use variables and
// locals, not steps), has Check look at it when the plan is compiled and
// Open set it up when a run or a preview starts, and turns what either
// returns into a diagnostic headed by Summary that points into the block
// (at the argument an *AttrError names). What Open sets up reaches the
// kinds through their Env, which the engine passes along unopened, so a
// new service or host is set up here, never in the engine.
type Setting interface {
	// Spec is the schema of the block's body.
	Spec() hcldec.ObjectSpec

	// Summary heads a diagnostic about the block: "Invalid Vault
	// connection".
	Summary() string

	// Check checks what the evaluated block says by itself, reading
	// nothing else (not the process's environment), so that `rotplan
	// validate` gives the same answer anywhere.
	Check(cfg Config) error

	// Open sets up in env what the block gives the steps, with what the
	// process's environment adds to it; cfg is empty when the plan has
	// no such block. Sessions open on first use, not here.
	Open(env *Env, cfg Config) error
}

// Settings are settings block types by block type name.
type Settings map[string]Setting

// SettingsUser is implemented by kinds whose steps use plan-level settings
// blocks: the issue kind reaches Vault as the `vault` block says.
type SettingsUser interface {
	Settings() Settings
}

// Settings returns the settings blocks the registry's kinds use, by block
// type. Kinds that use one type must give the same Setting (a comparable
// value); two that differ are a mistake in the registry, and it panics.
func (r Registry) Settings() Settings {
	out := Settings{}
	for _, name := range r.Names() {
		user, ok := r[name].(SettingsUser)
		if !ok {
			continue
		}
		for typ, s := range user.Settings() {
			if prev, dup := out[typ]; dup && prev != s {
				panic(fmt.Sprintf("steps: kinds declare two different %q settings blocks", typ))
			}
			out[typ] = s
		}
	}
	return out
}
