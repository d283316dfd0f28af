package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// renewal is a fake step kind with a condition (due = true/false; unset:
// no condition) and a preview: it would replace something, knows its
// name before the run but not its serial, and has a sensitive key.
type renewal struct {
	mu      sync.Mutex
	applied []string
	asked   []string // steps whose Due was called
}

var (
	_ steps.Conditional = (*renewal)(nil)
	_ steps.Planner     = (*renewal)(nil)
)

func (r *renewal) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"name": &hcldec.AttrSpec{Name: "name", Type: cty.String},
		"due":  &hcldec.AttrSpec{Name: "due", Type: cty.Bool},
	}
}

func (r *renewal) Outputs() map[string]steps.Output {
	return map[string]steps.Output{
		"name":   {Type: cty.String},
		"serial": {Type: cty.String},
		"key":    {Type: cty.String, Sensitive: true},
	}
}

func (r *renewal) Validate(steps.Config) error { return nil }

func (r *renewal) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	r.mu.Lock()
	r.applied = append(r.applied, env.Log.Name())
	r.mu.Unlock()
	return cty.ObjectVal(map[string]cty.Value{
		"name": cty.StringVal(cfg.String("name")), "serial": cty.StringVal("01:02"), "key": cty.StringVal("k"),
	}), nil
}

func (r *renewal) Due(_ context.Context, env *steps.Env, cfg steps.Config) (steps.Condition, error) {
	r.mu.Lock()
	r.asked = append(r.asked, env.Log.Name())
	r.mu.Unlock()
	if !cfg.Set("due") {
		return steps.Condition{}, nil
	}
	due, _ := cfg.Bool("due", true)
	if due {
		return steps.Condition{Set: true, Due: true, Reason: "5h left"}, nil
	}
	return steps.Condition{Set: true, Reason: "612h left"}, nil
}

func (r *renewal) Plan(_ context.Context, _ *steps.Env, cfg steps.Config) (steps.Preview, error) {
	return steps.Preview{
		Action: steps.Replace,
		Now:    []steps.Fact{{Name: "current", Value: "serial 00:01"}},
		Outputs: cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal(cfg.String("name")), "serial": cty.UnknownVal(cty.String), "key": cty.UnknownVal(cty.String),
		}),
	}, nil
}

