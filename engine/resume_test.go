package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// world is the shared state behind the fake kinds of the resume tests. Like
// a certificate issuance, every application of a step gives a new result:
// its output is its input (unless that is sensitive) and a count of the
// step's applications ("k#2"), and its secret is derived from that.
type world struct {
	mu        sync.Mutex
	applied   []string
	inputs    map[string][]string // per step, the input of each application
	sensitive map[string]bool     // per step, whether its last input was sensitive
	fail      map[string]string   // steps to fail, with the message

	// For resumerKind.
	inPlace map[string]bool // Done's answer per step
	doneErr error
	checks  map[string][]map[string]string // per step, the intents Done saw

	// For supersederKind.
	superseded []supersession
}

type supersession struct {
	addr     string
	input    string // the step's input, as configured now
	previous cty.Value
}

func newWorld() *world {
	return &world{
		inputs: map[string][]string{}, sensitive: map[string]bool{}, fail: map[string]string{},
		inPlace: map[string]bool{}, checks: map[string][]map[string]string{},
	}
}

// kinds returns the fake kinds: plain only steps.Step, chk a steps.Resumer,
// sup a steps.Superseder, both the two.
func (w *world) kinds() steps.Registry {
	return steps.Registry{"plain": plainKind{w}, "chk": resumerKind{w}, "sup": supersederKind{w}, "both": bothKind{w}}
}

func (w *world) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{"input": &hcldec.AttrSpec{Name: "input", Type: cty.String}}
}

func (w *world) Outputs() map[string]steps.Output {
	return map[string]steps.Output{
		"output": {Type: cty.String},
		"secret": {Type: cty.String, Sensitive: true},
	}
}

func (w *world) Validate(steps.Config) error { return nil }

func (w *world) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	addr, input := env.Log.Name(), cfg.String("input")
	w.applied = append(w.applied, addr)
	w.inputs[addr] = append(w.inputs[addr], input)
	w.sensitive[addr] = cfg.Sensitive("input")
	if msg := w.fail[addr]; msg != "" {
		return cty.NilVal, errors.New(msg)
	}
	if w.sensitive[addr] {
		// Like a kind that writes a key: what it reports of a secret is
		// not the secret.
		input = "(sensitive)"
	}
	return result(fmt.Sprintf("%s#%d", input, len(w.inputs[addr]))), nil
}

func result(output string) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"output": cty.StringVal(output),
		"secret": cty.StringVal("secret-of-" + output),
	})
}

// intent is what the Resumer kinds journal before Apply: the input, unless
// it is sensitive (an intent never holds a secret).
func (w *world) intent(cfg steps.Config) (map[string]string, error) {
	if cfg.Sensitive("input") {
		return map[string]string{"input": "(sensitive)"}, nil
	}
	return map[string]string{"input": cfg.String("input")}, nil
}

func (w *world) done(_ context.Context, env *steps.Env, intent map[string]string) (cty.Value, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	addr := env.Log.Name()
	w.checks[addr] = append(w.checks[addr], intent)
	if w.doneErr != nil {
		return cty.NilVal, false, w.doneErr
	}
	if !w.inPlace[addr] {
		return cty.NilVal, false, nil
	}
	return result(intent["input"] + "#checked"), true, nil
}

func (w *world) supersede(_ context.Context, env *steps.Env, cfg steps.Config, previous cty.Value) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.superseded = append(w.superseded, supersession{addr: env.Log.Name(), input: cfg.String("input"), previous: previous})
	return "replaced " + previous.GetAttr("output").AsString(), nil
}

func (w *world) appliedSince(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.applied[n:]...)
}

type plainKind struct{ *world }

type resumerKind struct{ *world }

func (k resumerKind) Intent(_ context.Context, _ *steps.Env, cfg steps.Config) (map[string]string, error) {
	return k.world.intent(cfg)
}
func (k resumerKind) Done(ctx context.Context, env *steps.Env, intent map[string]string) (cty.Value, bool, error) {
	return k.world.done(ctx, env, intent)
}

type supersederKind struct{ *world }

func (k supersederKind) Supersede(ctx context.Context, env *steps.Env, cfg steps.Config, previous cty.Value) (string, error) {
	return k.world.supersede(ctx, env, cfg, previous)
}

type bothKind struct{ *world }

func (k bothKind) Intent(_ context.Context, _ *steps.Env, cfg steps.Config) (map[string]string, error) {
	return k.world.intent(cfg)
}
func (k bothKind) Done(ctx context.Context, env *steps.Env, intent map[string]string) (cty.Value, bool, error) {
	return k.world.done(ctx, env, intent)
}
func (k bothKind) Supersede(ctx context.Context, env *steps.Env, cfg steps.Config, previous cty.Value) (string, error) {
	return k.world.supersede(ctx, env, cfg, previous)
}

// The kinds' abilities are the methods of their own type: world's are
// unexported so that embedding it does not lend them to every kind.
var (
	_ steps.Step       = plainKind{}
	_ steps.Resumer    = resumerKind{}
	_ steps.Superseder = supersederKind{}
	_ steps.Resumer    = bothKind{}
	_ steps.Superseder = bothKind{}
)

// applyJournaled runs Apply with a new journal in the state directory dir.
func applyJournaled(t *testing.T, prog *Program, dir string) error {
	t.Helper()
	j, err := journal.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	opts := testOptions()
	opts.Journal = j
	_, err = prog.Apply(context.Background(), opts)
	return err
}

