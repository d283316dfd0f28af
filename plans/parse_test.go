package plans

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var testKinds = []string{"issue", "write"}

func TestValidPlans(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.hcl")
	if len(files) == 0 {
		t.Fatal("no valid test plans")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			plan, diags := NewParser().LoadPlan(f, testKinds)
			if diags.HasErrors() || plan == nil {
				t.Fatalf("unexpected diagnostics: %s", diags.Error())
			}
		})
	}
}

// TestInvalidPlans checks that every invalid plan gives an error diagnostic
// that points into the file.
func TestInvalidPlans(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.hcl")
	if len(files) < 10 {
		t.Fatalf("only %d invalid test plans", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, diags := NewParser().LoadPlan(f, testKinds)
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			for _, d := range diags {
				if d.Severity == hcl.DiagError && (d.Subject == nil || d.Subject.Filename != f) {
					t.Errorf("error %q does not point into %s", d.Summary, f)
				}
			}
		})
	}
}

func TestInvalidPlanSummaries(t *testing.T) {
	tests := []struct {
		file, summary string
		line          int
		detail        string
	}{
		{"invalid-duplicate-step.hcl", "Duplicate step", 6, "invalid-duplicate-step.hcl:1"},
		{"invalid-duplicate-variable.hcl", "Duplicate variable", 3, "already declared"},
		{"invalid-duplicate-local.hcl", "Duplicate local value", 6, "already declared"},
		{"invalid-unknown-block.hcl", "Unsupported block type", 1, "steps of the kinds issue, write"},
		{"invalid-depends-on-output.hcl", "Invalid depends_on reference", 4, "names a whole step"},
		{"invalid-variable-type.hcl", "Invalid type specification", 2, ""},
		{"invalid-default-type.hcl", "Invalid default value for variable", 3, "a number is required"},
		{"invalid-step-name.hcl", "Invalid step name", 1, `"9lives"`},
		{"invalid-two-vault-blocks.hcl", "Duplicate vault block", 3, "already declared"},
		{"invalid-step-without-name.hcl", "Missing name for issue", 1, ""},
		{"invalid-top-level-argument.hcl", "Unsupported argument", 1, ""},
		{"invalid-rollback-duplicate.hcl", "Duplicate rollback block", 6, "invalid-rollback-duplicate.hcl:3"},
		{"invalid-rollback-label.hcl", "Extraneous label for rollback", 3, "No labels are expected"},
		{"invalid-rollback-top-level.hcl", "Unsupported block type", 1, "steps of the kinds issue, write"},
		{"invalid-on-unknown-host.hcl", "Reference to undeclared host", 6, `no host "wbe" in this plan`},
		{"invalid-on-not-host.hcl", "Invalid on reference", 6, "host.NAME"},
		{"invalid-on-output.hcl", "Invalid on reference", 6, "host.NAME"},
		{"invalid-duplicate-host.hcl", "Duplicate host", 5, "invalid-duplicate-host.hcl:1"},
		{"invalid-host-count-and-for-each.hcl", "Invalid combination of count and for_each", 2, "A host block"},
		{"invalid-host-name.hcl", "Invalid host name", 1, `"9web"`},
		{"invalid-host-without-name.hcl", "Missing name for host", 1, ""},
		{"invalid-rollout-unknown-host.hcl", "Reference to undeclared host", 8, `no host "wbe" in this plan`},
		{"invalid-rollout-hosts-and-groups.hcl", "Invalid combination of hosts and groups", 9, "not both"},
		{"invalid-rollout-batch-size.hcl", "Invalid batch_size", 9, "at least 1"},
		{"invalid-rollout-batch-percent.hcl", "Invalid batch_size", 9, `"100%"`},
		{"invalid-rollout-max-failures.hcl", "Invalid max_failures", 9, "a whole number, 0"},
		{"invalid-rollout-rollback.hcl", "Invalid rollback", 9, `not "failed_host"`},
		{"invalid-rollout-not-host.hcl", "Invalid rollout host", 8, "host.NAME[KEY]"},
		{"invalid-rollout-no-hosts.hcl", "Missing hosts of rollout", 7, "groups ="},
		{"invalid-rollout-duplicate.hcl", "Duplicate rollout", 11, "invalid-rollout-duplicate.hcl:7"},
		{"invalid-rollout-empty-group.hcl", "Empty rollout group", 8, "at least one host"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, diags := NewParser().LoadPlan(filepath.Join("testdata", tt.file), testKinds)
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			d := diags[0]
			if d.Summary != tt.summary || d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Errorf("got %q at %v, want %q at line %d", d.Summary, d.Subject, tt.summary, tt.line)
			}
			if !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("detail %q lacks %q", d.Detail, tt.detail)
			}
		})
	}
}

