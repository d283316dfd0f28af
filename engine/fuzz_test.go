package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// FuzzCompile feeds arbitrary plan sources through parsing, variable
// resolution and compilation with the real step kinds: whatever the input,
// rotplan must answer with diagnostics, never a panic. (Validation only
// reads the system, so fuzzing it is safe.)
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob("../internal/e2e/testdata/*.hcl")
	more, _ := filepath.Glob("../plans/testdata/*.hcl")
	seeds = append(append(seeds, more...), "../examples/prod.hcl", "../examples/leaves.hcl")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	kinds := steps.Default()
	f.Fuzz(func(t *testing.T, src []byte) {
		path := filepath.Join(t.TempDir(), "plan.hcl")
		if err := os.WriteFile(path, src, 0o600); err != nil {
			t.Fatal(err)
		}
		plan, diags := plans.NewParser().LoadPlan(path, kinds.Names())
		if diags.HasErrors() {
			return
		}
		inputs := plans.Inputs{}
		inputs.AddFlag("dir=" + t.TempDir())
		values, diags := plans.ResolveVariables(plan, inputs)
		if diags.HasErrors() {
			return
		}
		Compile(plan, values, kinds)
	})
}
