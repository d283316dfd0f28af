package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/internal/suggest"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// Sources are where Load reads a plan and the values of its variables.
// Values for a variable apply in this order, a later one replacing an
// earlier one, as Terraform orders TF_VAR_, -var-file and -var: SavedEnv,
// Environ, VarFiles, then Vars.
type Sources struct {
	// Plan is the path of the plan file.
	Plan string
	// SavedEnv are the ROTPLAN_VAR_ values a resumed run had, NAME=VALUE
	// without the prefix, which the environment now may override.
	SavedEnv []string
	// Environ is the environment, KEY=VALUE as os.Environ gives it; Load
	// reads only its ROTPLAN_VAR_ entries.
	Environ []string
	// VarFiles are the variable files (-var-file), in order.
	VarFiles []string
	// Vars are the -var flags, NAME=VALUE.
	Vars []string
}

// Loaded is a plan read and compiled with its variables, and what a
// caller needs to journal those and to show diagnostics without secrets.
type Loaded struct {
	// Plan is nil when the plan file could not be read or parsed.
	Plan *plans.Plan
	// Program is nil when the plan could not be compiled at all (see
	// Compile), or was not compiled because a variable is wrong.
	Program *Program
	// Env are the ROTPLAN_VAR_ values Load took from Environ for declared
	// variables, NAME=VALUE, in the order of the sorted environment.
	Env []string
	// Secrets are where, in variable files, values are given that a
	// printer of diagnostics must not show (see plans.Inputs.SecretRanges).
	Secrets []hcl.Range
	// Unreadable are the variable files that could not be read: which
	// variable a line is for is not known, so any line may hold a secret.
	Unreadable []string
}

// Load reads the plan and its variables from src, resolves the variables
// and compiles the plan with kinds: the pipeline every command that runs,
// previews, validates or draws a plan goes through. The diagnostics are
// those of each stage that was reached; a stage with errors stops it.
func Load(parser *plans.Parser, src Sources, kinds steps.Registry) (*Loaded, hcl.Diagnostics) {
	l := &Loaded{}
	plan, diags := parser.LoadPlan(src.Plan, kinds.Names())
	l.Plan = plan
	inputs := plans.Inputs{}
	if plan != nil {
		diags = append(diags, l.fromEnv(src, inputs)...)
	}
	for _, f := range src.VarFiles {
		fileInputs := plans.Inputs{}
		more := parser.LoadVarFile(f, fileInputs)
		if more.HasErrors() {
			l.Unreadable = append(l.Unreadable, f)
			if parser.Files()[f] != nil {
				more = withoutDetailsIn(more, f)
			}
		}
		diags = append(diags, more...)
		if plan != nil { // else nothing is evaluated, and no diagnostic points at a value
			l.Secrets = append(l.Secrets, fileInputs.SecretRanges(plan)...)
		}
		maps.Copy(inputs, fileInputs)
	}
	for _, flag := range src.Vars {
		diags = append(diags, inputs.AddFlag(flag)...)
	}
	if diags.HasErrors() {
		return l, diags
	}
	values, more := plans.ResolveVariables(plan, inputs)
	diags = append(diags, more...)
	if diags.HasErrors() {
		return l, diags
	}
	l.Program, more = Compile(plan, values, kinds)
	return l, append(diags, more...)
}

// withoutDetailsIn returns the diagnostics of the variable file f, which
// was parsed but could not be read, without the details of those that
// point into it: which variable a line is for is not known, so any may be
// a secret's, and hcl's details may quote the source ("The symbol "q" is
// not a valid escape sequence"). A file refused before parsing (a device,
// too large, nested too deeply) keeps its diagnostics, whose details say
// why in rotplan's words and quote nothing of it.
func withoutDetailsIn(diags hcl.Diagnostics, f string) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		safe := *d
		if d.Subject != nil && d.Subject.Filename == f { // not "cannot read f"
			safe.Detail = ""
		}
		out[i] = &safe
	}
	return out
}

// fromEnv adds the values of ROTPLAN_VAR_NAME environment variables to
// inputs: first those a resumed run had, then those set now. One that
// names no declared variable is a warning, with the name it probably
// meant: a typo in a timer's environment would otherwise go unseen.
func (l *Loaded) fromEnv(src Sources, inputs plans.Inputs) hcl.Diagnostics {
	for _, kv := range src.SavedEnv {
		name, value, _ := strings.Cut(kv, "=")
		inputs.AddEnv(name, value)
	}
	declared := slices.Sorted(maps.Keys(l.Plan.Variables))
	var diags hcl.Diagnostics
	for _, kv := range slices.Sorted(slices.Values(src.Environ)) {
		key, value, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(key, plans.EnvPrefix)
		if !ok || name == "" {
			continue
		}
		if _, ok := l.Plan.Variables[name]; !ok {
			detail := fmt.Sprintf("%s is set, but the plan %s declares no variable %q; it is ignored.", key, l.Plan.Path, name)
			if best := suggest.Closest(name, declared); best != "" {
				detail += fmt.Sprintf(" Did you mean %s%s?", plans.EnvPrefix, best)
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Environment variable for no variable", Detail: detail})
			continue
		}
		inputs.AddEnv(name, value)
		l.Env = append(l.Env, name+"="+value)
	}
	return diags
}