func TestLoadPlanDecodes(t *testing.T) {
	t.Setenv("ROTPLAN_PLANS_TEST_ENV", "from-the-environment")
	plan, diags := NewParser().LoadPlan("testdata/valid-full.hcl", testKinds)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got := len(plan.Steps); got != 2 || plan.Steps[0].Addr() != "issue.a" || plan.Steps[1].Addr() != "write.a" {
		t.Fatalf("steps %v", plan.Steps)
	}
	if deps := plan.Steps[1].DependsOn; len(deps) != 1 || deps[0].RootName() != "issue" {
		t.Errorf("depends_on %#v", deps)
	}
	ports := plan.Variables["ports"]
	if !ports.Type.Equals(cty.List(cty.Number)) || !ports.Default.RawEquals(cty.ListVal([]cty.Value{cty.NumberIntVal(22400)})) {
		t.Errorf("ports: %#v default %#v", ports.Type, ports.Default)
	}
	if !plan.Variables["token"].Sensitive {
		t.Error("token should be sensitive")
	}
	if got := plan.Variables["from_env"].Default; !got.RawEquals(cty.StringVal("from-the-environment")) {
		t.Errorf("env() default %#v", got)
	}
	if plan.Settings["vault"] == nil || plan.Locals["path"] == nil {
		t.Error("vault block or local missing")
	}
}

