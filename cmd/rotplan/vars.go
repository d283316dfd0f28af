package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/suggest"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// varSources are where a command's variables come from, in the order they
// apply (a later value for a name replaces an earlier one): ROTPLAN_VAR_
// environment variables, -var-file files, then -var flags, as Terraform
// orders TF_VAR_, -var-file and -var.
type varSources struct {
	// envSaved are ROTPLAN_VAR_ values a resumed run had (NAME=VALUE),
	// which the environment now may override.
	envSaved []string
	files    listFlag
	flags    listFlag
	// env are the ROTPLAN_VAR_ values load found for declared variables,
	// NAME=VALUE.
	env []string
	// secretLines are the lines of the variable files that may hold a
	// secret, by file, and secretFiles the variable files any line of
	// which may, as load found them (see hides).
	secretLines map[string]map[int]bool
	secretFiles map[string]bool
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
	if plan != nil {
		diags = append(diags, v.fromEnv(plan, inputs)...)
	}
	v.secretLines, v.secretFiles = map[string]map[int]bool{}, map[string]bool{}
	for _, f := range v.files {
		fileInputs := plans.Inputs{}
		more := parser.LoadVarFile(f, fileInputs)
		if more.HasErrors() {
			more = v.unreadable(f, more, parser.Files()[f] != nil)
		}
		diags = append(diags, more...)
		if plan != nil { // else nothing is evaluated, and no diagnostic points at a value
			for _, r := range fileInputs.SecretRanges(plan) {
				v.hide(r.Filename, r.Start.Line, r.End.Line)
			}
		}
		maps.Copy(inputs, fileInputs)
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

// unreadable hides the whole of the variable file f, which could not be
// read, and, when it was parsed, returns its diagnostics without the
// details of those that point into it: which variable a line is for is not
// known, so any may be a secret's, and hcl's details may quote the source
// ("The symbol "q" is not a valid escape sequence"). A file refused before
// parsing (a device, too large, nested too deeply) has diagnostics whose
// details say why in rotplan's words and quote nothing of it.
func (v *varSources) unreadable(f string, diags hcl.Diagnostics, parsed bool) hcl.Diagnostics {
	v.secretFiles[f] = true
	if !parsed {
		return diags
	}
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

// hide records that lines first to last of file may hold a secret.
func (v *varSources) hide(file string, first, last int) {
	lines := v.secretLines[file]
	if lines == nil {
		lines = map[int]bool{}
		v.secretLines[file] = lines
	}
	for l := first; l <= last; l++ {
		lines[l] = true
	}
}

// printer prints the diagnostics of the plan and variables parser reads,
// on w, without the lines of variable files that load finds may hold
// secrets.
func (v *varSources) printer(w io.Writer, parser *plans.Parser, noColour bool) *diagPrinter {
	p := newDiagPrinter(w, parser.Files, noColour)
	p.hides = v.hides
	return p
}

// hides reports whether a diagnostic printer must not show the line of
// file: a value for a sensitive or undeclared variable is given there, or
// the variable file could not be read.
func (v *varSources) hides(file string, line int) bool {
	return v.secretFiles[file] || v.secretLines[file][line]
}

// fromEnv adds the values of ROTPLAN_VAR_NAME environment variables: first
// those a resumed run had, then those set now. One that names no declared
// variable is a warning, with the name it probably meant: a typo in a
// timer's environment would otherwise go unseen.
func (v *varSources) fromEnv(plan *plans.Plan, inputs plans.Inputs) hcl.Diagnostics {
	v.env = nil
	for _, kv := range v.envSaved {
		name, value, _ := strings.Cut(kv, "=")
		inputs.AddEnv(name, value)
	}
	declared := make([]string, 0, len(plan.Variables))
	for name := range plan.Variables {
		declared = append(declared, name)
	}
	var diags hcl.Diagnostics
	environ := os.Environ()
	sort.Strings(environ)
	for _, kv := range environ {
		key, value, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(key, plans.EnvPrefix)
		if !ok || name == "" {
			continue
		}
		if _, ok := plan.Variables[name]; !ok {
			detail := fmt.Sprintf("%s is set, but the plan %s declares no variable %q; it is ignored.", key, plan.Path, name)
			if best := suggest.Closest(name, declared); best != "" {
				detail += fmt.Sprintf(" Did you mean %s%s?", plans.EnvPrefix, best)
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Environment variable for no variable", Detail: detail})
			continue
		}
		inputs.AddEnv(name, value)
		v.env = append(v.env, name+"="+value)
	}
	return diags
}

// journaled returns the variables as the journal keeps them for resume:
// the files made absolute (resume may run elsewhere), and the -var flags
// and ROTPLAN_VAR_ values of sensitive variables by name only.
func (v *varSources) journaled(plan *plans.Plan) *journal.Inputs {
	in := &journal.Inputs{}
	for _, f := range v.files {
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		in.VarFiles = append(in.VarFiles, f)
	}
	// keep journals NAME=VALUE in dst, or only NAME when it is sensitive.
	keep := func(kv string, dst *[]string) {
		name, _, _ := strings.Cut(kv, "=")
		switch decl, ok := plan.Variables[name]; {
		case !ok || !decl.Sensitive:
			*dst = append(*dst, kv)
		case !slices.Contains(in.Withheld, name):
			in.Withheld = append(in.Withheld, name)
		}
	}
	for _, flag := range v.flags {
		keep(flag, &in.Vars)
	}
	for _, kv := range v.env {
		keep(kv, &in.Env)
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
	for _, kv := range os.Environ() {
		if name, ok := strings.CutPrefix(kv, plans.EnvPrefix); ok {
			name, _, _ = strings.Cut(name, "=")
			given[name] = true
		}
	}
	for _, name := range in.Withheld {
		if !given[name] {
			missing = append(missing, name)
		}
	}
	v.envSaved = slices.Clone(in.Env)
	v.files = append(slices.Clone(listFlag(in.VarFiles)), v.files...)
	v.flags = append(slices.Clone(listFlag(in.Vars)), v.flags...)
	return missing
}

// describeInputs says what the journaled variables are, as flags, for the
// operator: "-var-file /etc/rotplan/prod.vars.hcl -var renew_before=720h".
func describeInputs(in *journal.Inputs) string {
	if in == nil {
		return ""
	}
	var parts []string
	for _, kv := range in.Env {
		parts = append(parts, plans.EnvPrefix+shellQuote(kv))
	}
	for _, f := range in.VarFiles {
		parts = append(parts, "-var-file "+shellQuote(f))
	}
	for _, flag := range in.Vars {
		parts = append(parts, "-var "+shellQuote(flag))
	}
	for _, name := range in.Withheld {
		parts = append(parts, fmt.Sprintf("%s=(sensitive, not journaled)", name))
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
