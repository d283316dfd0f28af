package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// record is a fake step kind for engine tests: it echoes its input, can be
// told to fail, and records what it saw.
type record struct {
	mu        sync.Mutex
	applied   []string
	sensitive map[string]bool // step name -> was its input sensitive
	validated []string
}

var _ steps.Step = (*record)(nil)

func (r *record) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"input": &hcldec.AttrSpec{Name: "input", Type: cty.String},
		"fail":  &hcldec.AttrSpec{Name: "fail", Type: cty.String},
		"mode":  &hcldec.AttrSpec{Name: "mode", Type: cty.String},
	}
}

func (r *record) Outputs() map[string]steps.Output {
	return map[string]steps.Output{
		"output": {Type: cty.String},
		"secret": {Type: cty.String, Sensitive: true},
	}
}

func (r *record) Validate(cfg steps.Config) error {
	r.mu.Lock()
	r.validated = append(r.validated, cfg.String("input"))
	r.mu.Unlock()
	if cfg.Known("mode") && cfg.String("mode") == "bad" {
		return &steps.AttrError{Path: "mode", Err: errors.New("bad is not a mode")}
	}
	return nil
}

func (r *record) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := env.Log.Name()
	r.applied = append(r.applied, name)
	if r.sensitive == nil {
		r.sensitive = map[string]bool{}
	}
	r.sensitive[name] = cfg.Sensitive("input")
	if msg := cfg.String("fail"); msg != "" {
		return cty.NilVal, errors.New(msg)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"output": cty.StringVal("out:" + cfg.String("input")),
		"secret": cty.StringVal("secret-of-" + cfg.String("input")),
	}), nil
}

// compileSource compiles a plan held in a string, with the fake kind "rec"
// and, as a second kind, "other".
func compileSource(t *testing.T, src string, vars map[string]string) (*Program, *record, hcl.Diagnostics) {
	t.Helper()
	rec := &record{}
	prog, diags := loadSource(t, src, vars, steps.Registry{"rec": rec, "other": rec})
	return prog, rec, diags
}

// loadSource compiles a plan held in a string with the given step kinds
// and -var values, through Load as the commands do.
func loadSource(t testing.TB, src string, vars map[string]string, kinds steps.Registry) (*Program, hcl.Diagnostics) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plan.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var flags []string
	for k, v := range vars {
		flags = append(flags, k+"="+v)
	}
	l, diags := Load(plans.NewParser(), Sources{Plan: path, Vars: flags}, kinds)
	return l.Program, diags
}

func mustCompile(t *testing.T, src string) (*Program, *record) {
	t.Helper()
	prog, rec, diags := compileSource(t, src, nil)
	if diags.HasErrors() {
		t.Fatalf("unexpected diagnostics: %s", diags.Error())
	}
	return prog, rec
}

