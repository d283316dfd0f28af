package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// hostLedger is a kind that runs on hosts and records, in the order they
// happen, when each step starts and ends and when it is undone.
type hostLedger struct {
	f      *fakeSetting
	mu     sync.Mutex
	events []string // "start ADDR", "end ADDR", "undo ADDR"
}

var (
	_ steps.Step       = (*hostLedger)(nil)
	_ steps.Rollbacker = (*hostLedger)(nil)
	_ steps.HostRunner = (*hostLedger)(nil)
)

func (l *hostLedger) RunsOnHost() {}

func (l *hostLedger) Settings() steps.Settings { return steps.Settings{"host": l.f} }

func (l *hostLedger) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"input": &hcldec.AttrSpec{Name: "input", Type: cty.String},
		"fail":  &hcldec.AttrSpec{Name: "fail", Type: cty.Bool},
	}
}

func (l *hostLedger) Outputs() map[string]steps.Output {
	return map[string]steps.Output{"output": {Type: cty.String}}
}

func (l *hostLedger) Validate(steps.Config) error { return nil }

func (l *hostLedger) note(event string, env *steps.Env) {
	addr := ledgerAddr(env)
	l.mu.Lock()
	l.events = append(l.events, event+" "+addr)
	l.mu.Unlock()
}

// ledgerAddr is the address of the step env is for.
func ledgerAddr(env *steps.Env) string {
	name := env.Log.Name()
	return name[strings.LastIndex(name, ".rec.")+1:]
}

func (l *hostLedger) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	l.note("start", env)
	runtime.Gosched() // let a step that should not start yet try
	if fail, _ := cfg.Bool("fail", false); fail {
		return cty.NilVal, errors.New("boom")
	}
	l.note("end", env)
	return cty.ObjectVal(map[string]cty.Value{"output": cty.StringVal(cfg.String("input"))}), nil
}

func (l *hostLedger) Snapshot(context.Context, *steps.Env, steps.Config) (map[string]string, error) {
	return map[string]string{}, nil
}

func (l *hostLedger) Rollback(_ context.Context, env *steps.Env, _ steps.Config, _ cty.Value, _ map[string]string) error {
	l.note("undo", env)
	return nil
}

// rolloutPlan has five web hosts, two steps on each (the second reads the
// first, a check of it), a step that runs here, and a rollout of the web
// hosts in batches of batch.
func rolloutPlan(rollout, fail string) string {
	if fail == "" {
		fail = "false"
	}
	return `variable "web" {
  default = { a = "10.0.0.1", b = "10.0.0.2", c = "10.0.0.3", d = "10.0.0.4", e = "10.0.0.5" }
}
host "web" {
  for_each = var.web
  address  = each.value
}
` + rollout + `
rec "key" {
  for_each = var.web
  on       = host.web[each.key]
  input    = each.key
}
rec "check" {
  for_each = var.web
  on       = host.web[each.key]
  input    = rec.key[each.key].output
  fail     = ` + fail + `
}
rec "here" {
  input = "x"
}
`
}

// hostOf is the web host a step of rolloutPlan is for: rec.key["a"] is
// for host.web["a"]; "" for rec.here.
func hostOf(step string) string {
	_, key, ok := strings.Cut(step, "[")
	if !ok {
		return ""
	}
	return `host.web[` + key
}

func compileRollout(t *testing.T, src string) (*Program, *hostLedger) {
	t.Helper()
	l := &hostLedger{f: &fakeSetting{}}
	prog, diags := loadSource(t, src, nil, steps.Registry{"rec": l})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return prog, l
}

// webBatches is batches of host.web's keys as the addresses of its
// instances.
func webBatches(keys [][]string) [][]string {
	var out [][]string
	for _, b := range keys {
		var hosts []string
		for _, k := range b {
			hosts = append(hosts, fmt.Sprintf("host.web[%q]", k))
		}
		out = append(out, hosts)
	}
	return out
}

