package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// walkRepeats is how often the concurrency tests repeat a walk: the order
// in which steps end is not deterministic.
const walkRepeats = 50

// compileWith compiles a plan held in a string with the given step kinds.
func compileWith(t *testing.T, src string, vars map[string]string, kinds steps.Registry) *Program {
	t.Helper()
	prog, diags := loadSource(t, src, vars, kinds)
	if diags.HasErrors() {
		t.Fatalf("Load: %s", diags.Error())
	}
	return prog
}

// testOptions are the options every engine test runs with: names kept in
// the logger (the fake kinds tell steps apart by it).
func testOptions() Options { return Options{Log: testLogger()} }

// gate is a fake step kind whose steps block until the test releases them,
// one by one, with the error they are to fail with (nil to succeed). It
// counts the steps running at once.
type gate struct {
	mu       sync.Mutex
	running  int
	most     int
	started  []string
	releases map[string]chan error
}

var _ steps.Step = (*gate)(nil)

func newGate() *gate { return &gate{releases: map[string]chan error{}} }

func (g *gate) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{"input": &hcldec.AttrSpec{Name: "input", Type: cty.String}}
}

func (g *gate) Outputs() map[string]steps.Output {
	return map[string]steps.Output{"output": {Type: cty.String}}
}

func (g *gate) Validate(steps.Config) error { return nil }

func (g *gate) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	addr := env.Log.Name()
	g.mu.Lock()
	g.running++
	g.most = max(g.most, g.running)
	g.started = append(g.started, addr)
	g.mu.Unlock()

	err := <-g.release(addr)

	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	if err != nil {
		return cty.NilVal, err
	}
	return cty.ObjectVal(map[string]cty.Value{"output": cty.StringVal("out:" + cfg.String("input"))}), nil
}

// release returns the channel that lets the step addr end.
func (g *gate) release(addr string) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.releases[addr]
	if !ok {
		c = make(chan error, 1)
		g.releases[addr] = c
	}
	return c
}

// state returns how many steps are running, the most that ran at once, and
// the steps started so far, in the order they started.
func (g *gate) state() (running, most int, started []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.most, append([]string(nil), g.started...)
}

// independentGates returns a plan of n gate steps that do not depend on
// each other.
func independentGates(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "gate \"s%02d\" {\n  input = \"%d\"\n}\n", i, i)
	}
	return b.String()
}

type applyResult struct {
	report *Report
	err    error
}

// startApply runs Apply in a goroutine; the result arrives on the channel.
func startApply(prog *Program, opts Options) <-chan applyResult {
	done := make(chan applyResult, 1)
	go func() {
		report, err := prog.Apply(context.Background(), opts)
		done <- applyResult{report, err}
	}()
	return done
}

func outcomes(r *Report) map[string]Outcome {
	got := map[string]Outcome{}
	for _, s := range r.Steps {
		got[s.Addr] = s.Outcome
	}
	return got
}

func failedAddrs(err error) []string {
	var addrs []string
	for _, se := range StepErrors(err) {
		addrs = append(addrs, se.Addr)
	}
	sort.Strings(addrs)
	return addrs
}

func TestWalkBoundsParallelism(t *testing.T) {
	tests := []struct {
		name        string
		steps       int
		parallelism int
		want        int // most steps running at once
	}{
		{"three of twenty", 20, 3, 3},
		{"one at a time", 5, 1, 1},
		{"default", 20, 0, DefaultParallelism},
		{"fewer steps than slots", 3, 5, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range walkRepeats {
				synctest.Test(t, func(t *testing.T) {
					g := newGate()
					prog := compileWith(t, independentGates(tt.steps), nil, steps.Registry{"gate": g})
					opts := testOptions()
					opts.Parallelism = tt.parallelism
					done := startApply(prog, opts)
					// Whenever the walk has nothing more to do until a step
					// ends, as many steps run as the bound allows; release
					// them one at a time, oldest first.
					for released := 0; released < tt.steps; released++ {
						synctest.Wait()
						running, _, started := g.state()
						if want := min(tt.want, tt.steps-released); running != want {
							t.Fatalf("after %d steps ended, %d run at once, want %d", released, running, want)
						}
						g.release(started[released]) <- nil
					}
					res := <-done
					if res.err != nil {
						t.Fatalf("Apply: %v", res.err)
					}
					if n := res.report.Count(Succeeded); n != tt.steps {
						t.Errorf("%d steps succeeded, want %d", n, tt.steps)
					}
					if _, most, _ := g.state(); most != tt.want {
						t.Errorf("at most %d steps ran at once, want %d", most, tt.want)
					}
				})
			}
		})
	}
}