func TestCompileOrdersByReferencesAndDependsOn(t *testing.T) {
	prog, _ := mustCompile(t, `
rec "last" {
  input = rec.middle.output
}
rec "middle" {
  depends_on = [other.first]
  input      = "m"
}
other "first" {
  input = "f"
}
rec "free" {}
`)
	want := []string{"other.first", "rec.middle", "rec.last", "rec.free"}
	// other.first and rec.free are both ready at the start; source order
	// decides: rec.free comes after in the file but other.first unblocks
	// rec.middle, which is declared before rec.free.
	got := prog.Steps()
	pos := map[string]int{}
	for i, a := range got {
		pos[a] = i
	}
	if len(got) != 4 || pos["other.first"] > pos["rec.middle"] || pos["rec.middle"] > pos["rec.last"] {
		t.Fatalf("Steps() = %v; want dependencies first, like %v", got, want)
	}
	if deps := prog.DependsOn("rec.last"); !reflect.DeepEqual(deps, []string{"rec.middle"}) {
		t.Errorf("DependsOn(rec.last) = %v", deps)
	}
	if deps := prog.DependsOn("rec.middle"); !reflect.DeepEqual(deps, []string{"other.first"}) {
		t.Errorf("DependsOn(rec.middle) = %v", deps)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		summary string // of the first error
		line    int    // where it points
		detail  string // a substring of its detail
	}{
		{"cycle of two", "rec \"a\" {\n  input = rec.b.output\n}\nrec \"b\" {\n  input = rec.a.output\n}\n",
			"Dependency cycle between steps: rec.a, rec.b", 1, "rec.b (declared at"},
		{"self reference", "rec \"a\" {\n  input = rec.a.output\n}\n",
			"Dependency cycle between steps: rec.a", 1, "rec.a"},
		{"cycle through depends_on", "rec \"a\" {\n  depends_on = [rec.c]\n}\nrec \"b\" {\n  input = rec.a.output\n}\nrec \"c\" {\n  input = rec.b.output\n}\n",
			"Dependency cycle between steps: rec.a, rec.b, rec.c", 1, "rec.c (declared at"},
		{"undeclared step", "rec \"a\" {\n  input = rec.nope.output\n}\n",
			"Reference to undeclared step", 2, "There is no step rec.nope"},
		{"undeclared step in depends_on", "rec \"a\" {\n  depends_on = [other.nope]\n}\n",
			"Reference to undeclared step", 2, "no other steps"},
		{"undeclared variable", "rec \"a\" {\n  input = var.nope\n}\n",
			"Reference to undeclared variable", 2, `variable "nope"`},
		{"unknown root", "rec \"a\" {\n  input = nope.thing\n}\n",
			"Unknown reference", 2, `"nope" is not something`},
		{"unknown output", "rec \"a\" {}\nrec \"b\" {\n  input = rec.a.nope\n}\n",
			"Unsupported attribute", 3, "nope"},
		{"local refers to a step", "locals {\n  x = rec.a.output\n}\nrec \"a\" {}\n",
			"Invalid reference", 2, "Only var.* and local.*"},
		{"cycle of locals", "locals {\n  x = local.y\n  y = local.x\n}\n",
			"Cycle between local values", 2, "local.x, local.y"},
		{"kind validation points at the argument", "rec \"a\" {\n  input = \"x\"\n  mode  = \"bad\"\n}\n",
			"Invalid step rec.a", 3, "mode: bad is not a mode"},
		{"unsupported argument", "rec \"a\" {\n  inptu = \"x\"\n}\n",
			"Unsupported argument", 2, `Did you mean "input"?`},
		{"wrong type", "rec \"a\" {\n  input = [\"x\"]\n}\n",
			"Incorrect attribute value type", 2, "string required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, diags := compileSource(t, tt.src, nil)
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			d := diags[0]
			if d.Summary != tt.summary {
				t.Errorf("summary %q, want %q (all: %s)", d.Summary, tt.summary, diags.Error())
			}
			if d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Errorf("subject %v, want line %d", d.Subject, tt.line)
			}
			if !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("detail %q lacks %q", d.Detail, tt.detail)
			}
		})
	}
}

func TestValidateSeesUnknownOutputsAndKnownValues(t *testing.T) {
	_, rec := mustCompile(t, `
variable "name" {
  default = "v"
}
locals {
  prefix = "p-${var.name}"
}
rec "a" {
  input = local.prefix
}
rec "b" {
  input = rec.a.output
}
`)
	// rec.b's input is unknown at validation: Config.String gives "".
	if want := []string{"p-v", ""}; !reflect.DeepEqual(rec.validated, want) {
		t.Errorf("validated inputs %#v, want %#v", rec.validated, want)
	}
}