// loadRun is LoadRun that must find a run.
func loadRun(t *testing.T, dir string) *Run {
	t.Helper()
	run, err := LoadRun(dir)
	if err != nil {
		t.Fatalf("LoadRun: %v", err)
	}
	if run == nil {
		t.Fatal("LoadRun found no run")
	}
	return run
}

// resume loads the state directory's last run and resumes it with its
// journal reopened.
func resume(t *testing.T, prog *Program, dir string, force bool) (*Report, error) {
	t.Helper()
	run := loadRun(t, dir)
	j, err := ReopenJournal(run)
	if err != nil {
		t.Fatalf("ReopenJournal: %v", err)
	}
	defer j.Close()
	opts := testOptions()
	opts.Journal, opts.Force = j, force
	return prog.Resume(context.Background(), run, opts)
}

// writeJournal writes records as a new run's journal in dir, as a run
// killed after the last of them would have left it.
func writeJournal(t *testing.T, dir string, recs []journal.Record) {
	t.Helper()
	j, err := journal.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
}

// journalUpTo returns the records of the state directory's last journal up
// to and including the first one for which stop is true.
func journalUpTo(t *testing.T, dir string, stop func(journal.Record) bool) []journal.Record {
	t.Helper()
	path, err := journal.Last(dir)
	if err != nil {
		t.Fatal(err)
	}
	recs := readJournal(t, path)
	for i, r := range recs {
		if stop(r) {
			return recs[:i+1]
		}
	}
	t.Fatalf("no record to stop at in %v", recordTypes(recs))
	return nil
}

func isRecord(typ, step string) func(journal.Record) bool {
	return func(r journal.Record) bool { return r.Type == typ && r.Step == step }
}

// lastJournal returns the records of the state directory's last journal.
func lastJournal(t *testing.T, dir string) []journal.Record {
	t.Helper()
	path, err := journal.Last(dir)
	if err != nil || path == "" {
		t.Fatalf("Last: %q, %v", path, err)
	}
	return readJournal(t, path)
}

// sinceResume returns the records after the last run_resumed one.
func sinceResume(t *testing.T, recs []journal.Record) []journal.Record {
	t.Helper()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Type == journal.RunResumed {
			return recs[i+1:]
		}
	}
	t.Fatalf("no run_resumed record in %v", recordTypes(recs))
	return nil
}

func decisions(r *Report) map[string]string {
	out := map[string]string{}
	for _, d := range r.Decisions {
		out[d.Addr] = d.Action
	}
	return out
}

func reasonOf(r *Report, addr string) string {
	for _, d := range r.Decisions {
		if d.Addr == addr {
			return d.Reason
		}
	}
	return ""
}

// checkFinished checks that LoadRun sees the run as finished, every step
// succeeded.
func checkFinished(t *testing.T, dir string, prog *Program) *Run {
	t.Helper()
	run := loadRun(t, dir)
	if run.Unfinished() || run.Status != journal.StatusSucceeded {
		t.Errorf("after the resume: status %q, unfinished %v", run.Status, run.Unfinished())
	}
	for _, addr := range prog.Steps() {
		if s := run.Steps[addr]; s == nil || s.State != StateSucceeded {
			t.Errorf("after the resume %s is %+v, want succeeded", addr, s)
		}
	}
	if run.Resumes < 1 {
		t.Errorf("Resumes = %d", run.Resumes)
	}
	return run
}

// checkNoSecrets checks that no sensitive output reached the journal.
func checkNoSecrets(t *testing.T, dir string) {
	t.Helper()
	path, err := journal.Last(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("secret-of-")) {
		t.Errorf("a sensitive output reached the journal:\n%s", b)
	}
}