// TestWalkBoundsParallelismWithoutBubble runs the walk with real goroutine
// scheduling: the bound must hold however the steps interleave.
func TestWalkBoundsParallelismWithoutBubble(t *testing.T) {
	const n, parallelism = 20, 3
	for range walkRepeats {
		g := newGate()
		prog := compileWith(t, independentGates(n), nil, steps.Registry{"gate": g})
		opts := testOptions()
		opts.Parallelism = parallelism
		done := startApply(prog, opts)
		// Release each step once the bound is reached or all are started.
		for released := 0; released < n; released++ {
			var started []string
			for {
				_, _, started = g.state()
				if len(started) >= min(released+parallelism, n) {
					break
				}
				select {
				case res := <-done:
					t.Fatalf("Apply returned early: %v", res.err)
				default:
				}
				runtime.Gosched()
			}
			g.release(started[released]) <- nil
		}
		res := <-done
		if res.err != nil {
			t.Fatalf("Apply: %v", res.err)
		}
		if _, most, _ := g.state(); most != parallelism {
			t.Fatalf("at most %d steps ran at once, want %d", most, parallelism)
		}
	}
}

func TestWalkStopsStartingStepsAfterFailure(t *testing.T) {
	tests := []struct {
		name  string
		fails int // how many of the three running steps fail, at once
	}{
		{"one fails", 1},
		{"two fail concurrently", 2},
		{"all running fail", 3},
	}
	const n, parallelism = 10, 3
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range walkRepeats {
				synctest.Test(t, func(t *testing.T) {
					g := newGate()
					prog := compileWith(t, independentGates(n), nil, steps.Registry{"gate": g})
					opts := testOptions()
					opts.Parallelism = parallelism
					obs := &recordingObserver{}
					opts.Observer = obs
					done := startApply(prog, opts)

					synctest.Wait()
					_, _, running := g.state()
					if len(running) != parallelism {
						t.Fatalf("started %v, want %d steps", running, parallelism)
					}
					var wantFailed []string
					for _, addr := range running[:tt.fails] {
						g.release(addr) <- fmt.Errorf("%s broke", addr)
						wantFailed = append(wantFailed, addr)
					}
					sort.Strings(wantFailed)
					// The walk has seen the failures and is waiting for the
					// steps still running: nothing new may start, although
					// slots are free and seven steps are ready.
					synctest.Wait()
					if stillRunning, _, started := g.state(); len(started) != parallelism || stillRunning != parallelism-tt.fails {
						t.Fatalf("after the failure: %d running, started %v; want %d running and nothing new",
							stillRunning, started, parallelism-tt.fails)
					}
					for _, addr := range running[tt.fails:] {
						g.release(addr) <- nil
					}
					res := <-done

					if got := failedAddrs(res.err); !reflect.DeepEqual(got, wantFailed) {
						t.Errorf("StepErrors name %v, want %v (error: %v)", got, wantFailed, res.err)
					}
					for _, addr := range wantFailed {
						if !strings.Contains(res.err.Error(), addr+" broke") {
							t.Errorf("error %q does not hold %s's failure", res.err, addr)
						}
					}
					want := map[Outcome]int{Failed: tt.fails, Succeeded: parallelism - tt.fails, NotRun: n - parallelism}
					for o, c := range want {
						if got := res.report.Count(o); got != c {
							t.Errorf("%d steps %s, want %d (%v)", got, o, c, outcomes(res.report))
						}
					}
					if len(res.report.Steps) != n {
						t.Errorf("the report has %d steps, want %d", len(res.report.Steps), n)
					}
					// Every step that ran finished: running ones are not cut
					// short by another's failure.
					for _, addr := range running {
						if o := outcomes(res.report)[addr]; o == NotRun {
							t.Errorf("%s started but is reported %s", addr, o)
						}
					}
					if _, _, started := g.state(); len(started) != parallelism {
						t.Errorf("started %v after the failure", started)
					}
					if ev := obs.String(); strings.Count(ev, "start ") != parallelism || strings.Count(ev, "end ") != parallelism {
						t.Errorf("observer heard %q; want %d starts and ends", ev, parallelism)
					}
				})
			}
		})
	}
}

