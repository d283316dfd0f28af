package engine

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

func TestCompileChecksTheVaultBlock(t *testing.T) {
	kinds := steps.Registry{"rec": &record{}, "issue": (*steps.Issue)(nil)}
	_, diags := loadSource(t, "vault {\n  auth {\n    method = \"ldap\"\n  }\n}\n", nil, kinds)
	if !diags.HasErrors() || diags[0].Summary != "Invalid Vault connection" || diags[0].Subject.Start.Line != 3 {
		t.Fatalf("want an error at the auth method (line 3), got %v", diags)
	}
}

// fakeSetting is a settings block the engine knows nothing of: it records
// what it was given and fails as told.
type fakeSetting struct {
	mu      sync.Mutex
	checked []string // the address each Check saw
	opened  []string // the address each Open saw
	// checkErr and openErr, when set, are what Check and Open return.
	checkErr, openErr error
}

func (f *fakeSetting) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{"address": &hcldec.AttrSpec{Name: "address", Type: cty.String}}
}

func (f *fakeSetting) Summary() string { return "Invalid connection" }

func (f *fakeSetting) Check(cfg steps.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked = append(f.checked, cfg.String("address"))
	return f.checkErr
}

func (f *fakeSetting) Open(_ *steps.Env, cfg steps.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, cfg.String("address"))
	return f.openErr
}

// settingsUser is the rec kind, using the settings block f as its vault
// block: plans reads settings blocks of that type.
type settingsUser struct {
	*record
	f *fakeSetting
}

func (u settingsUser) Settings() steps.Settings { return steps.Settings{"vault": u.f} }

const settingsPlan = `locals {
  host = "db"
}
vault {
  address = "https://${local.host}:8200"
}
rec "a" {
  input = "x"
}
`

// TestSettingsBlock: the engine evaluates a settings block with the
// schema the kind gives, variables and locals known, and hands it to
// Check when compiling and to Open when a run or a preview starts.
func TestSettingsBlock(t *testing.T) {
	f := &fakeSetting{}
	prog, diags := loadSource(t, settingsPlan, nil, steps.Registry{"rec": settingsUser{&record{}, f}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if want := []string{"https://db:8200"}; !reflect.DeepEqual(f.checked, want) {
		t.Errorf("Check saw %q, want %q", f.checked, want)
	}
	if _, err := prog.Apply(context.Background(), testOptions()); err != nil {
		t.Fatal(err)
	}
	if pv := prog.Preview(context.Background(), testOptions()); len(pv.Diagnostics) != 0 {
		t.Fatal(pv.Diagnostics.Error())
	}
	if want := []string{"https://db:8200", "https://db:8200"}; !reflect.DeepEqual(f.opened, want) {
		t.Errorf("Open saw %q, want %q (the run's, then the preview's)", f.opened, want)
	}
}

// TestSettingsBlockAbsent: a kind's settings block the plan leaves out is
// opened empty, and not checked.
func TestSettingsBlockAbsent(t *testing.T) {
	f := &fakeSetting{}
	prog, diags := loadSource(t, `rec "a" { input = "x" }`, nil, steps.Registry{"rec": settingsUser{&record{}, f}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if _, err := prog.Apply(context.Background(), testOptions()); err != nil {
		t.Fatal(err)
	}
	if len(f.checked) != 0 || !reflect.DeepEqual(f.opened, []string{""}) {
		t.Errorf("checked %q, opened %q: want none checked, one opened empty", f.checked, f.opened)
	}
}

func TestSettingsBlockErrors(t *testing.T) {
	onAddress := &steps.AttrError{Path: "address", Err: errors.New("no such host")}
	tests := []struct {
		name              string
		checkErr, openErr error
		wantLine          int // where the diagnostic points
		wantDetail        string
	}{
		{"checked, at the argument", onAddress, nil, 5, "address: no such host"},
		{"checked, at the block", errors.New("not today"), nil, 4, "not today"},
		{"opened, at the argument", nil, onAddress, 5, "address: no such host"},
		{"opened, at the block", nil, errors.New("VAULT_ADDR is not set"), 4, "VAULT_ADDR is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSetting{checkErr: tt.checkErr, openErr: tt.openErr}
			prog, diags := loadSource(t, settingsPlan, nil, steps.Registry{"rec": settingsUser{&record{}, f}})
			check := func(what string, diags hcl.Diagnostics) {
				t.Helper()
				if len(diags) != 1 || diags[0].Severity != hcl.DiagError || diags[0].Summary != "Invalid connection" ||
					diags[0].Detail != tt.wantDetail || diags[0].Subject == nil || diags[0].Subject.Start.Line != tt.wantLine {
					t.Fatalf("%s: want one error %q at line %d, got %#v", what, tt.wantDetail, tt.wantLine, diags)
				}
			}
			if tt.checkErr != nil {
				check("Compile", diags)
				if prog == nil || prog.Valid() {
					t.Fatal("a program with a wrong settings block must be returned, invalid")
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			report, err := prog.Apply(context.Background(), testOptions())
			var se *SettingsError
			if !errors.As(err, &se) || se.Block != "vault" {
				t.Fatalf("Apply: %v is not a *SettingsError for the vault block", err)
			}
			check("Apply", se.Diagnostics)
			if len(StepErrors(err)) != 0 {
				t.Errorf("a settings block is not a step: StepErrors %v", StepErrors(err))
			}
			if len(report.Steps) != 1 || report.Steps[0].Outcome != NotRun {
				t.Errorf("report %+v, want rec.a not run", report.Steps)
			}
			if want := (&StepError{Diagnostics: se.Diagnostics}).Error(); se.Error() != want {
				t.Errorf("Error() = %q, want %q, as a step's", se.Error(), want)
			}
			check("Preview", prog.Preview(context.Background(), testOptions()).Diagnostics)
		})
	}
}

// TestSettingsBlockNoKindUses: a settings block that no kind uses is an
// error, not ignored.
func TestSettingsBlockNoKindUses(t *testing.T) {
	_, diags := loadSource(t, settingsPlan, nil, steps.Registry{"rec": &record{}})
	if len(diags) != 1 || diags[0].Summary != "Unsupported block type" || diags[0].Subject.Start.Line != 4 {
		t.Fatalf("want one error at the vault block (line 4), got %v", diags)
	}
}
