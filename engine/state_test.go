package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
)

// TestLastSucceeded: the last run that succeeded is found behind runs that
// failed and a journal that cannot be read, and a state directory without
// a successful run has none.
func TestLastSucceeded(t *testing.T) {
	dir := t.TempDir()
	prog := compileWith(t, `
rec "a" {
  input = "x"
}
`, nil, steps.Registry{"rec": &record{}})
	failing := compileWith(t, `
rec "a" {
  input = "x"
  fail  = "boom"
}
`, nil, steps.Registry{"rec": &record{}})
	run := func(t *testing.T, p *Program) {
		t.Helper()
		j, err := journal.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions()
		opts.Journal = j
		_, _ = p.Apply(context.Background(), opts)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	journalOf := func(seq string) string { return filepath.Join(dir, "runs", seq+".journal") }
	for _, c := range []struct {
		name string
		// then changes the state directory; want is the journal of the
		// last success, "" for none.
		then func(t *testing.T)
		want string
	}{
		{name: "no run", then: func(*testing.T) {}},
		{name: "a failed run", then: func(t *testing.T) { run(t, failing) }},
		{name: "a run that succeeded", then: func(t *testing.T) { run(t, prog) }, want: journalOf("000002")},
		{name: "then one that failed", then: func(t *testing.T) { run(t, failing) }, want: journalOf("000002")},
		{name: "then a journal that cannot be read", want: journalOf("000002"), then: func(t *testing.T) {
			if err := os.WriteFile(journalOf("000004"), []byte("not a journal\nat all\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "then a success", then: func(t *testing.T) { run(t, prog) }, want: journalOf("000005")},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.then(t)
			r, err := LastSucceeded(dir)
			got := ""
			if r != nil {
				got = r.Path
				if r.Status != journal.StatusSucceeded || r.Finished.IsZero() {
					t.Errorf("status %q, finished %v", r.Status, r.Finished)
				}
			}
			if err != nil || got != c.want {
				t.Errorf("LastSucceeded = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestUnsettled: a step stays unsettled (to be undone by a rollback
// although no outputs of it are known) from its first start with a
// snapshot until it is rolled back, except when it failed in the process
// that started it, which its kind cleaned up after.
func TestUnsettled(t *testing.T) {
	var (
		started  = journal.Record{Type: journal.StepStarted, Step: "a", Snapshot: map[string]string{"path": "f"}}
		failed   = journal.Record{Type: journal.StepFailed, Step: "a", Error: "boom"}
		resumed  = journal.Record{Type: journal.RunResumed, Run: &journal.RunInfo{Rollback: true}}
		redo     = journal.Record{Type: journal.StepRedo, Step: "a", Reason: "again"}
		done     = journal.Record{Type: journal.StepSucceeded, Step: "a", Outputs: []byte("{}")}
		undoing  = journal.Record{Type: journal.RollbackStarted, Step: "a"}
		undone   = journal.Record{Type: journal.RollbackSucceeded, Step: "a"}
		withUndo = journal.Record{Type: journal.RunStarted, Run: &journal.RunInfo{Rollback: true}}
	)
	tests := []struct {
		name    string
		records []journal.Record
		want    bool
	}{
		{"killed while started", []journal.Record{withUndo, started}, true},
		{"failed in its own process", []journal.Record{withUndo, started, failed}, false},
		{"killed, redone, failed before starting", []journal.Record{withUndo, started, resumed, redo, failed}, true},
		{"killed, redone, failed in its kind", []journal.Record{withUndo, started, resumed, redo, started, failed}, true},
		{"done, redone, failed before starting", []journal.Record{withUndo, started, done, resumed, redo, failed}, true},
		{"killed while its rollback ran", []journal.Record{withUndo, started, resumed, redo, failed, undoing}, true},
		{"rolled back", []journal.Record{withUndo, started, resumed, redo, failed, undoing, undone}, false},
		{"without rollback", []journal.Record{{Type: journal.RunStarted, Run: &journal.RunInfo{}}, started}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := foldRun(&journal.Contents{Path: "test.journal", Records: tt.records})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Steps["a"].unsettled; got != tt.want {
				t.Errorf("unsettled = %v, want %v", got, tt.want)
			}
		})
	}
}