func TestWalkSkipsDependentsOfFailure(t *testing.T) {
	tests := []struct {
		name       string
		src        string
		wantFailed []string
		want       map[string]Outcome
	}{
		{
			name: "chain after a failure",
			src: `
rec "a" {
  fail = "boom"
}
rec "b" {
  input = rec.a.output
}
rec "c" {
  depends_on = [rec.b]
}
rec "d" {
  input = "d"
}
`,
			wantFailed: []string{"rec.a"},
			want:       map[string]Outcome{"rec.a": Failed, "rec.b": NotRun, "rec.c": NotRun, "rec.d": Succeeded},
		},
		{
			name: "a step waiting for a failed and a succeeded step",
			src: `
rec "ok" {
  input = "x"
}
rec "bad" {
  fail = "boom"
}
rec "join" {
  input = "${rec.ok.output}${rec.bad.output}"
}
`,
			wantFailed: []string{"rec.bad"},
			want:       map[string]Outcome{"rec.ok": Succeeded, "rec.bad": Failed, "rec.join": NotRun},
		},
		{
			name: "two failures and their dependents",
			src: `
rec "a" {
  fail = "first"
}
rec "b" {
  fail = "second"
}
rec "after_a" {
  input = rec.a.output
}
rec "after_b" {
  depends_on = [rec.b]
}
rec "after_both" {
  depends_on = [rec.after_a, rec.after_b]
}
`,
			wantFailed: []string{"rec.a", "rec.b"},
			want: map[string]Outcome{"rec.a": Failed, "rec.b": Failed, "rec.after_a": NotRun,
				"rec.after_b": NotRun, "rec.after_both": NotRun},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range walkRepeats {
				prog, rec := mustCompile(t, tt.src)
				report, err := prog.Apply(context.Background(), testOptions())
				if got := failedAddrs(err); !reflect.DeepEqual(got, tt.wantFailed) {
					t.Fatalf("StepErrors name %v, want %v (error: %v)", got, tt.wantFailed, err)
				}
				if got := outcomes(report); !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("outcomes %v, want %v", got, tt.want)
				}
				if report.Count(Failed) != len(tt.wantFailed) {
					t.Fatalf("%d failures reported, want %d: a skipped step is no failure", report.Count(Failed), len(tt.wantFailed))
				}
				for _, addr := range rec.applied {
					if tt.want[addr] == NotRun {
						t.Fatalf("%s was applied although it is reported not run", addr)
					}
				}
				for _, s := range report.Steps {
					if (s.Outcome == Failed) != (s.Err != nil) {
						t.Fatalf("%s: outcome %s with error %v", s.Addr, s.Outcome, s.Err)
					}
				}
			}
		})
	}
}

