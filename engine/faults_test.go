package engine

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/fullfs"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
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

// fillingKind is undoKind whose Apply, once done, fills the filesystem at
// dir: the step's own success, and everything after it, finds the state
// directory full.
type fillingKind struct {
	undoKind
	t   *testing.T
	dir string
}

func (k fillingKind) Apply(ctx context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	out, err := k.undoKind.Apply(ctx, env, cfg)
	fullfs.Fill(k.t, k.dir)
	return out, err
}

// TestJournalFullMidRun: the state directory fills up during a run. The
// run stops, and undoes what it did from what it knows in memory, including
// a step whose success never reached the journal (an issued certificate
// must still be revoked). When the rollback frees space (the run's backups
// go), the journal gets the rest and shows the run rolled back; when it
// does not, the run says that the journal does not show how it ended.
func TestJournalFullMidRun(t *testing.T) {
	tests := []struct {
		name string
		// output is the length of fill.b's output: past what is left of
		// the journal's last page, its success waits in memory and the
		// next durable record fails; past the most the journal keeps in
		// memory, its own success fails.
		output      int
		keepBackups bool // the space stays taken
		freed       bool // whether the journal can be written again
	}{
		{"the rollback frees space", 5000, false, true},
		{"the disk stays full", 5000, true, false},
		{"the success is lost", 70000, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := `
undo "a" {
  input = "a"
}
fill "b" {
  depends_on = [undo.a]
  input      = "` + strings.Repeat("x", tt.output) + `"
}
undo "c" {
  depends_on = [fill.b]
}
`
			dir := fullfs.Mount(t, 256<<10)
			l := newLedger()
			kinds := l.kinds()
			kinds["fill"] = fillingKind{undoKind{l}, t, dir}
			prog := compileWith(t, src, nil, kinds)
			report, err := applyRollback(t, prog, dir, func(o *Options) { o.KeepBackups = tt.keepBackups })
			if err == nil || !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
				t.Fatalf("Apply = %v, want the journal's %q", err, syscall.ENOSPC.Error())
			}
			events := l.since(0)
			if slices.Contains(events, "apply undo.c") {
				t.Error("undo.c started after the journal failed")
			}
			undoneOnce(t, events, []string{"undo.a", "fill.b"})
			if got := rollbackOutcomes(t, report); got["undo.a"] != RolledBack || got["fill.b"] != RolledBack {
				t.Errorf("rollback outcomes %v, want undo.a and fill.b rolled back", got)
			}
			if report.Rollback != RollbackComplete {
				t.Errorf("Report.Rollback = %q, want %q", report.Rollback, RollbackComplete)
			}
			run := loadRun(t, dir)
			warnings := strings.Join(report.Warnings, "\n")
			if !tt.freed {
				if !run.Unfinished() || !strings.Contains(warnings, run.Path) || !strings.Contains(warnings, "-fresh") {
					t.Errorf("with the disk still full: journal status %q; warnings %q, want the journal named and what to do", run.Status, warnings)
				}
				return
			}
			if run.Status != journal.StatusRolledBack || run.Unfinished() {
				t.Errorf("journal status %q, want %q once space was freed", run.Status, journal.StatusRolledBack)
			}
			for _, addr := range []string{"undo.a", "fill.b"} {
				if s := run.Steps[addr]; s == nil || s.State != StateRolledBack {
					t.Errorf("journal: %s is %+v, want rolled back", addr, s)
				}
			}
		})
	}
}
