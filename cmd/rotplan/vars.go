package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// varSources are where a command's variables come from, in the order they
// apply (a later value for a name replaces an earlier one): -var-file
// files, then -var flags.
type varSources struct {
	files listFlag
	flags listFlag
}

// register adds -var and -var-file to fs.
func (v *varSources) register(fs *flag.FlagSet) {
	fs.Var(&v.flags, "var", "set a variable: `NAME=VALUE` (repeatable; wins over -var-file)")
	fs.Var(&v.files, "var-file", "read variables from an HCL `FILE` of NAME = VALUE lines (repeatable)")
}

// loaded is a plan read and compiled with its variables.
type loaded struct {
	plan *plans.Plan
	prog *engine.Program
}

// load reads the plan and the variables and compiles them. prog is nil
// when the plan cannot be compiled at all; see engine.Compile.
func (v *varSources) load(parser *plans.Parser, path string) (loaded, hcl.Diagnostics) {
	kinds := steps.Default()
	plan, diags := parser.LoadPlan(path, kinds.Names())
	inputs := plans.Inputs{}
	for _, f := range v.files {
		diags = append(diags, parser.LoadVarFile(f, inputs)...)
	}
	for _, flag := range v.flags {
		diags = append(diags, inputs.AddFlag(flag)...)
	}
	if diags.HasErrors() {
		return loaded{plan: plan}, diags
	}
	values, more := plans.ResolveVariables(plan, inputs)
	diags = append(diags, more...)
	if diags.HasErrors() {
		return loaded{plan: plan}, diags
	}
	prog, more := engine.Compile(plan, values, kinds)
	return loaded{plan: plan, prog: prog}, append(diags, more...)
}

// journaled returns the variables as the journal keeps them for resume:
// the files made absolute (resume may run elsewhere), and the -var flags
// of sensitive variables by name only.
func (v *varSources) journaled(plan *plans.Plan) *journal.Inputs {
	in := &journal.Inputs{}
	for _, f := range v.files {
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		in.VarFiles = append(in.VarFiles, f)
	}
	for _, flag := range v.flags {
		name, _, _ := strings.Cut(flag, "=")
		if decl, ok := plan.Variables[name]; ok && decl.Sensitive {
			if !slices.Contains(in.Withheld, name) {
				in.Withheld = append(in.Withheld, name)
			}
			continue
		}
		in.Vars = append(in.Vars, flag)
	}
	return in
}

// resumeWith puts a run's journaled variables before the ones given now,
// which therefore win. It returns the sensitive variables the run was given
// on the command line that are not given now: their values were never
// journaled.
func (v *varSources) resumeWith(in *journal.Inputs) (missing []string) {
	if in == nil {
		return nil
	}
	given := map[string]bool{}
	for _, flag := range v.flags {
		name, _, _ := strings.Cut(flag, "=")
		given[name] = true
	}
	for _, name := range in.Withheld {
		if !given[name] {
			missing = append(missing, name)
		}
	}
	v.files = append(slices.Clone(listFlag(in.VarFiles)), v.files...)
	v.flags = append(slices.Clone(listFlag(in.Vars)), v.flags...)
	return missing
}

// describe says what the journaled variables are, as flags, for the
// operator: "-var-file /etc/rotplan/prod.vars.hcl -var renew_before=720h".
func describeInputs(in *journal.Inputs) string {
	if in == nil {
		return ""
	}
	var parts []string
	for _, f := range in.VarFiles {
		parts = append(parts, "-var-file "+shellQuote(f))
	}
	for _, flag := range in.Vars {
		parts = append(parts, "-var "+shellQuote(flag))
	}
	for _, name := range in.Withheld {
		parts = append(parts, fmt.Sprintf("-var %s=(sensitive, not journaled)", name))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it, so that a command
// rotplan prints can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