// TestRolloutBatches: the hosts of a rollout, or of its groups in order,
// split into batches of batch_size or of a percentage of the group (at
// least one host).
func TestRolloutBatches(t *testing.T) {
	tests := []struct {
		name, rollout string
		want          [][]string
	}{
		{"one batch of every host", `rollout "web" {
  hosts      = host.web
  batch_size = 5
}`, [][]string{{"a", "b", "c", "d", "e"}}},
		{"batches of two", `rollout "web" {
  hosts      = host.web
  batch_size = 2
}`, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"one at a time by default, in the order given", `rollout "web" {
  hosts = [host.web["e"], host.web["a"]]
}`, [][]string{{"e"}, {"a"}}},
		{"percentage rounded down", `rollout "web" {
  hosts      = host.web
  batch_size = "50%"
}`, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"percentage at least one", `rollout "web" {
  hosts      = host.web
  batch_size = "10%"
}`, [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}}},
		{"groups split apart", `rollout "web" {
  groups     = [[host.web["b"], host.web["c"], host.web["d"]], [host.web["a"]]]
  batch_size = "100%"
}`, [][]string{{"b", "c", "d"}, {"a"}}},
		{"groups with batches", `rollout "web" {
  groups     = [[host.web["b"], host.web["c"], host.web["d"]], [host.web["a"]]]
  batch_size = 2
}`, [][]string{{"b", "c"}, {"d"}, {"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, _ := compileRollout(t, rolloutPlan(tt.rollout, ""))
			want := webBatches(tt.want)
			got := prog.Rollouts()
			if len(got) != 1 || got[0].Name != "web" || !reflect.DeepEqual(got[0].Batches, want) {
				t.Errorf("rollouts %v, want web: %q", got, want)
			}
			if deps := prog.DependsOn("rec.here"); len(deps) != 0 {
				t.Errorf("rec.here, on no host, depends on %q", deps)
			}
		})
	}
}