func TestResolveVariables(t *testing.T) {
	dir := t.TempDir()
	planPath := filepath.Join(dir, "plan.hcl")
	src := `
variable "name" {
  type = string
}
variable "count" {
  type    = number
  default = 1
}
variable "names" {
  type    = list(string)
  default = []
}
variable "secret" {
  type      = string
  default   = "s"
  sensitive = true
}
`
	if err := os.WriteFile(planPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	varFile := filepath.Join(dir, "vars.hcl")
	if err := os.WriteFile(varFile, []byte("name = \"from-file\"\ncount = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		flags   []string
		file    bool
		want    map[string]cty.Value
		summary string
	}{
		{"defaults and a flag", []string{"name=n"}, false,
			map[string]cty.Value{"name": cty.StringVal("n"), "count": cty.NumberIntVal(1), "names": cty.ListValEmpty(cty.String)}, ""},
		{"file then flag wins", []string{"count=7"}, true,
			map[string]cty.Value{"name": cty.StringVal("from-file"), "count": cty.NumberIntVal(7)}, ""},
		{"list from flag", []string{"name=n", `names=["a","b"]`}, false,
			map[string]cty.Value{"names": cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")})}, ""},
		{"string flag is literal", []string{`name=["not","a","list"]`}, false,
			map[string]cty.Value{"name": cty.StringVal(`["not","a","list"]`)}, ""},
		{"missing required", nil, false, nil, "No value for required variable"},
		{"undeclared", []string{"name=n", "nope=1"}, false, nil, "Value for undeclared variable"},
		{"wrong type", []string{"name=n", "count=many"}, false, nil, "Variables not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewParser()
			plan, diags := p.LoadPlan(planPath, nil)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			in := Inputs{}
			if tt.file {
				if diags := p.LoadVarFile(varFile, in); diags.HasErrors() {
					t.Fatal(diags.Error())
				}
			}
			for _, f := range tt.flags {
				if diags := in.AddFlag(f); diags.HasErrors() {
					t.Fatal(diags.Error())
				}
			}
			got, diags := ResolveVariables(plan, in)
			if tt.summary != "" {
				if !diags.HasErrors() || diags[0].Summary != tt.summary {
					t.Fatalf("diagnostics %v, want %q", diags, tt.summary)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			for name, want := range tt.want {
				if !got[name].RawEquals(want) {
					t.Errorf("%s = %#v, want %#v", name, got[name], want)
				}
			}
			if !got["secret"].HasMark(SensitiveMark) {
				t.Error("a sensitive variable's value must be marked")
			}
		})
	}
}

func TestAddFlagRejectsMalformed(t *testing.T) {
	for _, flag := range []string{"novalue", "=x", "9x=1"} {
		if diags := (Inputs{}).AddFlag(flag); !diags.HasErrors() {
			t.Errorf("-var %q accepted", flag)
		}
	}
}

// TestLoadPlanHosts checks what a plan's host blocks and its steps' `on`
// decode to: labelled settings blocks with their meta-arguments, and the
// host each step names, by literal key or by its own.
func TestLoadPlanHosts(t *testing.T) {
	plan, diags := NewParser().LoadPlan("testdata/valid-hosts.hcl", testKinds)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got := len(plan.Hosts); got != 3 {
		t.Fatalf("%d hosts, want 3", got)
	}
	web, db, cache := plan.Hosts["web"], plan.Hosts["db"], plan.Hosts["cache"]
	if web.Type != HostBlock || web.Name != "web" || web.ForEach == nil || web.Count != nil {
		t.Errorf("host web %#v", web)
	}
	if db.ForEach != nil || db.Count != nil || cache.Count == nil {
		t.Errorf("host db %#v, cache %#v", db, cache)
	}
	if attrs, _ := web.Body.JustAttributes(); attrs["for_each"] != nil || attrs["address"] == nil {
		t.Errorf("host web's body holds %v: for_each should be taken out, address kept", attrs)
	}
	tests := []struct {
		step, on string
		key      bool
	}{
		{"write.key", "host.web", true},
		{"write.one", `host.web["a"]`, false},
		{"write.db", "host.db", false},
		{"write.cache", "host.cache", true},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			var s *Step
			for _, st := range plan.Steps {
				if st.Addr() == tt.step {
					s = st
				}
			}
			if s == nil || s.On == nil {
				t.Fatalf("%s has no on", tt.step)
			}
			if got := string(hclTraversalText(s.On)); got != tt.on {
				t.Errorf("on %s, want %s", got, tt.on)
			}
			if (s.OnKey != nil) != tt.key {
				t.Errorf("OnKey %v, want one: %v", s.OnKey, tt.key)
			}
			if attrs, _ := s.Body.JustAttributes(); attrs["on"] != nil {
				t.Error("on is left in the body")
			}
		})
	}
}

// hclTraversalText writes a traversal as a plan would.
func hclTraversalText(tr hcl.Traversal) string {
	var b strings.Builder
	for _, step := range tr {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			b.WriteString(s.Name)
		case hcl.TraverseAttr:
			b.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			b.WriteString(fmt.Sprintf("[%q]", s.Key.AsString()))
		}
	}
	return b.String()
}

// TestLoadPlanRollouts: a rollout's hosts are one group, its groups
// several in order, batch_size a number or a percentage, and max_failures
// and rollback have defaults.
func TestLoadPlanRollouts(t *testing.T) {
	plan, diags := NewParser().LoadPlan("testdata/valid-rollout.hcl", testKinds)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if len(plan.Rollouts) != 2 {
		t.Fatalf("rollouts %#v", plan.Rollouts)
	}
	web, vault := plan.Rollouts[0], plan.Rollouts[1]
	if web.Name != "web" || len(web.Groups) != 1 || len(web.Groups[0]) != 1 || len(web.Groups[0][0]) != 2 || web.Percent != 50 || web.BatchSize != 0 {
		t.Errorf("web: %#v", web)
	}
	if vault.Name != "vault" || len(vault.Groups) != 2 || len(vault.Groups[0]) != 2 || len(vault.Groups[1]) != 1 || vault.BatchSize != 1 || vault.Percent != 0 {
		t.Errorf("vault: %#v", vault)
	}
	if web.MaxFailures != 1 || web.Rollback != RollbackFailedBatch {
		t.Errorf("web: max_failures %d, rollback %q; want 1, %q", web.MaxFailures, web.Rollback, RollbackFailedBatch)
	}
	if vault.MaxFailures != 0 || vault.Rollback != RollbackAll {
		t.Errorf("vault: max_failures %d, rollback %q; want the defaults 0, %q", vault.MaxFailures, vault.Rollback, RollbackAll)
	}
}