func TestResumeOfFinishedRunRunsNothing(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
sup "key" {
  input = "k"
}
plain "cert" {
  input = sup.key.secret
}
plain "pub" {
  input = sup.key.output
}
`, nil, w.kinds())
	dir := t.TempDir()
	if err := applyJournaled(t, prog, dir); err != nil {
		t.Fatal(err)
	}
	if run := loadRun(t, dir); run.Unfinished() {
		t.Fatal("a run that succeeded is unfinished")
	}
	applied := len(w.applied)

	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := w.appliedSince(applied); len(got) != 0 {
		t.Errorf("Resume applied %v", got)
	}
	if len(report.Steps) != 3 || report.Count(Done) != 3 {
		t.Errorf("report %+v, want every step done", report.Steps)
	}
	for _, d := range report.Decisions {
		if d.Action != ActionSkip || d.Reason != "done" {
			t.Errorf("decision %+v, want skip", d)
		}
	}
	if len(w.superseded) != 0 || len(report.Superseded) != 0 {
		t.Errorf("superseded %v", report.Superseded)
	}
	if got, want := recordTypes(sinceResume(t, lastJournal(t, dir))), []string{"run_finished"}; !reflect.DeepEqual(got, want) {
		t.Errorf("resume journaled %v, want %v", got, want)
	}
	checkFinished(t, dir, prog)
}

func TestResumeRedoesFailedStep(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
plain "a" {
  input = "a"
}
plain "b" {
  input = plain.a.output
}
plain "c" {
  input = plain.b.output
}
plain "d" {
  depends_on = [plain.c]
}
`, nil, w.kinds())
	dir := t.TempDir()
	w.fail["plain.c"] = "vault is down"
	if err := applyJournaled(t, prog, dir); err == nil {
		t.Fatal("Apply succeeded")
	}
	delete(w.fail, "plain.c")
	run := loadRun(t, dir)
	if !run.Unfinished() || run.Status != journal.StatusFailed {
		t.Fatalf("after the failure: status %q, unfinished %v", run.Status, run.Unfinished())
	}
	if s := run.Steps["plain.c"]; s.State != StateFailed || !strings.Contains(s.Error, "vault is down") {
		t.Fatalf("plain.c: %+v", s)
	}
	applied := len(w.applied)

	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got, want := w.appliedSince(applied), []string{"plain.c", "plain.d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Resume applied %v, want %v", got, want)
	}
	// plain.c reads plain.b's output, which Resume restored from the
	// journal.
	if got, want := w.inputs["plain.c"], []string{"a#1#1", "a#1#1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("plain.c's inputs %v, want %v", got, want)
	}
	wantDecisions := map[string]string{"plain.a": ActionSkip, "plain.b": ActionSkip, "plain.c": ActionRedo, "plain.d": ActionRun}
	if got := decisions(report); !reflect.DeepEqual(got, wantDecisions) {
		t.Errorf("decisions %v, want %v", got, wantDecisions)
	}
	if r := reasonOf(report, "plain.c"); !strings.Contains(r, "it failed") || !strings.Contains(r, "vault is down") {
		t.Errorf("plain.c redone because %q", r)
	}
	wantOutcomes := map[string]Outcome{"plain.a": Done, "plain.b": Done, "plain.c": Succeeded, "plain.d": Succeeded}
	if got := outcomes(report); !reflect.DeepEqual(got, wantOutcomes) {
		t.Errorf("outcomes %v, want %v", got, wantOutcomes)
	}
	if report.Steps[0].Outcome != Done || report.Steps[1].Outcome != Done {
		t.Errorf("the report lists done steps first: %+v", report.Steps)
	}
	want := []string{"step_redo plain.c", "step_started plain.c", "step_succeeded plain.c",
		"step_started plain.d", "step_succeeded plain.d", "run_finished"}
	if got := recordTypes(sinceResume(t, lastJournal(t, dir))); !reflect.DeepEqual(got, want) {
		t.Errorf("resume journaled %v, want %v", got, want)
	}
	run = checkFinished(t, dir, prog)
	if s := run.Steps["plain.c"]; s.Attempts != 2 || !strings.Contains(s.Redone, "it failed") || s.Error != "" {
		t.Errorf("plain.c after the resume: %+v", s)
	}
	if s := run.Steps["plain.a"]; s.Attempts != 1 || s.Redone != "" {
		t.Errorf("plain.a after the resume: %+v", s)
	}
	checkNoSecrets(t, dir)
}

func TestResumeChecksInterruptedStep(t *testing.T) {
	tests := []struct {
		name       string
		kind       string // of step b, which was interrupted
		reads      string // which output of b step c reads
		inPlace    bool
		doneErr    error
		wantChecks int
		want       map[string]string // decisions
		wantRedo   string            // part of b's reason, when redone
	}{
		{"effect in place", "chk", "output", true, nil, 1,
			map[string]string{"chk.b": ActionChecked, "plain.c": ActionRun}, ""},
		{"effect not in place", "chk", "output", false, nil, 1,
			map[string]string{"chk.b": ActionRedo, "plain.c": ActionRun}, "never recorded"},
		{"check fails", "chk", "output", true, errors.New("cannot stat"), 1,
			map[string]string{"chk.b": ActionRedo, "plain.c": ActionRun}, "never recorded"},
		{"kind cannot check", "plain", "output", true, nil, 0,
			map[string]string{"plain.b": ActionRedo, "plain.c": ActionRun}, "never recorded"},
		{"in place but its secret is needed", "chk", "secret", true, nil, 1,
			map[string]string{"chk.b": ActionRedo, "plain.c": ActionRun}, "plain.c has yet to run and needs its sensitive outputs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			b := tt.kind + ".b"
			prog := compileWith(t, fmt.Sprintf(`
plain "a" {
  input = "a"
}
%s "b" {
  input = plain.a.output
}
plain "c" {
  input = %s.%s
}
`, tt.kind, b, tt.reads), nil, w.kinds())
			// A run killed while b was under way: its start is journaled,
			// its outcome is not.
			first := t.TempDir()
			if err := applyJournaled(t, prog, first); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeJournal(t, dir, journalUpTo(t, first, isRecord(journal.StepStarted, b)))
			run := loadRun(t, dir)
			if s := run.Steps[b]; s.State != StateStarted || !run.Unfinished() {
				t.Fatalf("%s is %+v; unfinished %v", b, s, run.Unfinished())
			}
			w.inPlace[b], w.doneErr = tt.inPlace, tt.doneErr
			applied := len(w.applied)

			report, err := resume(t, prog, dir, false)
			if err != nil {
				t.Fatalf("Resume: %v", err)
			}
			want := map[string]string{"plain.a": ActionSkip}
			for k, v := range tt.want {
				want[k] = v
			}
			if got := decisions(report); !reflect.DeepEqual(got, want) {
				t.Errorf("decisions %v, want %v", got, want)
			}
			if tt.wantRedo != "" && !strings.Contains(reasonOf(report, b), tt.wantRedo) {
				t.Errorf("%s redone because %q, want %q", b, reasonOf(report, b), tt.wantRedo)
			}
			if got := len(w.checks[b]); got != tt.wantChecks {
				t.Errorf("Done called %d times, want %d", got, tt.wantChecks)
			}
			for _, intent := range w.checks[b] {
				if want := map[string]string{"input": "a#1"}; !reflect.DeepEqual(intent, want) {
					t.Errorf("Done saw intent %v, want the journaled %v", intent, want)
				}
			}
			wantApplied := []string{"plain.c"}
			if want[b] == ActionRedo {
				wantApplied = []string{b, "plain.c"}
			}
			if got := w.appliedSince(applied); !reflect.DeepEqual(got, wantApplied) {
				t.Errorf("Resume applied %v, want %v", got, wantApplied)
			}

			recs := sinceResume(t, lastJournal(t, dir))
			if want[b] == ActionChecked {
				if got := outcomes(report)[b]; got != Done {
					t.Errorf("%s is reported %s, want done", b, got)
				}
				// The check's outputs stand: c reads them.
				if got := w.inputs["plain.c"]; !slices.Equal(got[len(got)-1:], []string{"a#1#checked"}) {
					t.Errorf("plain.c's inputs %v, want the checked output last", got)
				}
				var found bool
				for _, r := range recs {
					if r.Type == journal.StepSucceeded && r.Step == b {
						found = true
						if !r.Checked || string(r.Outputs) != `{"output":"a#1#checked"}` {
							t.Errorf("%s journaled as %+v, want checked with its outputs", b, r)
						}
					}
				}
				if !found {
					t.Errorf("no step_succeeded for %s in %v", b, recordTypes(recs))
				}
				if s := loadRun(t, dir).Steps[b]; !s.Checked || s.State != StateSucceeded || s.Attempts != 1 {
					t.Errorf("%s after the resume: %+v", b, s)
				}
			}
			if want[b] == ActionRedo {
				if got := w.sensitive["plain.c"]; got != (tt.reads == "secret") {
					t.Errorf("plain.c's input sensitive: %v", got)
				}
			}
			checkFinished(t, dir, prog)
			checkNoSecrets(t, dir)
		})
	}
}

