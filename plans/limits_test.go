package plans

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/internal/testchild"
)

// deep is an expression nested n times, for each way HCL nests.
var deep = []struct {
	name        string
	open, close string
}{
	{"parentheses", "(", ")"},
	{"brackets", "[", "]"},
	{"templates", `"${`, `}"`},
	{"objects", "{a = ", "}"},
	{"heredocs", "<<EOT\n${", "}\nEOT\n"},
	{"if directives", `"%{if true}`, `%{endif}"`},
	{"unary minus", "-", ""},
	{"negation", "!", ""},
	{"conditionals", "true ? 1 : ", "1"},
	{"binary operators", "1 + ", "1"},
	{"indexes", "", "[0]"},
}

func nested(open, close string, n int) string {
	return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
}

// childMemory bounds a child's address space: far more than parsing a
// plan needs, far less than a runaway recursion or value takes.
const childMemory = 2 << 30

// TestDeepNestingIsRefused gives plan files, variable files and -var values
// nested 100,000 deep: each must be refused with a diagnostic at the place
// the limit is crossed, not overflow the stack. It runs in a child process
// because an overflow kills the process that has it. Variable files and
// -var values share the plan's check, so they are tried with the first
// three ways of nesting only.
func TestDeepNestingIsRefused(t *testing.T) {
	for i, tt := range deep {
		for _, where := range []string{"plan", "var file", "-var"} {
			if i >= 3 && where != "plan" {
				continue
			}
			t.Run(tt.name+" in "+where, func(t *testing.T) {
				expr := nested(tt.open, tt.close, 100_000)
				dir := t.TempDir()
				out, ok := testchild.Run(t, childMemory, func() {
					diags := loadNested(dir, where, expr)
					for _, d := range diags {
						fmt.Printf("diagnostic: %s: %s: %s\n", d.Subject, d.Summary, d.Detail)
					}
				})
				if !ok {
					t.Fatalf("the child did not finish:\n%s", testchild.Excerpt(out))
				}
				if !strings.Contains(out, "Expression nested too deeply") || !strings.Contains(out, fmt.Sprint(MaxNesting)) {
					t.Fatalf("no nesting diagnostic naming the limit:\n%s", testchild.Excerpt(out))
				}
			})
		}
	}
}

// loadNested puts expr where a user can put one and loads it as rotplan
// does.
func loadNested(dir, where, expr string) hcl.Diagnostics {
	plan := filepath.Join(dir, "plan.hcl")
	decl := "variable \"x\" {\n  type = number\n}\n"
	switch where {
	case "plan":
		decl += "locals {\n  x = " + expr + "\n}\n"
	case "var file":
		vars := filepath.Join(dir, "vars.hcl")
		if err := os.WriteFile(vars, []byte("x = "+expr+"\n"), 0o600); err != nil {
			panic(err)
		}
		defer func() { _ = os.Remove(vars) }()
		if err := os.WriteFile(plan, []byte(decl), 0o600); err != nil {
			panic(err)
		}
		return NewParser().LoadVarFile(vars, Inputs{})
	}
	if err := os.WriteFile(plan, []byte(decl), 0o600); err != nil {
		panic(err)
	}
	p, diags := NewParser().LoadPlan(plan, testKinds)
	if diags.HasErrors() || where == "plan" {
		return diags
	}
	in := Inputs{}
	in.AddFlag("x=" + expr)
	_, diags = ResolveVariables(p, in)
	return diags
}

// TestNestingWithinTheLimit checks that nesting just under the limit is
// read as before, and that the diagnostic points where the limit is
// crossed.
func TestNestingWithinTheLimit(t *testing.T) {
	for _, tt := range []struct{ name, open, close string }{deep[0], deep[1], deep[3]} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if diags := loadNested(dir, "plan", nested(tt.open, tt.close, MaxNesting-2)); diags.HasErrors() {
				t.Fatalf("nesting %d deep refused: %s", MaxNesting-2, diags.Error())
			}
			diags := loadNested(dir, "plan", nested(tt.open, tt.close, MaxNesting+1))
			if len(diags) != 1 || diags[0].Summary != "Expression nested too deeply" || diags[0].Subject == nil {
				t.Fatalf("got %v", diags)
			}
			// The locals block's brace is one level, x's expression begins
			// at column 7 of line 5.
			want := 7 + (MaxNesting-1)*len(tt.open)
			if got := diags[0].Subject.Start; got.Line != 5 || got.Column != want {
				t.Errorf("points at %d:%d, want 5:%d", got.Line, got.Column, want)
			}
		})
	}
}

// TestUnreadableSourcesAreRefused gives rotplan, as a plan and as a
// variable file, what is not a plan: a device that never ends, a
// directory, a file over MaxSourceSize. Each must be refused with a
// diagnostic that names the file, without reading it whole; a child
// process under a memory limit runs it, since before the limit rotplan read
// /dev/zero until the kernel killed it.
func TestUnreadableSourcesAreRefused(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.hcl")
	line := "# " + strings.Repeat("-", 77) + "\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(line, MaxSourceSize/len(line)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, summary, detail string
	}{
		{"endless device", "/dev/zero", "Not a regular file", "/dev/zero is a device, not a file"},
		{"directory", dir, "Not a regular file", "DIR is a directory"},
		{"file over the limit", big, "File too large", "DIR/big.hcl is larger than 4 MiB"},
	}
	for _, tt := range tests {
		for _, as := range []string{"plan", "var file"} {
			t.Run(tt.name+" as "+as, func(t *testing.T) {
				out, ok := testchild.Run(t, childMemory, func() {
					var diags hcl.Diagnostics
					if as == "plan" {
						_, diags = NewParser().LoadPlan(tt.path, testKinds)
					} else {
						diags = NewParser().LoadVarFile(tt.path, Inputs{})
					}
					// The child has a temporary directory of its own.
					for _, d := range diags {
						fmt.Println(strings.ReplaceAll(fmt.Sprintf("diagnostic: %s: %s: %s", d.Subject, d.Summary, d.Detail), dir, "DIR"))
					}
				})
				if !ok {
					t.Fatalf("the child did not finish:\n%s", testchild.Excerpt(out))
				}
				want := fmt.Sprintf("diagnostic: %s:1,1-1: %s: %s", strings.ReplaceAll(tt.path, dir, "DIR"), tt.summary, tt.detail)
				if !strings.Contains(out, want) {
					t.Fatalf("want %q in:\n%s", want, testchild.Excerpt(out))
				}
			})
		}
	}
}
