package engine

import (
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine/journal"
)

// TestRunLeftInPlaceIsFinishedForward: steps carried out under
// -rollback=false have nothing saved to undo them. A resume that fails
// again, even one asked to roll back, must leave the run in place rather
// than start a rollback that can never finish (which trapped every later
// resume in exit 4); once the cause is fixed, resume finishes the run.
func TestRunLeftInPlaceIsFinishedForward(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
undo "b" {
  depends_on = [undo.a]
}
undo "c" {
  depends_on = [undo.b]
}
`
	tests := []struct {
		name string
		// start leaves a run in dir unfinished, with undo.b carried out
		// under -rollback=false and undo.c failed.
		start func(t *testing.T, prog *Program, dir string)
	}{
		{"run -rollback=false", func(t *testing.T, prog *Program, dir string) {
			if _, err := applyRollback(t, prog, dir, func(o *Options) { o.Rollback = false }); err == nil {
				t.Fatal("the run succeeded")
			}
		}},
		{"its rollback stuck (earlier versions)", func(t *testing.T, prog *Program, dir string) {
			if _, err := applyRollback(t, prog, dir, func(o *Options) { o.Rollback = false }); err == nil {
				t.Fatal("the run succeeded")
			}
			// What a resume that rolled back left: undo.b could not be
			// undone, and every resume after it only went back.
			j, err := ReopenJournal(loadRun(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			for _, r := range []journal.Record{
				{Type: journal.RollbackStarted, Step: "undo.b"},
				{Type: journal.RollbackFailed, Step: "undo.b", Error: "nothing was saved to undo it with"},
				{Type: journal.RunFinished, Status: journal.StatusRollbackIncomplete},
			} {
				if err := j.Append(r); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"killed, then resumed with -rollback=false", func(t *testing.T, prog *Program, dir string) {
			// A run killed once undo.a was done, with its snapshot.
			other := t.TempDir()
			if _, err := applyRollback(t, prog, other, nil); err == nil {
				t.Fatal("the run succeeded")
			}
			writeJournal(t, dir, journalUpTo(t, other, isRecord(journal.StepSucceeded, "undo.a")))
			if _, err := resumeWith(t, prog, dir, func(o *Options) { o.Rollback = false }); err == nil {
				t.Fatal("the resume succeeded")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			l.fail["undo.c"] = "the cause"
			prog := compileWith(t, src, nil, l.kinds())
			dir := t.TempDir()
			tt.start(t, prog, dir)

			// The cause still stands; the operator asks for a rollback.
			n := l.eventCount()
			report, err := resumeWith(t, prog, dir, func(o *Options) { o.Rollback = true })
			if err == nil {
				t.Fatal("the resume succeeded although undo.c still fails")
			}
			for _, e := range l.since(n) {
				if strings.HasPrefix(e, "undo ") {
					t.Errorf("the resume rolled back (%s): nothing was saved to undo undo.b with", e)
				}
			}
			if report.Rollback != RollbackNone {
				t.Errorf("Report.Rollback = %q, want none", report.Rollback)
			}
			if !strings.Contains(strings.Join(report.Warnings, "\n"), "undo.b") {
				t.Errorf("no warning names undo.b, which cannot be undone: %q", report.Warnings)
			}
			run := loadRun(t, dir)
			if run.RollingBack || run.Status != journal.StatusFailed || !run.Unfinished() {
				t.Errorf("after the failed resume: status %q, rolling back %v; want %q, to finish forward", run.Status, run.RollingBack, journal.StatusFailed)
			}

			// The cause fixed, a resume (still asking for a rollback)
			// finishes the run.
			l.mu.Lock()
			delete(l.fail, "undo.c")
			l.mu.Unlock()
			if _, err := resumeWith(t, prog, dir, func(o *Options) { o.Rollback = true }); err != nil {
				t.Fatalf("resume once the cause is fixed: %v", err)
			}
			checkFinished(t, dir, prog)
		})
	}
}
