package steps

import (
	"context"
	"sort"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Step is one step kind: the schema of its block, the outputs it produces and
// how it is checked and carried out. Implementations are stateless; all that a
// single step block says arrives through Config.
type Step interface {
	// Spec is the schema of the kind's block body. The engine decodes the body
	// with it into the object value that Config wraps.
	Spec() hcldec.ObjectSpec

	// Outputs describes the attributes the step produces, by name.
	Outputs() map[string]Output

	// Validate checks a configuration's arguments before anything runs:
	// their types, formats and how they go together. Values that depend on
	// other steps' outputs are unknown at that time (Config.Known reports
	// false); Validate checks only what is known, and returns ErrUnknown
	// alone when all it could check was fine but something was not known
	// yet. It never reads the system, so that `rotplan validate` gives the
	// same answer on a laptop or a CI runner as on the target host: what
	// the step needs of the host belongs in HostChecker. The engine calls
	// it again with every value known just before Apply.
	Validate(cfg Config) error

	// Apply carries the step out and returns its outputs: an object with one
	// attribute per entry of Outputs. Every value in cfg is known.
	Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error)
}

// HostChecker is implemented by kinds whose steps need something of the
// host they run on: a directory, a user or group, a program, a running
// process. CheckHost looks for it, reading the system and never changing
// it, with the values known so far (returning ErrUnknown alone when all
// it could check was fine). `rotplan validate` never calls it; `rotplan
// plan` does, and so does a run, for every step before any step changes
// anything, and again just before the step's Apply.
type HostChecker interface {
	CheckHost(ctx context.Context, env *Env, cfg Config) error
}

// Preparer is implemented by kinds that can check, before any step of the run
// changes anything, that what they will need is there (a reachable and
// authenticated Vault, say). The engine calls Prepare for every step of such a
// kind before the first Apply.
type Preparer interface {
	Prepare(ctx context.Context, env *Env, cfg Config) error
}

// Resumer is implemented by kinds that can tell, after a crash, whether a
// step that started but whose outcome was never recorded did in fact
// complete. Without it, such a step is simply run again.
type Resumer interface {
	// Intent describes the effect Apply is about to have, in a form free of
	// secrets (a path and the SHA-256 of the content, not the content). The
	// engine journals it, durably, before calling Apply. env is the step's
	// (on its host, if it has one: a name there is looked up there); Intent
	// reads and never changes anything.
	Intent(ctx context.Context, env *Env, cfg Config) (map[string]string, error)

	// Done reports whether the effect an Intent describes is in place now and,
	// when it is, returns the outputs Apply would have returned. It reads the
	// system and never changes it. The intent comes from the journal, so Done
	// must treat it as untrusted input.
	Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error)
}

// Superseder is implemented by kinds whose results live on somewhere (a
// certificate Vault issued) when a resumed run has to carry the step out
// again: the earlier result is superseded by the new one. previous holds the
// earlier run's outputs as journaled, its sensitive attributes unknown. It is
// never the result now in use. Supersede
// is called once the whole run has succeeded; it returns a note for the
// journal and the operator ("serial 1a:2b revoked").
type Superseder interface {
	Supersede(ctx context.Context, env *Env, cfg Config, previous cty.Value) (string, error)
}

// Rollbacker is implemented by kinds whose effect can be undone when a later
// step of the run fails.
type Rollbacker interface {
	// Snapshot records, before Apply changes anything, what Rollback needs to
	// put things back: a file's previous mode and owner, and a copy of its
	// content saved under env.Backups (owner-only). The engine journals the
	// returned map, durably, before Apply, so it must hold no secret (paths
	// and digests, not content). Snapshot must not change what the step
	// acts on.
	Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error)

	// Rollback undoes the step. outputs are the step's outputs (sensitive
	// ones unknown when they come from the journal); snapshot is what
	// Snapshot returned. It must be safe to call again after a crash part
	// way through, and its error must tell the operator what is left to do
	// by hand.
	Rollback(ctx context.Context, env *Env, cfg Config, outputs cty.Value, snapshot map[string]string) error
}

// ReadOnly is implemented by kinds whose steps change nothing (verify):
// running one again is harmless, so the engine does not wait for its
// journal records to be durable; they reach the disk with the next record
// that must.
type ReadOnly interface {
	ReadOnly()
}

// Staged is implemented by kinds whose Apply first prepares, changing
// nothing that anyone relies on (a write fills and flushes a temporary
// file next to its target), and then makes its change. Apply calls
// env.Commit between the two. The engine then does not wait, before
// Apply, for the step's start record to be durable, but in Commit: the
// journal's fsync overlaps the preparation.
type Staged interface {
	Staged()
}

// RestoreAware is implemented by rollbackers whose inverse is to act again
// on the restored system, as a reload that makes a process load the old
// files: they roll back after every other step, in dependency order, rather
// than in reverse dependency order with the rest.
type RestoreAware interface {
	RollbackAfterRestore()
}

// Summarizer is implemented by kinds with a few outputs worth showing in
// `rotplan status` (a serial and an expiry, a digest, a pid). Facts are
// journaled, so they must never hold a secret.
type Summarizer interface {
	Summary(outputs cty.Value) []Fact
}

// Noter is implemented by kinds whose result has one detail worth the
// step's progress line ("passed 2.9s after the reload"); the same detail
// is among its Summary facts, which the journal keeps. Note returns "" when
// there is none, and never a secret.
type Noter interface {
	Note(outputs cty.Value) string
}

// Fact is one named, printable, non-secret detail of a step's result.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Output describes one output attribute of a step kind.
type Output struct {
	// Type is the attribute's cty type.
	Type cty.Type
	// Sensitive outputs (private keys) are marked so that they and every value
	// computed from them are never printed, logged or journaled.
	Sensitive bool
}

// Registry maps a block type name (the kind's name in plans) to its kind.
type Registry map[string]Step

// Default returns the registry of every built-in step kind.
func Default() Registry {
	return Registry{
		"issue":  (*Issue)(nil),
		"sign":   (*Sign)(nil),
		"write":  (*Write)(nil),
		"chown":  (*Chown)(nil),
		"reload": (*Reload)(nil),
		"verify": (*Verify)(nil),

		"vault_auth":   (*VaultAuth)(nil),
		"vault_policy": (*VaultPolicy)(nil),
		"vault_write":  (*VaultWrite)(nil),
	}
}

// Names returns the registered kind names, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for name := range r {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// OutputType returns the object type of a kind's outputs.
func OutputType(s Step) cty.Type {
	attrs := map[string]cty.Type{}
	for name, out := range s.Outputs() {
		attrs[name] = out.Type
	}
	return cty.Object(attrs)
}
