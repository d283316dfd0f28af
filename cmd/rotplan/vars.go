package main

import (
	"flag"
	"fmt"
	"io"
	"os"
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
// apply (a later value for a name replaces an earlier one): ROTPLAN_VAR_
// environment variables, -var-file files, then -var flags, as Terraform
// orders TF_VAR_, -var-file and -var.
type varSources struct {
	// envSaved are ROTPLAN_VAR_ values a resumed run had (NAME=VALUE),
	// which the environment now may override.
	envSaved []string
	files    listFlag
	flags    listFlag
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

// load reads the plan and the variables and compiles them (see
// engine.Load), and keeps which lines of the variable files hides must
// not show.
func (v *varSources) load(parser *plans.Parser, path string) (*engine.Loaded, hcl.Diagnostics) {
	src := engine.Sources{Plan: path, SavedEnv: v.envSaved, Environ: os.Environ(), VarFiles: v.files, Vars: v.flags}
	l, diags := engine.Load(parser, src, steps.Default())
	v.secretLines, v.secretFiles = map[string]map[int]bool{}, map[string]bool{}
	for _, r := range l.Secrets {
		v.hide(r.Filename, r.Start.Line, r.End.Line)
	}
	for _, f := range l.Unreadable {
		v.secretFiles[f] = true
	}
	return l, diags
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

// journaled returns the variables as the journal keeps them for resume:
// the files made absolute (resume may run elsewhere), and the -var flags
// and ROTPLAN_VAR_ values of sensitive variables by name only. l is what
// load returned.
func (v *varSources) journaled(l *engine.Loaded) *journal.Inputs {
	plan := l.Plan
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
	for _, kv := range l.Env {
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