func TestStepErrors(t *testing.T) {
	a, b := &StepError{Addr: "rec.a"}, &StepError{Addr: "rec.b"}
	tests := []struct {
		name string
		err  error
		want []*StepError
	}{
		{"nil", nil, nil},
		{"one", a, []*StepError{a}},
		{"joined", errors.Join(a, b), []*StepError{a, b}},
		{"wrapped", fmt.Errorf("run: %w", a), []*StepError{a}},
		{"joined and wrapped", errors.Join(fmt.Errorf("x: %w", a), errors.Join(b)), []*StepError{a, b}},
		{"other errors", errors.Join(errors.New("plain"), b), []*StepError{b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StepErrors(tt.err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StepErrors = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// sink is a fake step kind that consumes a value without echoing it: its
// one output is the value's length.
type sink struct{}

var _ steps.Step = sink{}

func (sink) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{"input": &hcldec.AttrSpec{Name: "input", Type: cty.String}}
}

func (sink) Outputs() map[string]steps.Output {
	return map[string]steps.Output{"size": {Type: cty.Number}}
}

func (sink) Validate(steps.Config) error { return nil }

func (sink) Apply(_ context.Context, _ *steps.Env, cfg steps.Config) (cty.Value, error) {
	return cty.ObjectVal(map[string]cty.Value{"size": cty.NumberIntVal(int64(len(cfg.String("input"))))}), nil
}

// readJournal returns the records of a journal, failing on damage.
func readJournal(t *testing.T, path string) []journal.Record {
	t.Helper()
	c, err := journal.Read(path)
	if err != nil {
		t.Fatalf("reading the journal: %v", err)
	}
	if c.Torn != nil {
		t.Fatalf("the journal has a torn tail: %+v", c.Torn)
	}
	return c.Records
}

// recordTypes lists the records' types, with the step for step records.
func recordTypes(recs []journal.Record) []string {
	var out []string
	for _, r := range recs {
		if r.Step != "" {
			out = append(out, r.Type+" "+r.Step)
		} else {
			out = append(out, r.Type)
		}
	}
	return out
}

func TestApplyJournalsTheRun(t *testing.T) {
	const src = `
rec "ca" {
  input = "ca"
}
rec "key" {
  input = "key"
}
rec "cert" {
  input = "${rec.ca.output}/${rec.key.output}"
}
sink "install" {
  input = rec.key.secret
}
rec "reload" {
  depends_on = [rec.cert, sink.install]
}
`
	wantOutputs := map[string]string{
		"rec.ca":       `{"output":"out:ca"}`,
		"rec.key":      `{"output":"out:key"}`,
		"rec.cert":     `{"output":"out:out:ca/out:key"}`,
		"sink.install": `{"size":13}`,
		"rec.reload":   `{"output":"out:"}`,
	}
	for i := range 10 {
		rec := &record{}
		prog := compileWith(t, src, nil, steps.Registry{"rec": rec, "sink": sink{}})
		dir := t.TempDir()
		j, err := journal.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions()
		opts.Journal, opts.Version, opts.Parallelism = j, "9.9.9", 1+i%3
		if _, err := prog.Apply(context.Background(), opts); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		j.Close()

		recs := readJournal(t, j.Path())
		if len(recs) == 0 || recs[0].Type != journal.RunStarted || recs[0].Run == nil {
			t.Fatalf("the journal does not begin with run_started: %v", recordTypes(recs))
		}
		info := recs[0].Run
		if info.PID != os.Getpid() || info.Version != "9.9.9" || info.PlanHash != prog.planHash || info.VarsHash != prog.varsHash || info.Forced {
			t.Errorf("run info %#v", info)
		}
		var defined []string
		for _, d := range info.Steps {
			defined = append(defined, d.Step)
			if d.Definition != prog.nodes[d.Step].definition {
				t.Errorf("%s journaled with definition %q, want %q", d.Step, d.Definition, prog.nodes[d.Step].definition)
			}
		}
		if !reflect.DeepEqual(defined, prog.Steps()) {
			t.Errorf("run info lists %v, want %v", defined, prog.Steps())
		}
		if last := recs[len(recs)-1]; last.Type != journal.RunFinished || last.Status != journal.StatusSucceeded {
			t.Errorf("the journal ends with %s %q, want run_finished succeeded", last.Type, last.Status)
		}

		startedAt, succeededAt := map[string]int{}, map[string]int{}
		for i, r := range recs {
			switch r.Type {
			case journal.StepStarted:
				if _, dup := startedAt[r.Step]; dup {
					t.Errorf("%s started twice", r.Step)
				}
				startedAt[r.Step] = i
				if len(r.Inputs) != 64 {
					t.Errorf("%s started with inputs %q, want a SHA-256", r.Step, r.Inputs)
				}
			case journal.StepSucceeded:
				if _, dup := succeededAt[r.Step]; dup {
					t.Errorf("%s succeeded twice", r.Step)
				}
				succeededAt[r.Step] = i
				if string(r.Outputs) != wantOutputs[r.Step] {
					t.Errorf("%s journaled outputs %s, want %s", r.Step, r.Outputs, wantOutputs[r.Step])
				}
			case journal.RunStarted, journal.RunFinished:
			default:
				t.Errorf("unexpected record %s %s", r.Type, r.Step)
			}
		}
		for _, addr := range prog.Steps() {
			s, okS := startedAt[addr]
			e, okE := succeededAt[addr]
			if !okS || !okE || s > e {
				t.Errorf("%s: started at record %d (%v), succeeded at %d (%v)", addr, s, okS, e, okE)
			}
			// A step starts only once what it waits for is durably done.
			for _, dep := range prog.DependsOn(addr) {
				if succeededAt[dep] > s {
					t.Errorf("%s started (record %d) before %s's success was journaled (record %d)", addr, s, dep, succeededAt[dep])
				}
			}
		}

		b, err := os.ReadFile(j.Path())
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("secret-of-")) || bytes.Contains(b, []byte(`"secret"`)) {
			t.Errorf("a sensitive output reached the journal:\n%s", b)
		}

		run, err := LoadRun(dir)
		if err != nil {
			t.Fatalf("LoadRun: %v", err)
		}
		if run.Unfinished() || run.Status != journal.StatusSucceeded || run.Count(StateSucceeded) != len(wantOutputs) {
			t.Errorf("LoadRun: status %q, unfinished %v, %d succeeded", run.Status, run.Unfinished(), run.Count(StateSucceeded))
		}
		if !reflect.DeepEqual(run.Order, prog.Steps()) {
			t.Errorf("LoadRun order %v, want %v", run.Order, prog.Steps())
		}
		for addr, s := range run.Steps {
			var out map[string]any
			if err := json.Unmarshal(s.Outputs, &out); err != nil || s.Attempts != 1 {
				t.Errorf("%s: outputs %s (%v), %d attempts", addr, s.Outputs, err, s.Attempts)
			}
		}
	}
}

func TestApplyJournalsFailure(t *testing.T) {
	prog, _ := mustCompile(t, `
rec "a" {
  input = "a"
}
rec "b" {
  input = rec.a.output
  fail  = "vault said no"
}
rec "c" {
  depends_on = [rec.b]
}
`)
	dir := t.TempDir()
	j, err := journal.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Journal = j
	if _, err := prog.Apply(context.Background(), opts); err == nil {
		t.Fatal("Apply succeeded")
	}
	j.Close()
	recs := readJournal(t, j.Path())
	want := []string{"run_started", "step_started rec.a", "step_succeeded rec.a", "step_started rec.b", "step_failed rec.b", "run_finished"}
	if got := recordTypes(recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
	if r := recs[4]; !strings.Contains(r.Error, "vault said no") {
		t.Errorf("step_failed error %q", r.Error)
	}
	if r := recs[5]; r.Status != journal.StatusFailed {
		t.Errorf("run finished %q, want failed", r.Status)
	}
	run, err := LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !run.Unfinished() {
		t.Error("a failed run with steps done is unfinished")
	}
	states := map[string]string{}
	for addr, s := range run.Steps {
		states[addr] = s.State
	}
	if want := map[string]string{"rec.a": StateSucceeded, "rec.b": StateFailed, "rec.c": StatePending}; !reflect.DeepEqual(states, want) {
		t.Errorf("states %v, want %v", states, want)
	}
}