// TestRolloutBatchSizeFromVariables: batch_size may be a variable or a
// local, a number or a percentage, and a number given on the command line
// (a string) counts as a number.
func TestRolloutBatchSizeFromVariables(t *testing.T) {
	tests := []struct {
		name, batchSize string
		vars            map[string]string
		want            [][]string
	}{
		{"a variable's default", "var.batch", nil, [][]string{{"a", "b", "c"}, {"d", "e"}}},
		{"from the command line", "var.batch", map[string]string{"batch": "2"}, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"a percentage", "var.batch", map[string]string{"batch": "40%"}, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"a local", "local.batch", nil, [][]string{{"a", "b", "c", "d"}, {"e"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := rolloutPlan(`variable "batch" {
  default = 3
}
locals {
  batch = 4
}
rollout "web" {
  hosts      = host.web
  batch_size = `+tt.batchSize+`
}`, "")
			prog, diags := loadSource(t, src, tt.vars, steps.Registry{"rec": &hostLedger{f: &fakeSetting{}}})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			want := webBatches(tt.want)
			if got := prog.Rollouts(); len(got) != 1 || !reflect.DeepEqual(got[0].Batches, want) {
				t.Errorf("rollouts %v, want %q", got, want)
			}
		})
	}
}

// TestRolloutOrdersBatches: no step for a host of a batch starts before
// every step for the hosts of the batch before it, its checks included,
// has ended; within a batch, steps may run in any order. Run many times:
// the order of a parallel walk is not deterministic.
func TestRolloutOrdersBatches(t *testing.T) {
	src := rolloutPlan(`rollout "web" {
  groups     = [[host.web["b"], host.web["c"], host.web["d"]], [host.web["a"], host.web["e"]]]
  batch_size = 2
}`, "")
	for i := range 100 {
		prog, l := compileRollout(t, src)
		batchOf, steps := map[string]int{}, map[int]int{} // host -> batch; batch -> its steps
		for b, hosts := range prog.Rollouts()[0].Batches {
			for _, h := range hosts {
				batchOf[h] = b
			}
			steps[b] = 2 * len(hosts) // rec.key and rec.check for each host
		}
		report, err := prog.Apply(context.Background(), Options{Log: testLogger(), Parallelism: 10})
		if err != nil {
			t.Fatal(err)
		}
		if n := report.Count(Succeeded); n != 11 {
			t.Fatalf("%d steps succeeded, want 11", n)
		}
		ended := map[int]int{} // batch -> how many of its steps ended
		for _, e := range l.events {
			what, step, _ := strings.Cut(e, " ")
			h := hostOf(step)
			if h == "" {
				continue
			}
			b := batchOf[h]
			switch what {
			case "start":
				if b > 0 && ended[b-1] != steps[b-1] {
					t.Fatalf("run %d: %s started with %d of batch %d's %d steps ended:\n%s", i, step, ended[b-1], b, steps[b-1], strings.Join(l.events, "\n"))
				}
			case "end":
				ended[b]++
			}
		}
	}
}

// TestRolloutFailureStopsLaterBatches: a step failing in the first batch
// means no step for a later batch ever starts, and every completed step
// of the first batch is rolled back.
func TestRolloutFailureStopsLaterBatches(t *testing.T) {
	src := rolloutPlan(`rollout "web" {
  hosts      = host.web
  batch_size = 2
}`, `each.key == "b"`)
	for i := range 50 {
		prog, l := compileRollout(t, src)
		report, err := applyRollback(t, prog, t.TempDir(), nil)
		if err == nil {
			t.Fatal("the run succeeded")
		}
		if report.Rollback != RollbackComplete {
			t.Fatalf("Report.Rollback = %q, want %q", report.Rollback, RollbackComplete)
		}
		ended, undone := map[string]bool{}, map[string]bool{}
		for _, e := range l.events {
			what, step, _ := strings.Cut(e, " ")
			if h := hostOf(step); what == "start" && h != `host.web["a"]` && h != `host.web["b"]` && h != "" {
				t.Fatalf("run %d: %s, of the second batch, started:\n%s", i, step, strings.Join(l.events, "\n"))
			}
			switch what {
			case "end":
				ended[step] = true
			case "undo":
				undone[step] = true
			}
		}
		// The first failure stops new steps, so rec.check["a"] may not
		// start; the steps ready at the start have always ended.
		for _, s := range []string{`rec.key["a"]`, `rec.key["b"]`} {
			if !ended[s] || !undone[s] {
				t.Errorf("run %d: %s ended %v, undone %v; want both", i, s, ended[s], undone[s])
			}
		}
		if !reflect.DeepEqual(ended, undone) {
			t.Errorf("run %d: ended %v, undone %v", i, ended, undone)
		}
	}
}

// TestRolloutCycle: a step for an earlier batch that depends on one for a
// later batch is a cycle, named as any other, with a hint at the rollout.
func TestRolloutCycle(t *testing.T) {
	src := `host "web" {
  for_each = toset(["a", "b"])
  address  = each.key
}
rollout "web" {
  hosts = host.web
}
rec "first" {
  on    = host.web["a"]
  input = rec.second.output
}
rec "second" {
  on    = host.web["b"]
  input = "x"
}
`
	_, diags := loadSource(t, src, nil, steps.Registry{"rec": &hostLedger{f: &fakeSetting{}}})
	if len(diags) != 1 {
		t.Fatalf("want one diagnostic, got %v", diags)
	}
	d := diags[0]
	if d.Summary != "Dependency cycle between steps: rec.first, rec.second" || !strings.Contains(d.Detail, `The order of rollout "web" is part of this cycle`) {
		t.Errorf("got %q: %s", d.Summary, d.Detail)
	}
	// Without the rollout the same steps are no cycle, and a cycle of
	// references alone has no hint.
	if _, diags := loadSource(t, strings.Replace(src, "hosts = host.web", `hosts = [host.web["b"], host.web["a"]]`, 1), nil,
		steps.Registry{"rec": &hostLedger{f: &fakeSetting{}}}); diags.HasErrors() {
		t.Errorf("the other order: %v", diags)
	}
}

func TestRolloutErrors(t *testing.T) {
	hosts := `host "web" {
  for_each = toset(["a", "b"])
  address  = each.key
}
host "db" {
  address = "x"
}
`
	tests := []struct {
		name, src      string
		summary, inDet string
		line           int
	}{
		{"undeclared instance", `rollout "web" {
  hosts = [host.web["a"], host.web["z"]]
}`, "Reference to undeclared host instance", `host.web has no instance host.web["z"]. Its keys: ["a" "b"]`, 9},
		{"key of a single host", `rollout "web" {
  hosts = [host.db["a"]]
}`, "Reference to undeclared host instance", "It has no for_each or count", 9},
		{"duplicate in a rollout", `rollout "web" {
  groups = [[host.web["a"]], [host.web]]
}`, "Duplicate host in rollout", `host.web["a"] is already in rollout "web", at `, 9},
		{"in two rollouts", `rollout "web" {
  hosts = host.web
}
rollout "all" {
  hosts = [host.db, host.web["b"]]
}`, "Host in two rollouts", `host.web["b"] is already in rollout "web"`, 12},
		{"batch size from a variable out of range", `rollout "web" {
  hosts      = host.web
  batch_size = var.batch
}
variable "batch" {
  default = 0
}`, "Invalid batch_size", "at least 1", 10},
		{"batch size from a step", `rollout "web" {
  hosts      = host.web
  batch_size = rec.key.n
}`, "Unknown variable", `"rec"`, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := loadSource(t, hosts+tt.src, nil, steps.Registry{"rec": &hostLedger{f: &fakeSetting{}}})
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %v", diags)
			}
			d := diags[0]
			if d.Summary != tt.summary || !strings.Contains(d.Detail, tt.inDet) || d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Errorf("got %q (%s) at %v, want %q containing %q at line %d", d.Summary, d.Detail, d.Subject, tt.summary, tt.inDet, tt.line)
			}
		})
	}
}

