package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