func previewStep(t *testing.T, pv *Preview, addr string) StepPreview {
	t.Helper()
	for _, s := range pv.Steps {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("no step %s in the preview", addr)
	return StepPreview{}
}

func argument(t *testing.T, s StepPreview, name string) Argument {
	t.Helper()
	for _, a := range s.Arguments {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("%s has no argument %s: %#v", s.Addr, name, s.Arguments)
	return Argument{}
}

func TestPreviewRunsNothingAndShowsWhatIsUnknown(t *testing.T) {
	rn, rec := &renewal{}, &record{}
	prog := compileWith(t, `
variable "pasted" {
  type = string
}
cert "a" {
  name = "vault"
  due  = true
}
rec "named" {
  input = "${cert.a.name}.pem"
}
rec "serial" {
  input = "serial ${cert.a.serial}"
}
rec "key" {
  input = cert.a.key
  mode  = "0600"
}
rec "pasted" {
  input = var.pasted
}
`, map[string]string{"pasted": generatedKeyPEM(t)}, steps.Registry{"cert": rn, "rec": rec})
	pv := prog.Preview(context.Background(), testOptions())
	if len(pv.Diagnostics) != 0 {
		t.Fatalf("diagnostics: %s", pv.Diagnostics.Error())
	}
	if len(rn.applied)+len(rec.applied) != 0 {
		t.Fatalf("the preview applied steps: %v %v", rn.applied, rec.applied)
	}
	a := previewStep(t, pv, "cert.a")
	if a.Action != steps.Replace || a.Reason != "5h left" || len(a.Now) != 1 {
		t.Errorf("cert.a: action %q, reason %q, now %v", a.Action, a.Reason, a.Now)
	}
	// A planned output that is known reaches the steps that read it.
	if got := argument(t, previewStep(t, pv, "rec.named"), "input"); got.Value != cty.StringVal("vault.pem") {
		t.Errorf("rec.named input = %#v, want \"vault.pem\"", got.Value)
	}
	got := argument(t, previewStep(t, pv, "rec.serial"), "input")
	if got.Value != cty.NilVal || strings.Join(got.KnownAfter, ",") != "cert" || got.Sensitive {
		t.Errorf("rec.serial input = %#v, want known after cert", got)
	}
	for _, addr := range []string{"rec.key", "rec.pasted"} {
		got = argument(t, previewStep(t, pv, addr), "input")
		if !got.Sensitive || got.Value != cty.NilVal {
			t.Errorf("%s input = %#v, want sensitive", addr, got)
		}
	}
	if !pv.Changes() {
		t.Error("a preview with a replace reports no changes")
	}
}

// skipPlan has a step that is not due, one that only depends on it, one
// after that, and one of its own.
const skipPlan = `
cert "a" {
  name = "admin"
  due  = false
}
rec "b" {
  input = cert.a.name
}
rec "c" {
  depends_on = [rec.b]
  input      = "c"
}
rec "d" {
  input = "d"
}
cert "e" {
  depends_on = [rec.b]
  name       = "server"
  due        = true
}
`

func TestSkippedStepsAndTheirDependents(t *testing.T) {
	for i := range 10 {
		rn, rec := &renewal{}, &record{}
		prog := compileWith(t, skipPlan, nil, steps.Registry{"cert": rn, "rec": rec})

		pv := prog.Preview(context.Background(), testOptions())
		for addr, skipped := range map[string]bool{"cert.a": true, "rec.b": true, "rec.c": true, "rec.d": false, "cert.e": false} {
			s := previewStep(t, pv, addr)
			if s.Skipped != skipped || (skipped && s.Action != steps.NoChange) {
				t.Errorf("preview %s: skipped %v, action %q", addr, s.Skipped, s.Action)
			}
		}
		if r := previewStep(t, pv, "cert.a").Reason; r != "612h left" {
			t.Errorf("cert.a reason %q", r)
		}

		j, err := journal.Create(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions()
		opts.Journal, opts.Parallelism = j, 1+i%3
		report, err := prog.Apply(context.Background(), opts)
		j.Close()
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		want := map[string]Outcome{"cert.a": Skipped, "rec.b": Skipped, "rec.c": Skipped, "rec.d": Succeeded, "cert.e": Succeeded}
		for addr, o := range outcomes(report) {
			if want[addr] != o {
				t.Errorf("run %s: %s, want %s", addr, o, want[addr])
			}
		}
		// A condition of its own decides for cert.e, although all it
		// depends on was skipped.
		if strings.Join(rec.applied, ",") != "rec.d" || strings.Join(rn.applied, ",") != "cert.e" {
			t.Errorf("applied %v and %v, want rec.d and cert.e", rec.applied, rn.applied)
		}
		skipped := map[string]string{}
		for _, r := range readJournal(t, j.Path()) {
			switch r.Type {
			case journal.StepSkipped:
				skipped[r.Step] = r.Reason
			case journal.StepStarted:
				if r.Step != "rec.d" && r.Step != "cert.e" {
					t.Errorf("%s started", r.Step)
				}
			}
		}
		if skipped["cert.a"] != "612h left" || skipped["rec.b"] == "" || skipped["rec.c"] == "" || len(skipped) != 3 {
			t.Errorf("journaled skips: %v", skipped)
		}
	}
}

func TestStepReadingASkippedStepIsSkipped(t *testing.T) {
	src := skipPlan + `
rec "mixed" {
  input = "${cert.a.name}-${rec.d.output}"
}
cert "due_but_reads" {
  depends_on = [rec.d]
  name       = cert.a.name
  due        = true
}
`
	want := "it reads the outputs of cert.a, which was skipped (612h left)"
	rn, rec := &renewal{}, &record{}
	prog := compileWith(t, src, nil, steps.Registry{"cert": rn, "rec": rec})
	pv := prog.Preview(context.Background(), testOptions())
	for _, addr := range []string{"rec.mixed", "cert.due_but_reads"} {
		if s := previewStep(t, pv, addr); !s.Skipped || s.Reason != want {
			t.Errorf("preview %s: skipped %v, reason %q", addr, s.Skipped, s.Reason)
		}
	}
	report, err := prog.Apply(context.Background(), testOptions())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, r := range report.Steps {
		if (r.Addr == "rec.mixed" || r.Addr == "cert.due_but_reads") && (r.Outcome != Skipped || r.Reason != want) {
			t.Errorf("run %s: %s (%s)", r.Addr, r.Outcome, r.Reason)
		}
	}
	if strings.Contains(strings.Join(rec.applied, ","), "mixed") {
		t.Errorf("rec.mixed was applied")
	}
}

func TestPreviewNoChangeAfterAChangeIsAChange(t *testing.T) {
	// cert.a would replace something; rec.after's kind is no Planner, but a
	// planner that found everything in place behind it must not say "no
	// change" either.
	rn := &renewal{}
	settled := &settledKind{}
	prog := compileWith(t, `
cert "a" {
  name = "x"
}
settled "after" {
  input = cert.a.name
}
settled "alone" {
  input = "y"
}
`, nil, steps.Registry{"cert": rn, "settled": settled})
	pv := prog.Preview(context.Background(), testOptions())
	if s := previewStep(t, pv, "settled.after"); s.Action != steps.Replace || !strings.Contains(s.Reason, "after cert.a") {
		t.Errorf("settled.after: %q, %q", s.Action, s.Reason)
	}
	if s := previewStep(t, pv, "settled.alone"); s.Action != steps.NoChange {
		t.Errorf("settled.alone: %q", s.Action)
	}
}

// settledKind previews as "no change" always.
type settledKind struct{ sink }

func (settledKind) Plan(context.Context, *steps.Env, steps.Config) (steps.Preview, error) {
	return steps.Preview{Action: steps.NoChange, Reason: "in place"}, nil
}

// looker is a fake kind that only reads and has no preview of its own. It
// refuses the input "bad".
type looker struct{ sink }

func (looker) ReadOnly() {}

func (looker) Validate(cfg steps.Config) error {
	if cfg.Known("input") && cfg.String("input") == "bad" {
		return &steps.AttrError{Path: "input", Err: errors.New("bad input")}
	}
	return nil
}

// TestPreviewReadOnlyIsACheck: a step of a kind that only reads is
// previewed as a check, even when its kind has no preview of its own or its
// arguments are wrong; a step of a kind that may change something and has
// no preview is previewed as a replace.
func TestPreviewReadOnlyIsACheck(t *testing.T) {
	tests := []struct {
		name, input string
		wantErrors  bool
	}{
		{"no preview", `"fine"`, false},
		{"invalid arguments", `"bad"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, diags := loadSource(t, `
look "a" {
  input = `+tt.input+`
}
rec "b" {
  input = "x"
}
`, nil, steps.Registry{"look": looker{}, "rec": &record{}})
			if prog == nil || diags.HasErrors() != tt.wantErrors {
				t.Fatalf("Load: program %v, diagnostics %s", prog != nil, diags.Error())
			}
			pv := prog.Preview(context.Background(), testOptions())
			if s := previewStep(t, pv, "look.a"); s.Action != steps.Check {
				t.Errorf("look.a: %q, want %q", s.Action, steps.Check)
			}
			if s := previewStep(t, pv, "rec.b"); s.Action != steps.Replace {
				t.Errorf("rec.b: %q, want %q", s.Action, steps.Replace)
			}
		})
	}
}

func TestResumeKeepsTheSkips(t *testing.T) {
	src := skipPlan + `
rec "fails" {
  depends_on = [rec.d]
  fail       = "boom"
}
`
	rn, rec := &renewal{}, &record{}
	prog := compileWith(t, src, nil, steps.Registry{"cert": rn, "rec": rec})
	dir := t.TempDir()
	j, err := journal.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Journal = j
	if _, err := prog.Apply(context.Background(), opts); err == nil {
		t.Fatal("the run should fail")
	}
	j.Close()

	run, err := LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s := run.Steps["cert.a"]; s.State != StateSkipped || s.Skipped != "612h left" {
		t.Fatalf("cert.a after the run: %#v", s)
	}
	rn.asked = nil
	rec2 := &record{}
	prog = compileWith(t, strings.Replace(src, `fail       = "boom"`, `input = "fixed"`, 1), nil, steps.Registry{"cert": rn, "rec": rec2})
	j, err = ReopenJournal(run)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	opts.Journal, opts.Force = j, true
	report, err := prog.Resume(context.Background(), run, opts)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	for _, d := range report.Decisions {
		if d.Addr == "cert.a" && (d.Action != ActionSkip || d.Reason != "skipped: 612h left") {
			t.Errorf("cert.a decision %#v", d)
		}
	}
	if o := outcomes(report)["rec.c"]; o != Skipped {
		t.Errorf("rec.c on resume: %s", o)
	}
	for _, asked := range rn.asked {
		if asked == "cert.a" {
			t.Error("the resume asked cert.a again whether it is due; the run had decided")
		}
	}
	if strings.Join(rec2.applied, ",") != "rec.fails" {
		t.Errorf("the resume applied %v, want only rec.fails", rec2.applied)
	}
}

func TestInvalidProgramIsPreviewedNeverRun(t *testing.T) {
	prog, rec, diags := compileSource(t, `
rec "a" {
  input = "a"
  mode  = "bad"
}
rec "b" {
  input = rec.a.output
}
`, nil)
	if !diags.HasErrors() || prog == nil || prog.Valid() {
		t.Fatalf("Compile: program %v, diagnostics %v", prog, diags)
	}
	pv := prog.Preview(context.Background(), testOptions())
	if len(pv.Diagnostics) != 1 || pv.Diagnostics[0].Subject == nil || pv.Diagnostics[0].Subject.Start.Line != 4 {
		t.Errorf("preview diagnostics: %v", pv.Diagnostics)
	}
	if len(pv.Steps) != 2 {
		t.Errorf("previewed %d steps, want both", len(pv.Steps))
	}
	if _, err := prog.Apply(context.Background(), testOptions()); err != errInvalidProgram {
		t.Errorf("Apply of an invalid program: %v", err)
	}
	if _, err := prog.Resume(context.Background(), &Run{}, testOptions()); err != errInvalidProgram {
		t.Errorf("Resume of an invalid program: %v", err)
	}
	if len(rec.applied) != 0 {
		t.Errorf("applied %v", rec.applied)
	}

	// A broken structure gives no program at all.
	if prog, _, diags := compileSource(t, `rec "a" { input = rec.nope.output }`, nil); prog != nil || !diags.HasErrors() {
		t.Errorf("a reference to nothing compiled to %v", prog)
	}
}

// generatedKeyPEM is a fresh EC private key in PEM, as a plan might read
// one with file().
func generatedKeyPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// holding is the renewal kind whose steps look after a certificate file
// named by their name argument (steps.CertificateHolder); an unknown name
// names none.
type holding struct{ renewal }

func (h *holding) Certificates(_ context.Context, _ *steps.Env, cfg steps.Config) []steps.CertificateFile {
	if !cfg.Known("name") {
		return nil
	}
	return []steps.CertificateFile{{Path: cfg.String("name") + ".crt", Err: errors.New("not read")}}
}

// TestPreviewCertificates: the certificate files a step looks after are in
// its preview whether it is due or not, since a step that is not due is
// what keeps the certificates in place; the engine adds none of its own.
func TestPreviewCertificates(t *testing.T) {
	h, rec := &holding{}, &record{}
	prog := compileWith(t, `
cert "due" {
  name = "server"
  due  = true
}
cert "not_due" {
  name = "admin"
  due  = false
}
cert "later" {
  name = cert.due.serial
}
rec "other" {
  input = "y"
}
`, nil, steps.Registry{"cert": h, "rec": rec})
	// A preview that is not asked for them reads no certificate file.
	for _, s := range prog.Preview(context.Background(), testOptions()).Steps {
		if len(s.Certificates) > 0 {
			t.Errorf("%s: certificates read although Options.Certificates is not set", s.Addr)
		}
	}
	opts := testOptions()
	opts.Certificates = true
	pv := prog.Preview(context.Background(), opts)
	for _, c := range []struct {
		addr string
		want string
	}{
		{"cert.due", "server.crt"},
		{"cert.not_due", "admin.crt"},
		{"cert.later", ""},
		{"rec.other", ""},
	} {
		s := previewStep(t, pv, c.addr)
		var got []string
		for _, f := range s.Certificates {
			got = append(got, f.Path)
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%s: certificates %q, want %q", c.addr, got, c.want)
		}
	}
	if !previewStep(t, pv, "cert.not_due").Skipped {
		t.Error("cert.not_due is not skipped: the test no longer shows what it is about")
	}
}

// fieldsKind previews a change of one field.
type fieldsKind struct{ sink }

func (fieldsKind) Plan(context.Context, *steps.Env, steps.Config) (steps.Preview, error) {
	return steps.Preview{Action: steps.Replace, Fields: []steps.FieldChange{
		{Field: "token_ttl", Action: steps.Replace, Now: "1800", Planned: `"1h"`},
	}}, nil
}

// TestPreviewCarriesFields: what a kind says it would change, field by
// field, reaches the preview as it is.
func TestPreviewCarriesFields(t *testing.T) {
	prog := compileWith(t, `
fields "a" {
  input = "x"
}
`, nil, steps.Registry{"fields": fieldsKind{}})
	pv := prog.Preview(context.Background(), testOptions())
	want := []steps.FieldChange{{Field: "token_ttl", Action: steps.Replace, Now: "1800", Planned: `"1h"`}}
	if s := previewStep(t, pv, "fields.a"); !reflect.DeepEqual(s.Fields, want) {
		t.Errorf("fields.a: %#v, want %#v", s.Fields, want)
	}
}
