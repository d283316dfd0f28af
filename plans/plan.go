package plans

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Plan is a decoded plan file: declarations, not yet evaluated.
type Plan struct {
	// Path is the plan file as given; Dir the directory relative file paths
	// in it are resolved against.
	Path, Dir string
	// Hash is the SHA-256 of the plan file's bytes, in hex: the journal
	// records it so that resume can tell the plan changed.
	Hash string
	// Source is the plan file's bytes.
	Source []byte
	// Variables are the declared input variables, by name.
	Variables map[string]*Variable
	// Locals are the named local values, by name.
	Locals map[string]*Local
	// Settings are the plan's settings blocks, by block type (see
	// SettingsBlock); a type the plan has none of is absent.
	Settings map[string]*SettingsBlock
	// Hosts are the plan's `host "NAME" { ... }` blocks, by name: labelled
	// settings blocks, each standing for one host or, with for_each or
	// count, for several. Steps name one with their `on` meta-argument.
	Hosts map[string]*SettingsBlock
	// Rollouts are the plan's `rollout "NAME" { ... }` blocks in source
	// order: host instances in batches, the steps for one batch's hosts
	// waiting for every step for the batch before.
	Rollouts []*Rollout
	// Steps are the step blocks in source order.
	Steps []*Step
}

// Variable is a `variable "name" { ... }` block.
type Variable struct {
	Name        string
	Description string
	// Type is the declared type constraint; cty.DynamicPseudoType when the
	// block gives none.
	Type cty.Type
	// Default is the default value, or cty.NilVal when the variable is
	// required.
	Default cty.Value
	// Sensitive variables are marked so they are never printed.
	Sensitive bool
	DeclRange hcl.Range
}

// Local is one named value in a `locals` block.
type Local struct {
	Name      string
	Expr      hcl.Expression
	DeclRange hcl.Range
}

// SettingsBlock is a plan-level block of settings that steps share,
// outside any step (`vault { ... }`: how to reach Vault), kept unevaluated.
// A plan holds at most one of each unlabelled type, and one labelled block
// (`host "web" { ... }`) per name. What it means, and its schema, is the
// steps side's (steps.Setting); the engine evaluates it.
type SettingsBlock struct {
	// Type is the block type: "vault" or "host".
	Type string
	// Name is the label of a labelled block ("" for vault).
	Name string
	// ForEach and Count are a labelled block's meta-arguments, nil when
	// absent (at most one is set): the block stands for one instance per
	// element, or Count instances, as a step does.
	ForEach, Count hcl.Expression
	Body           hcl.Body
	DeclRange      hcl.Range
}

// settingsTypes are the types of unlabelled settings blocks a plan may
// hold.
var settingsTypes = []string{"vault"}

// HostBlock is the type of the labelled settings blocks steps name with
// `on`: host.NAME, host.NAME[KEY].
const HostBlock = "host"

// Step is one step block, such as `write "admin_key" { ... }`.
type Step struct {
	// Kind is the block type: the step kind's name.
	Kind string
	// Name is the block's label, unique per kind.
	Name string
	// Body is the block body without meta-arguments, evaluated later with
	// the kind's schema.
	Body hcl.Body
	// DependsOn holds the traversals of `depends_on`, each naming a step
	// (kind.name) or one instance of it (kind.name[KEY]).
	DependsOn []hcl.Traversal
	// DependsOnKeys holds, by position in DependsOn, the key of an entry
	// that names the instance of the same key as the step's own
	// (kind.name[each.key], kind.name[count.index]): an expression of
	// each and count, evaluated per instance. The traversal at that
	// position names the whole step. Nil when no entry has one.
	DependsOnKeys map[int]hcl.Expression
	// ForEach and Count are the `for_each` and `count` meta-arguments, nil
	// when absent (at most one is set): the step stands for one instance
	// per element, or Count instances.
	ForEach, Count hcl.Expression
	// On is the `on` meta-argument: the host the step is for, host.NAME
	// or host.NAME[KEY] (nil when absent). OnKey, when set, is the key of
	// an entry that names the host instance of the step's own key
	// (host.NAME[each.key]): an expression of each and count, evaluated
	// per instance, and On then names the whole host block. OnRange is
	// where the argument's value is.
	On      hcl.Traversal
	OnKey   hcl.Expression
	OnRange hcl.Range
	// RollbackHook is the step's `rollback { command = [...] }` block, kept
	// unevaluated, or nil.
	RollbackHook *RollbackHook
	// DeclRange covers the block type and label: where errors about the step
	// as a whole point.
	DeclRange hcl.Range
}

// RollbackHook is a step's `rollback` block: a command run when the step is
// rolled back, after the kind's own inverse.
type RollbackHook struct {
	Body      hcl.Body
	DeclRange hcl.Range
}

// Addr is the step's address in the plan: "kind.name".
func (s *Step) Addr() string { return s.Kind + "." + s.Name }