// TestRolloutFailureInALaterBatch: a failure in the second batch stops the
// third, and the rollback undoes the second batch's completed steps before
// any of the first's, every completed step of both.
func TestRolloutFailureInALaterBatch(t *testing.T) {
	src := rolloutPlan(`rollout "web" {
  hosts      = host.web
  batch_size = 2
}`, `each.key == "c"`)
	first := map[string]bool{`host.web["a"]`: true, `host.web["b"]`: true}
	for i := range 50 {
		prog, l := compileRollout(t, src)
		report, err := applyRollback(t, prog, t.TempDir(), nil)
		if err == nil || report.Rollback != RollbackComplete {
			t.Fatalf("run %d: err %v, rollback %q", i, err, report.Rollback)
		}
		ended, undone := map[string]bool{}, map[string]bool{}
		firstUndone := false
		for _, e := range l.events {
			what, step, _ := strings.Cut(e, " ")
			h := hostOf(step)
			switch {
			case what == "start" && h == `host.web["e"]`:
				t.Fatalf("run %d: %s, of the third batch, started:\n%s", i, step, strings.Join(l.events, "\n"))
			case what == "end":
				ended[step] = true
			case what == "undo":
				undone[step] = true
				if first[h] {
					firstUndone = true
				} else if h != "" && firstUndone {
					t.Fatalf("run %d: %s undone after a step of the first batch:\n%s", i, step, strings.Join(l.events, "\n"))
				}
			}
		}
		// The first failure stops new steps, so rec.check["d"] may not
		// start; the first batch and rec.key["c"] have always ended.
		for _, s := range []string{`rec.key["a"]`, `rec.check["a"]`, `rec.key["b"]`, `rec.check["b"]`, `rec.key["c"]`} {
			if !ended[s] {
				t.Errorf("run %d: %s did not end", i, s)
			}
		}
		if !reflect.DeepEqual(ended, undone) {
			t.Errorf("run %d: ended %v, undone %v", i, ended, undone)
		}
	}
}

// ledgerEvents splits a hostLedger's events: the steps that ended and
// those undone, and where in the events each first happened.
func ledgerEvents(l *hostLedger) (ended, undone map[string]bool, at map[string]int) {
	ended, undone, at = map[string]bool{}, map[string]bool{}, map[string]int{}
	for i, e := range l.events {
		if _, seen := at[e]; !seen {
			at[e] = i
		}
		what, step, _ := strings.Cut(e, " ")
		switch what {
		case "end":
			ended[step] = true
		case "undo":
			undone[step] = true
		}
	}
	return ended, undone, at
}

