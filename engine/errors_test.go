package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// TestStepErrorHidesSensitiveValues: a step whose expression fails on a
// sensitive output at run time (tonumber of a key) fails without the value
// in its error, which the journal, the logs and the views take up.
func TestStepErrorHidesSensitiveValues(t *testing.T) {
	const marker = "MARKER5c1d"
	tests := []struct {
		name, expr string
	}{
		{"function argument", "tonumber(rec.a.secret)"},
		{"template", `tonumber("${rec.a.secret}!")`},
		{"through a collection", "tonumber([rec.a.secret][0])"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, _ := mustCompile(t, `rec "a" {
  input = "`+marker+`"
}
rec "b" {
  input = "x"
  mode  = `+tt.expr+`
}
`)
			dir := t.TempDir()
			err := applyJournaled(t, prog, dir)
			if err == nil {
				t.Fatal("the run succeeded, want rec.b to fail")
			}
			// The secret output is "secret-of-" + input (record.Apply);
			// the input itself is in a plain output.
			secret := "secret-of-" + marker
			if !strings.Contains(err.Error(), "Invalid function argument") || strings.Contains(err.Error(), secret) {
				t.Errorf("error %q: want the failure without the sensitive value", err)
			}
			journals, _ := filepath.Glob(filepath.Join(dir, "runs", "*"))
			for _, j := range journals {
				b, _ := os.ReadFile(j)
				if strings.Contains(string(b), secret) {
					t.Errorf("the journal %s holds the sensitive value:\n%s", j, b)
				}
			}
			if len(journals) == 0 {
				t.Errorf("no journal in %s", dir)
			}
		})
	}
}

// quoting is a fake step kind whose error quotes its argument, as a kind's
// errors may ("hvs.… is not a file mode").
type quoting struct{}

var _ steps.Step = quoting{}

func (quoting) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{"input": &hcldec.AttrSpec{Name: "input", Type: cty.String}}
}

func (quoting) Outputs() map[string]steps.Output { return nil }

func (quoting) Validate(cfg steps.Config) error {
	if !cfg.Known("input") {
		return nil
	}
	return &steps.AttrError{Path: "input", Err: fmt.Errorf("%q is wrong", cfg.String("input"))}
}

func (quoting) Apply(context.Context, *steps.Env, steps.Config) (cty.Value, error) {
	return cty.EmptyObjectVal, nil
}

// TestKindErrorsHideSensitiveArguments: a kind's error about an argument
// computed from a sensitive value, found when the plan is compiled or when
// it runs, does not show the value; one about a plain value does.
func TestKindErrorsHideSensitiveArguments(t *testing.T) {
	const marker = "MARKER9e2b"
	tests := []struct {
		name, input string
		sensitive   bool
	}{
		{"sensitive variable", "var.secret", true},
		{"sensitive local", "local.s", true},
		{"sensitive output, at run time", "rec.a.secret", true},
		{"sensitive output in a template", `"${rec.a.secret}"`, true},
		{"plain variable", "var.plain", false},
		{"plain output", "rec.a.output", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := `variable "secret" {
  type      = string
  sensitive = true
}
variable "plain" {
  type = string
}
locals {
  s = "${var.secret}!"
}
rec "a" {
  input = "` + marker + `"
}
quoting "q" {
  input = ` + tt.input + `
}
`
			kinds := steps.Registry{"rec": &record{}, "quoting": quoting{}}
			prog, diags := loadSource(t, src, map[string]string{"secret": marker, "plain": marker}, kinds)
			if prog == nil {
				t.Fatal(diags.Error())
			}
			var shown string
			switch {
			case diags.HasErrors():
				shown = (&StepError{Diagnostics: plans.WithoutSecrets(diags)}).Error()
			default:
				err := applyJournaled(t, prog, t.TempDir())
				if err == nil {
					t.Fatal("the run succeeded, want quoting.q to fail")
				}
				shown = err.Error()
			}
			if !strings.Contains(shown, "quoting.q") {
				t.Errorf("the error %q is not about quoting.q", shown)
			}
			if got := strings.Contains(shown, marker); got == tt.sensitive {
				t.Errorf("the value shows: %v, want %v, in %q", got, !tt.sensitive, shown)
			}
		})
	}
}