func TestResumeRedoesProducerOfNeededSecrets(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
sup "key" {
  input = "k"
}
plain "pub" {
  input = sup.key.output
}
plain "tail" {
  input = plain.pub.output
}
plain "other" {
  input = "o"
}
plain "cert" {
  input      = sup.key.secret
  depends_on = [plain.tail, plain.other]
}
`, nil, w.kinds())
	dir := t.TempDir()
	w.fail["plain.cert"] = "vault is down"
	if err := applyJournaled(t, prog, dir); err == nil {
		t.Fatal("Apply succeeded")
	}
	delete(w.fail, "plain.cert")
	applied := len(w.applied)

	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	wantDecisions := map[string]string{
		"sup.key": ActionRedo, "plain.pub": ActionRedo, "plain.tail": ActionRedo,
		"plain.other": ActionSkip, "plain.cert": ActionRedo,
	}
	if got := decisions(report); !reflect.DeepEqual(got, wantDecisions) {
		t.Errorf("decisions %v, want %v", got, wantDecisions)
	}
	for addr, want := range map[string]string{
		"sup.key":    "plain.cert has yet to run and needs its sensitive outputs",
		"plain.pub":  "it depends on sup.key, which runs again",
		"plain.tail": "it depends on plain.pub, which runs again",
		"plain.cert": "it failed: ",
	} {
		if got := reasonOf(report, addr); !strings.Contains(got, want) {
			t.Errorf("%s redone because %q, want %q", addr, got, want)
		}
	}
	// Everything downstream of the new key runs again, in order; the
	// unrelated step stands.
	if got, want := w.appliedSince(applied), []string{"sup.key", "plain.pub", "plain.tail", "plain.cert"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Resume applied %v, want %v", got, want)
	}
	if got := w.inputs["plain.cert"]; got[len(got)-1] != "secret-of-k#2" || !w.sensitive["plain.cert"] {
		t.Errorf("plain.cert's inputs %v (sensitive %v), want the new key's secret", got, w.sensitive["plain.cert"])
	}
	if got := w.inputs["plain.tail"]; got[len(got)-1] != "k#2#2" {
		t.Errorf("plain.tail's inputs %v, want the new issuance's", got)
	}
	if report.Count(Done) != 1 || report.Count(Succeeded) != 4 {
		t.Errorf("outcomes %v", outcomes(report))
	}

	// Once the run succeeded, the first key is handed to its kind.
	if len(w.superseded) != 1 {
		t.Fatalf("Supersede called %d times, want once: %+v", len(w.superseded), w.superseded)
	}
	s := w.superseded[0]
	if s.addr != "sup.key" || s.input != "k" {
		t.Errorf("Supersede called for %s with input %q", s.addr, s.input)
	}
	if got := s.previous.GetAttr("output"); !got.RawEquals(cty.StringVal("k#1")) {
		t.Errorf("previous output %#v, want %#v", got, cty.StringVal("k#1"))
	}
	if secret := s.previous.GetAttr("secret"); secret.IsKnown() && !secret.IsNull() {
		t.Errorf("previous secret %#v: it was never journaled", secret)
	}
	if want := []string{"sup.key: replaced k#1"}; !reflect.DeepEqual(report.Superseded, want) {
		t.Errorf("report.Superseded %v, want %v", report.Superseded, want)
	}
	recs := sinceResume(t, lastJournal(t, dir))
	n := len(recs)
	if n < 2 || recs[n-2].Type != journal.StepSuperseded || recs[n-1].Type != journal.RunFinished {
		t.Fatalf("resume journaled %v, want step_superseded just before run_finished", recordTypes(recs))
	}
	if r := recs[n-2]; r.Step != "sup.key" || r.Note != "replaced k#1" || string(r.Outputs) != `{"output":"k#1"}` {
		t.Errorf("step_superseded %+v", r)
	}
	var redone []string
	for _, r := range recs {
		if r.Type == journal.StepRedo {
			redone = append(redone, r.Step)
		}
	}
	if want := []string{"sup.key", "plain.pub", "plain.tail", "plain.cert"}; !reflect.DeepEqual(redone, want) {
		t.Errorf("step_redo records for %v, want %v", redone, want)
	}

	run := checkFinished(t, dir, prog)
	if st := run.Steps["sup.key"]; len(st.Superseded) != 0 || !reflect.DeepEqual(st.Notes, []string{"replaced k#1"}) || st.Attempts != 2 {
		t.Errorf("sup.key after the resume: %+v", st)
	}
	if st := run.Steps["plain.other"]; st.Attempts != 1 || st.Redone != "" {
		t.Errorf("plain.other after the resume: %+v", st)
	}
	checkNoSecrets(t, dir)
}

func TestResumeKeepsProducerWhenNoPendingStepNeedsItsSecrets(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
sup "key" {
  input = "k"
}
plain "cert" {
  input = sup.key.secret
}
plain "late" {
  input      = sup.key.output
  depends_on = [plain.cert]
}
`, nil, w.kinds())
	dir := t.TempDir()
	w.fail["plain.late"] = "reload failed"
	if err := applyJournaled(t, prog, dir); err == nil {
		t.Fatal("Apply succeeded")
	}
	delete(w.fail, "plain.late")
	applied := len(w.applied)
	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	want := map[string]string{"sup.key": ActionSkip, "plain.cert": ActionSkip, "plain.late": ActionRedo}
	if got := decisions(report); !reflect.DeepEqual(got, want) {
		t.Errorf("decisions %v, want %v", got, want)
	}
	if got := w.appliedSince(applied); !reflect.DeepEqual(got, []string{"plain.late"}) {
		t.Errorf("Resume applied %v", got)
	}
	if got := w.inputs["plain.late"]; got[len(got)-1] != "k#1" {
		t.Errorf("plain.late's inputs %v, want the journaled output k#1", got)
	}
	if len(w.superseded) != 0 {
		t.Errorf("Supersede called: %+v", w.superseded)
	}
	checkFinished(t, dir, prog)
}