// TestRolloutMaxFailures: with max_failures = 1, host c failing in the
// second batch leaves the run: its steps are undone alone, the rest of the
// run goes on, the third batch starting only once c is undone, and the
// run ends with c's failure reported and journaled (hosts_failed), every
// other host done. A second host failing ends the rollout, as with 0.
func TestRolloutMaxFailures(t *testing.T) {
	for i := range 30 {
		prog, l := compileRollout(t, rolloutPlan(`rollout "web" {
  hosts        = host.web
  batch_size   = 2
  max_failures = 1
}`, `each.key == "c"`))
		dir := t.TempDir()
		report, err := applyRollback(t, prog, dir, nil)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if len(report.HostsFailed) != 1 || *report.HostsFailed[0] != (HostFailure{Host: `host.web["c"]`, Rollout: "web", Step: `rec.check["c"]`, RolledBack: true}) {
			t.Fatalf("run %d: HostsFailed %v", i, report.HostsFailed)
		}
		ended, undone, at := ledgerEvents(l)
		if want := map[string]bool{`rec.key["c"]`: true}; !reflect.DeepEqual(undone, want) {
			t.Errorf("run %d: undone %v, want %v", i, undone, want)
		}
		for _, h := range []string{"a", "b", "d", "e"} {
			for _, s := range []string{"rec.key", "rec.check"} {
				if addr := fmt.Sprintf("%s[%q]", s, h); !ended[addr] {
					t.Errorf("run %d: %s did not end", i, addr)
				}
			}
		}
		if at[`start rec.key["e"]`] < at[`undo rec.key["c"]`] || at[`start rec.key["e"]`] < at[`end rec.check["d"]`] {
			t.Errorf("run %d: the third batch started before c was undone and d done:\n%s", i, strings.Join(l.events, "\n"))
		}
		if run := loadRun(t, dir); run.Status != journal.StatusHostsFailed || run.RollingBack || len(run.HostsFailed) != 1 || run.Unfinished() {
			t.Errorf("run %d: journal says %q, rolling back %v, hosts failed %v", i, run.Status, run.RollingBack, run.HostsFailed)
		}
	}

	// Two hosts fail: the first is let fail, the second ends the rollout
	// and the rollback undoes everything.
	for i := range 30 {
		prog, l := compileRollout(t, rolloutPlan(`rollout "web" {
  hosts        = host.web
  batch_size   = 2
  max_failures = 1
}`, `each.key == "b" || each.key == "d"`))
		report, err := applyRollback(t, prog, t.TempDir(), nil)
		if err == nil || report.Rollback != RollbackComplete {
			t.Fatalf("run %d: err %v, rollback %q", i, err, report.Rollback)
		}
		ended, undone, _ := ledgerEvents(l)
		if !reflect.DeepEqual(ended, undone) || ended[`rec.key["e"]`] {
			t.Errorf("run %d: ended %v, undone %v", i, ended, undone)
		}
	}
}

// TestRolloutMaxFailuresResumed: a run killed once host c had failed (its
// host_failed record journaled, its steps not undone yet) is resumed: c
// stays out, its steps are undone first, and the other hosts are done.
func TestRolloutMaxFailuresResumed(t *testing.T) {
	src := rolloutPlan(`rollout "web" {
  hosts        = host.web
  batch_size   = 2
  max_failures = 1
}`, `each.key == "c"`)
	prog, _ := compileRollout(t, src)
	first := t.TempDir()
	if _, err := applyRollback(t, prog, first, func(o *Options) { o.Parallelism = 1 }); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cut  func(journal.Record) bool
		// undone: c's first step is undone by the resume, not before;
		// e: the resume carries out e's steps.
		undone, e bool
	}{
		{"c failed", func(r journal.Record) bool { return r.Type == journal.HostFailed }, true, true},
		{"c being undone", func(r journal.Record) bool { return r.Type == journal.RollbackStarted }, true, true},
		{"e done", isRecord(journal.StepSucceeded, `rec.check["e"]`), false, false},
	} {
		dir := t.TempDir()
		writeJournal(t, dir, journalUpTo(t, first, tt.cut))
		if run := loadRun(t, dir); !run.Unfinished() || run.RollingBack {
			t.Fatalf("%s: unfinished %v, rolling back %v", tt.name, run.Unfinished(), run.RollingBack)
		}
		prog, l := compileRollout(t, src)
		report, err := resumeWith(t, prog, dir, func(o *Options) { o.Rollback = true })
		if err != nil {
			t.Fatal(err)
		}
		ended, undone, _ := ledgerEvents(l)
		if want := map[string]bool{`rec.key["c"]`: tt.undone}; !reflect.DeepEqual(undone, want) && (tt.undone || len(undone) > 0) {
			t.Errorf("%s: undone %v, want %v", tt.name, undone, want)
		}
		for _, s := range []string{`rec.key["c"]`, `rec.check["c"]`} {
			if ended[s] {
				t.Errorf("%s: %s ran again", tt.name, s)
			}
			if d := decisions(report)[s]; d != ActionLeave {
				t.Errorf("%s: %s: decision %q, want %q", tt.name, s, d, ActionLeave)
			}
		}
		if ended[`rec.check["e"]`] != tt.e || len(report.HostsFailed) != 1 || !report.HostsFailed[0].RolledBack {
			t.Errorf("%s: e ran %v, want %v; hosts failed %v", tt.name, ended[`rec.check["e"]`], tt.e, report.HostsFailed)
		}
		if run := loadRun(t, dir); run.Status != journal.StatusHostsFailed {
			t.Errorf("%s: status %q", tt.name, run.Status)
		}
	}
}