func TestApplyPassesOutputsAndSensitivity(t *testing.T) {
	prog, rec := mustCompile(t, `
rec "a" {
  input = "x"
}
rec "b" {
  input = rec.a.output
}
rec "c" {
  input = "${rec.a.secret}-suffix"
}
`)
	obs := &recordingObserver{}
	report, err := prog.Apply(context.Background(), Options{Observer: obs, Log: testLogger(), Parallelism: 1})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if report.Count(Succeeded) != 3 {
		t.Errorf("report %+v", report.Steps)
	}
	if want := []string{"rec.a", "rec.b", "rec.c"}; !reflect.DeepEqual(rec.applied, want) {
		t.Errorf("applied %v, want %v", rec.applied, want)
	}
	if !reflect.DeepEqual(rec.sensitive, map[string]bool{"rec.a": false, "rec.b": false, "rec.c": true}) {
		t.Errorf("input sensitivity %v: only rec.c's input comes from a sensitive output", rec.sensitive)
	}
	if want := "start rec.a;end rec.a ok;start rec.b;end rec.b ok;start rec.c;end rec.c ok"; obs.String() != want {
		t.Errorf("events %q, want %q", obs.String(), want)
	}
}

func TestApplyStopsAtFirstFailure(t *testing.T) {
	prog, rec := mustCompile(t, `
rec "a" {
  input = "x"
}
rec "b" {
  depends_on = [rec.a]
  fail       = "boom"
}
rec "c" {
  input = rec.b.output
}
rec "d" {
  depends_on = [rec.b]
}
`)
	report, err := prog.Apply(context.Background(), Options{Log: testLogger()})
	var stepErr *StepError
	if !errors.As(err, &stepErr) {
		t.Fatalf("error %v is not a *StepError", err)
	}
	if stepErr.Addr != "rec.b" || !strings.Contains(stepErr.Error(), "boom") {
		t.Errorf("StepError %q for %s", stepErr.Error(), stepErr.Addr)
	}
	d := stepErr.Diagnostics[0]
	if d.Subject == nil || d.Subject.Start.Line != 5 {
		t.Errorf("failure should point at rec.b's declaration (line 5), got %v", d.Subject)
	}
	if want := []string{"rec.a", "rec.b"}; !reflect.DeepEqual(rec.applied, want) {
		t.Errorf("applied %v, want %v", rec.applied, want)
	}
	got := map[string]Outcome{}
	for _, s := range report.Steps {
		got[s.Addr] = s.Outcome
	}
	want := map[string]Outcome{"rec.a": Succeeded, "rec.b": Failed, "rec.c": NotRun, "rec.d": NotRun}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
	if report.Count(Failed) != 1 {
		t.Error("a skipped step must not be reported as a second failure")
	}
}

// testLogger discards its output but keeps names, which record uses to tell
// steps apart.
func testLogger() hclog.Logger { return hclog.New(&hclog.LoggerOptions{Output: io.Discard}) }

type recordingObserver struct {
	mu     sync.Mutex
	events []string
}

func (o *recordingObserver) StepStarted(addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "start "+addr)
}

func (o *recordingObserver) StepFinished(r StepResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "end "+r.Addr+" "+string(r.Outcome))
}

func (o *recordingObserver) String() string { return strings.Join(o.events, ";") }

// notingRecord is record with a note for the progress line (steps.Noter).
type notingRecord struct{ *record }

func (notingRecord) Note(outputs cty.Value) string {
	return "noted " + outputs.GetAttr("output").AsString()
}

// TestApplyNotes: the note of a kind that gives one reaches the observer
// with its step's success; other kinds' steps have none.
func TestApplyNotes(t *testing.T) {
	rec := &record{}
	prog, diags := loadSource(t, `
noting "a" {
  input = "x"
}
rec "b" {
  input = noting.a.output
}
`, nil, steps.Registry{"rec": rec, "noting": notingRecord{rec}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	report, err := prog.Apply(context.Background(), Options{Log: testLogger(), Parallelism: 1})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	notes := map[string]string{}
	for _, s := range report.Steps {
		notes[s.Addr] = s.Note
	}
	if want := map[string]string{"noting.a": "noted out:x", "rec.b": ""}; !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %v, want %v", notes, want)
	}
}
