package engine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// TestLoad: Load applies the sources of a variable in Terraform's order
// (saved environment, environment, files, flags), reports the environment
// values it used, warns of one for no variable, and says which lines of the
// variable files a printer must hide.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	plan := write("plan.hcl", `variable "a" {
  type = string
}
variable "b" {
  type = string
}
variable "c" {
  type = string
}
variable "d" {
  type = string
}
variable "token" {
  type      = string
  sensitive = true
}
rec "x" {
  input = "${var.a}${var.b}${var.c}${var.d}"
}
`)
	vars := write("vars.hcl", "c = \"file\"\nd = \"file\"\ntoken = \"hvs.x\"\n")
	src := Sources{
		Plan:     plan,
		SavedEnv: []string{"a=saved", "b=saved", "token=saved"},
		Environ:  []string{"PATH=/bin", "ROTPLAN_VAR_b=env", "ROTPLAN_VAR_c=env", "ROTPLAN_VAR_tokn=typo"},
		VarFiles: []string{vars},
		Vars:     []string{"d=flag"},
	}
	l, diags := Load(plans.NewParser(), src, steps.Registry{"rec": &record{}})
	if diags.HasErrors() || l.Program == nil {
		t.Fatalf("Load: %s", diags.Error())
	}
	for name, want := range map[string]string{"a": "saved", "b": "env", "c": "file", "d": "flag"} {
		if got := l.Program.vars.GetAttr(name); !got.RawEquals(cty.StringVal(want)) {
			t.Errorf("var.%s = %#v, want %#v", name, got, cty.StringVal(want))
		}
	}
	if want := []string{"b=env", "c=env"}; !slices.Equal(l.Env, want) {
		t.Errorf("Env = %q, want %q", l.Env, want)
	}
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "Did you mean ROTPLAN_VAR_token?") {
		t.Errorf("diagnostics %s, want one warning suggesting ROTPLAN_VAR_token", diags.Error())
	}
	if len(l.Secrets) != 1 || l.Secrets[0].Filename != vars || l.Secrets[0].Start.Line != 3 {
		t.Errorf("Secrets = %v, want line 3 of %s", l.Secrets, vars)
	}
	if len(l.Unreadable) != 0 {
		t.Errorf("Unreadable = %q, want none", l.Unreadable)
	}

	// A variable file that cannot be parsed: every line of it is hidden,
	// and its diagnostics, which could quote it, lose their details.
	broken := write("broken.vars.hcl", "token = \"hvs.\\q\"\n")
	l, diags = Load(plans.NewParser(), Sources{Plan: plan, VarFiles: []string{broken}}, steps.Registry{"rec": &record{}})
	if !diags.HasErrors() || l.Program != nil {
		t.Fatalf("Load of a broken variable file: program %v, diagnostics %s; want errors and no program", l.Program, diags.Error())
	}
	if !slices.Equal(l.Unreadable, []string{broken}) {
		t.Errorf("Unreadable = %q, want %q", l.Unreadable, broken)
	}
	inFile := 0
	for _, d := range diags {
		if d.Subject != nil && d.Subject.Filename == broken {
			inFile++
			if d.Detail != "" {
				t.Errorf("diagnostic %q keeps its detail %q", d.Summary, d.Detail)
			}
		}
	}
	if inFile == 0 {
		t.Errorf("no diagnostic points into %s: %s", broken, diags.Error())
	}
}