// TestRolloutRollbackFailedBatch: with rollback = "failed_batch", a failure
// in the second batch undoes that batch and what else the run did, but the
// first batch, complete, keeps its steps.
func TestRolloutRollbackFailedBatch(t *testing.T) {
	for i := range 30 {
		prog, l := compileRollout(t, rolloutPlan(`rollout "web" {
  hosts      = host.web
  batch_size = 2
  rollback   = "failed_batch"
}`, `each.key == "c"`))
		report, err := applyRollback(t, prog, t.TempDir(), nil)
		if err == nil || report.Rollback != RollbackComplete {
			t.Fatalf("run %d: err %v, rollback %q", i, err, report.Rollback)
		}
		ended, undone, _ := ledgerEvents(l)
		kept := []string{`rec.check["a"]`, `rec.check["b"]`, `rec.key["a"]`, `rec.key["b"]`}
		if !reflect.DeepEqual(slices.Sorted(slices.Values(report.Kept)), kept) {
			t.Errorf("run %d: kept %v, want %v", i, report.Kept, kept)
		}
		for s := range ended {
			if undone[s] == slices.Contains(kept, s) {
				t.Errorf("run %d: %s ended, undone %v, kept %v", i, s, undone[s], slices.Contains(kept, s))
			}
		}
	}
}

// TestRolloutMaxFailuresRefusesStepsAfterAHost: a step that depends on a
// step for a host a rollout may let fail, without being for that host,
// could never run once it failed: refused.
func TestRolloutMaxFailuresRefusesStepsAfterAHost(t *testing.T) {
	src := rolloutPlan(`rollout "web" {
  hosts        = host.web
  max_failures = 2
}`, "") + `
rec "after" {
  input = join(",", [for k, c in rec.check : c.output])
}
`
	l := &hostLedger{f: &fakeSetting{}}
	_, diags := loadSource(t, src, nil, steps.Registry{"rec": l})
	if !diags.HasErrors() || diags[0].Summary != "Step depends on a host that may fail" ||
		!strings.Contains(diags[0].Detail, `rec.after depends on rec.check["a"], which is for host.web["a"], but runs where rotplan runs`) {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(diags) != 5 {
		t.Errorf("%d diagnostics, want one per host: %v", len(diags), diags)
	}
}

// TestRolloutFailureSettingsFromVariables: max_failures and rollback may
// be variables, given on the command line too, and are checked as
// constants are.
func TestRolloutFailureSettingsFromVariables(t *testing.T) {
	src := rolloutPlan(`variable "max_failures" {
  default = 0
}
variable "rollback" {
  default = "all"
}
rollout "web" {
  hosts        = host.web
  max_failures = var.max_failures
  rollback     = var.rollback
}`, "")
	load := func(vars map[string]string) ([]Rollout, string) {
		prog, diags := loadSource(t, src, vars, steps.Registry{"rec": &hostLedger{f: &fakeSetting{}}})
		if diags.HasErrors() {
			return nil, diags.Error()
		}
		return prog.Rollouts(), ""
	}
	if got, err := load(nil); err != "" || got[0].MaxFailures != 0 || got[0].Rollback != "all" {
		t.Errorf("defaults: %v %s", got, err)
	}
	if got, err := load(map[string]string{"max_failures": "2", "rollback": "failed_batch"}); err != "" || got[0].MaxFailures != 2 || got[0].Rollback != "failed_batch" {
		t.Errorf("from the command line: %v %s", got, err)
	}
	if _, err := load(map[string]string{"max_failures": "1.5"}); !strings.Contains(err, "Invalid max_failures") {
		t.Errorf("max_failures 1.5: %s", err)
	}
	if _, err := load(map[string]string{"rollback": "some"}); !strings.Contains(err, `Invalid rollback`) || !strings.Contains(err, `not "some"`) {
		t.Errorf("rollback some: %s", err)
	}
}