// TestResumeRedoFixpoint needs both rules to feed each other: z is redone
// because w needs its secret, y because it depends on z, and only then x,
// because y, which runs again, needs x's secret.
func TestResumeRedoFixpoint(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
sup "x" {
  input = "x"
}
sup "z" {
  input = "z"
}
plain "y" {
  input = "${sup.x.secret}+${sup.z.output}"
}
plain "w" {
  input      = sup.z.secret
  depends_on = [plain.y]
}
`, nil, w.kinds())
	if order := prog.Steps(); slices.Index(order, "sup.x") > slices.Index(order, "plain.y") {
		t.Fatalf("order %v: sup.x must be considered before plain.y", order)
	}
	dir := t.TempDir()
	w.fail["plain.w"] = "boom"
	if err := applyJournaled(t, prog, dir); err == nil {
		t.Fatal("Apply succeeded")
	}
	delete(w.fail, "plain.w")
	applied := len(w.applied)
	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	want := map[string]string{"sup.x": ActionRedo, "sup.z": ActionRedo, "plain.y": ActionRedo, "plain.w": ActionRedo}
	if got := decisions(report); !reflect.DeepEqual(got, want) {
		t.Errorf("decisions %v, want %v", got, want)
	}
	if got := reasonOf(report, "sup.x"); !strings.Contains(got, "plain.y has yet to run and needs its sensitive outputs") {
		t.Errorf("sup.x redone because %q", got)
	}
	if got := w.appliedSince(applied); len(got) != 4 {
		t.Errorf("Resume applied %v, want all four", got)
	}
	var got []string
	for _, s := range w.superseded {
		got = append(got, s.addr+" "+s.previous.GetAttr("output").AsString())
	}
	if want := []string{"sup.x x#1", "sup.z z#1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("superseded %v, want %v", got, want)
	}
	checkFinished(t, dir, prog)
	checkNoSecrets(t, dir)
}

func TestResumeRefusesChangedPlan(t *testing.T) {
	const v1 = `
variable "cn" {
  default = "web"
}
plain "a" {
  input = var.cn
}
plain "b" {
  input      = "b"
  depends_on = [plain.a]
}
plain "c" {
  input = plain.b.output
}
`
	tests := []struct {
		name        string
		src         string
		vars        map[string]string
		planChanged bool
		varsChanged bool
		changes     []Change          // want
		forced      map[string]string // decisions with Force
		forcedRedo  map[string]string // part of the reason, per step
	}{
		{
			name:        "argument changed",
			src:         strings.Replace(v1, `input      = "b"`, `input      = "b2"`, 1),
			planChanged: true, changes: []Change{{"plain.b", "changed"}},
			forced:     map[string]string{"plain.a": ActionSkip, "plain.b": ActionRedo, "plain.c": ActionRedo},
			forcedRedo: map[string]string{"plain.b": "definition changed", "plain.c": "it failed"},
		},
		{
			name: "variable changed",
			src:  v1, vars: map[string]string{"cn": "api"},
			varsChanged: true, changes: []Change{{"plain.a", "changed"}},
			forced:     map[string]string{"plain.a": ActionRedo, "plain.b": ActionRedo, "plain.c": ActionRedo},
			forcedRedo: map[string]string{"plain.a": "definition changed", "plain.b": "depends on plain.a"},
		},
		{
			name:        "step added",
			src:         v1 + "plain \"d\" {\n  depends_on = [plain.c]\n}\n",
			planChanged: true, changes: []Change{{"plain.d", "added"}},
			forced: map[string]string{"plain.a": ActionSkip, "plain.b": ActionSkip, "plain.c": ActionRedo, "plain.d": ActionRun},
		},
		{
			name:        "step removed",
			src:         v1[:strings.Index(v1, `plain "c"`)],
			planChanged: true, changes: []Change{{"plain.c", "removed"}},
			forced: map[string]string{"plain.a": ActionSkip, "plain.b": ActionSkip},
		},
		{
			name:        "dependency removed",
			src:         strings.Replace(v1, "  depends_on = [plain.a]\n", "", 1),
			planChanged: true, changes: []Change{{"plain.b", "changed"}},
			forced: map[string]string{"plain.a": ActionSkip, "plain.b": ActionRedo, "plain.c": ActionRedo},
		},
		{
			name:        "comment only",
			src:         "# rotate web\n" + v1,
			planChanged: true, changes: nil,
			forced: map[string]string{"plain.a": ActionSkip, "plain.b": ActionSkip, "plain.c": ActionRedo},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			dir := t.TempDir()
			w.fail["plain.c"] = "boom"
			if err := applyJournaled(t, compileWith(t, v1, nil, w.kinds()), dir); err == nil {
				t.Fatal("Apply succeeded")
			}
			delete(w.fail, "plain.c")
			before := recordTypes(lastJournal(t, dir))
			applied := len(w.applied)
			prog := compileWith(t, tt.src, tt.vars, w.kinds())

			report, err := resume(t, prog, dir, false)
			var changed *ChangedError
			if !errors.As(err, &changed) {
				t.Fatalf("Resume = %v, want a *ChangedError", err)
			}
			if report != nil {
				t.Errorf("a refused resume returned a report: %+v", report)
			}
			if changed.PlanChanged != tt.planChanged || changed.VarsChanged != tt.varsChanged {
				t.Errorf("PlanChanged %v, VarsChanged %v; want %v, %v", changed.PlanChanged, changed.VarsChanged, tt.planChanged, tt.varsChanged)
			}
			if !reflect.DeepEqual(changed.Changes, tt.changes) {
				t.Errorf("Changes %#v, want %#v", changed.Changes, tt.changes)
			}
			msg := changed.Error()
			for _, c := range tt.changes {
				if !strings.Contains(msg, c.Addr+" ("+c.What+")") {
					t.Errorf("Error() = %q does not name %s (%s)", msg, c.Addr, c.What)
				}
			}
			if len(tt.changes) == 0 && !strings.Contains(msg, "no step's definition changed") {
				t.Errorf("Error() = %q", msg)
			}
			if got := recordTypes(lastJournal(t, dir)); !reflect.DeepEqual(got, before) {
				t.Errorf("a refused resume journaled %v", got[len(before):])
			}
			if got := w.appliedSince(applied); len(got) != 0 {
				t.Errorf("a refused resume applied %v", got)
			}

			report, err = resume(t, prog, dir, true)
			if err != nil {
				t.Fatalf("Resume with Force: %v", err)
			}
			if got := decisions(report); !reflect.DeepEqual(got, tt.forced) {
				t.Errorf("forced decisions %v, want %v", got, tt.forced)
			}
			for addr, want := range tt.forcedRedo {
				if got := reasonOf(report, addr); !strings.Contains(got, want) {
					t.Errorf("%s redone because %q, want %q", addr, got, want)
				}
			}
			var wantApplied []string
			for _, addr := range prog.Steps() {
				if a := tt.forced[addr]; a == ActionRedo || a == ActionRun {
					wantApplied = append(wantApplied, addr)
				}
			}
			if got := w.appliedSince(applied); !reflect.DeepEqual(got, wantApplied) {
				t.Errorf("forced resume applied %v, want %v", got, wantApplied)
			}
			run := checkFinished(t, dir, prog)
			if !run.Info.Forced || run.Info.PlanHash != prog.planHash || run.Info.VarsHash != prog.varsHash {
				t.Errorf("the forced resume's run info %+v, want it forced and the new plan's", run.Info)
			}
			// The journal now describes the new plan: resuming it again
			// needs no force.
			if c := prog.Changes(run); c != nil {
				t.Errorf("Changes after the forced resume: %v", c)
			}
		})
	}
}

// TestChangesSeesEditedReferences edits how a step uses another step's
// output. The definition hash evaluates a body with every step output
// unknown, so such an edit must still change the step's definition.
func TestChangesSeesEditedReferences(t *testing.T) {
	const v1 = `
plain "a" {
  input = "a"
}
plain "x" {
  input = "x"
}
plain "b" {
  input = plain.a.output
}
`
	tests := []struct {
		name string
		src  string
	}{
		{"text added around the reference", strings.Replace(v1, "input = plain.a.output", `input = "${plain.a.output}-v2"`, 1)},
		{"another step's output", strings.Replace(v1, "input = plain.a.output", "input = plain.x.output", 1)},
		{"a function applied", strings.Replace(v1, "input = plain.a.output", "input = upper(plain.a.output)", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			dir := t.TempDir()
			if err := applyJournaled(t, compileWith(t, v1, nil, w.kinds()), dir); err != nil {
				t.Fatal(err)
			}
			prog := compileWith(t, tt.src, nil, w.kinds())
			c := prog.Changes(loadRun(t, dir))
			if c == nil || !c.PlanChanged {
				t.Fatalf("Changes = %v, want the plan changed", c)
			}
			if want := []Change{{"plain.b", "changed"}}; !reflect.DeepEqual(c.Changes, want) {
				t.Errorf("Changes = %#v, want %#v: an edit to how plain.b uses a step output must count (%q)",
					c.Changes, want, c.Error())
			}
		})
	}
}

// TestResumeRefusesChangedDirectory: relative paths in a plan are resolved
// against the working directory, so a resume from elsewhere is a change.
func TestResumeRefusesChangedDirectory(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, "plain \"a\" {\n  input = \"a\"\n}\nplain \"b\" {\n  input = plain.a.output\n}\n", nil, w.kinds())
	dir := t.TempDir()
	w.fail["plain.b"] = "boom"
	if err := applyJournaled(t, prog, dir); err == nil {
		t.Fatal("Apply succeeded")
	}
	delete(w.fail, "plain.b")
	run := loadRun(t, dir)
	wd, err := os.Getwd()
	if err != nil || run.Info.Dir != wd {
		t.Fatalf("the run journaled directory %q, want %q (%v)", run.Info.Dir, wd, err)
	}
	if c := prog.Changes(run); c != nil {
		t.Fatalf("Changes = %v for an unchanged plan", c)
	}
	run.Info.Dir = "/elsewhere"
	_, err = prog.Resume(context.Background(), run, testOptions())
	var changed *ChangedError
	if !errors.As(err, &changed) {
		t.Fatalf("Resume = %v, want a *ChangedError", err)
	}
	if !changed.DirChanged || changed.OldDir != "/elsewhere" || changed.PlanChanged || changed.VarsChanged || len(changed.Changes) != 0 {
		t.Errorf("ChangedError %#v", changed)
	}
	if msg := changed.Error(); !strings.Contains(msg, "working directory") || !strings.Contains(msg, "/elsewhere") {
		t.Errorf("Error() = %q", msg)
	}
}

func TestRunUnfinished(t *testing.T) {
	info := &journal.RunInfo{Steps: []journal.StepDefinition{{Step: "plain.a"}, {Step: "plain.b"}}}
	tests := []struct {
		name string
		recs []journal.Record
		want bool
	}{
		{"killed before any step", []journal.Record{{Type: journal.RunStarted, Run: info}}, true},
		{"failed before any step", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.RunFinished, Status: journal.StatusFailed}}, false},
		{"killed during a step", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.StepStarted, Step: "plain.a"}}, true},
		{"failed after a step", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.StepStarted, Step: "plain.a"}, {Type: journal.StepFailed, Step: "plain.a"},
			{Type: journal.RunFinished, Status: journal.StatusFailed}}, true},
		{"interrupted", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.StepStarted, Step: "plain.a"}, {Type: journal.StepSucceeded, Step: "plain.a"},
			{Type: journal.RunFinished, Status: journal.StatusInterrupted}}, true},
		{"succeeded", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.StepStarted, Step: "plain.a"}, {Type: journal.StepSucceeded, Step: "plain.a"},
			{Type: journal.RunFinished, Status: journal.StatusSucceeded}}, false},
		{"resumed after success is finished again", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.StepStarted, Step: "plain.a"}, {Type: journal.StepSucceeded, Step: "plain.a"},
			{Type: journal.RunFinished, Status: journal.StatusFailed},
			{Type: journal.RunResumed, Run: info}, {Type: journal.RunFinished, Status: journal.StatusSucceeded}}, false},
		{"killed during a resume", []journal.Record{{Type: journal.RunStarted, Run: info},
			{Type: journal.StepStarted, Step: "plain.a"}, {Type: journal.StepFailed, Step: "plain.a"},
			{Type: journal.RunFinished, Status: journal.StatusFailed}, {Type: journal.RunResumed, Run: info}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeJournal(t, dir, tt.recs)
			if got := loadRun(t, dir).Unfinished(); got != tt.want {
				t.Errorf("Unfinished() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadRun(t *testing.T) {
	t.Run("no journal", func(t *testing.T) {
		run, err := LoadRun(t.TempDir())
		if run != nil || err != nil {
			t.Errorf("LoadRun = %+v, %v; want nothing", run, err)
		}
	})
	t.Run("empty journal", func(t *testing.T) {
		dir := t.TempDir()
		writeJournal(t, dir, nil)
		run, err := LoadRun(dir)
		if run != nil || err != nil {
			t.Errorf("LoadRun = %+v, %v; want nothing", run, err)
		}
	})
	t.Run("not a run", func(t *testing.T) {
		dir := t.TempDir()
		writeJournal(t, dir, []journal.Record{{Type: journal.StepStarted, Step: "plain.a"}})
		if _, err := LoadRun(dir); err == nil || !strings.Contains(err.Error(), "run_started") {
			t.Errorf("LoadRun = %v, want an error about run_started", err)
		}
	})
	t.Run("torn tail", func(t *testing.T) {
		dir := t.TempDir()
		info := &journal.RunInfo{Steps: []journal.StepDefinition{{Step: "plain.a"}}}
		writeJournal(t, dir, []journal.Record{{Type: journal.RunStarted, Run: info}, {Type: journal.StepStarted, Step: "plain.a"}})
		path, _ := journal.Last(dir)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b[:len(b)-5], 0o600); err != nil {
			t.Fatal(err)
		}
		run := loadRun(t, dir)
		if run.Torn == nil || run.Steps["plain.a"].State != StatePending || run.Steps["plain.a"].Attempts != 0 {
			t.Errorf("run %+v, torn %+v", run.Steps["plain.a"], run.Torn)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		dir := t.TempDir()
		info := &journal.RunInfo{Steps: []journal.StepDefinition{{Step: "plain.a"}}}
		writeJournal(t, dir, []journal.Record{{Type: journal.RunStarted, Run: info}, {Type: journal.StepStarted, Step: "plain.a"}})
		path, _ := journal.Last(dir)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		var corrupt *journal.CorruptError
		if _, err := LoadRun(dir); !errors.As(err, &corrupt) || corrupt.Offset != 0 {
			t.Errorf("LoadRun = %v, want a *journal.CorruptError at offset 0", err)
		}
	})
}

// TestResumeAfterCrashBetweenRedoRecords resumes a resume that was killed
// while journaling its decisions: the producer's step_redo is durable, its
// consumer's is not. The producer now runs again, so the consumer, done
// with the old result, must run again too, as planResume says of a step
// whose dependency is carried out again.
func TestResumeAfterCrashBetweenRedoRecords(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
sup "key" {
  input = "k"
}
plain "pub" {
  input = sup.key.output
}
plain "cert" {
  input      = sup.key.secret
  depends_on = [plain.pub]
}
`, nil, w.kinds())
	first := t.TempDir()
	w.fail["plain.cert"] = "boom"
	if err := applyJournaled(t, prog, first); err == nil {
		t.Fatal("Apply succeeded")
	}
	delete(w.fail, "plain.cert")
	recs := journalUpTo(t, first, func(r journal.Record) bool { return r.Type == journal.RunFinished })
	recs = append(recs,
		journal.Record{Type: journal.RunResumed, Run: prog.runInfo(Options{})},
		journal.Record{Type: journal.StepRedo, Step: "sup.key", Reason: "plain.cert has yet to run and needs its sensitive outputs, which are never journaled"},
	)
	dir := t.TempDir()
	writeJournal(t, dir, recs)
	applied := len(w.applied)

	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := decisions(report)["plain.pub"]; got != ActionRedo {
		t.Fatalf("plain.pub is decided %q although sup.key, which it reads, runs again (applied %v)",
			got, w.appliedSince(applied))
	}
	if got, want := w.appliedSince(applied), []string{"sup.key", "plain.pub", "plain.cert"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Resume applied %v, want %v", got, want)
	}
	checkFinished(t, dir, prog)
}

// TestResumeSupersedesCheckedResultThatIsRedone: an interrupted step whose
// effect is found in place (steps.Resumer) has a result like any other; when
// the resume has to carry it out again, that result is superseded.
func TestResumeSupersedesCheckedResultThatIsRedone(t *testing.T) {
	w := newWorld()
	prog := compileWith(t, `
both "key" {
  input = "k"
}
plain "cert" {
  input = both.key.secret
}
`, nil, w.kinds())
	first := t.TempDir()
	if err := applyJournaled(t, prog, first); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeJournal(t, dir, journalUpTo(t, first, isRecord(journal.StepStarted, "both.key")))
	w.inPlace["both.key"] = true

	report, err := resume(t, prog, dir, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := decisions(report)["both.key"]; got != ActionRedo {
		t.Fatalf("both.key decided %q, want redo: plain.cert needs its secret", got)
	}
	run := checkFinished(t, dir, prog)
	if len(w.superseded) != 1 {
		t.Fatalf("Supersede called %d times, want once with the checked result k#checked; "+
			"the journal still lists %d superseded result(s) for both.key",
			len(w.superseded), len(run.Steps["both.key"].Superseded))
	}
	if got := w.superseded[0].previous.GetAttr("output"); !got.RawEquals(cty.StringVal("k#checked")) {
		t.Errorf("superseded %#v, want %#v", got, cty.StringVal("k#checked"))
	}
	if st := run.Steps["both.key"]; len(st.Superseded) != 0 {
		t.Errorf("both.key still has superseded results after the resume: %+v", st)
	}
}
