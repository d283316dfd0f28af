package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
)

// The states a step can be in, as its journal tells it.
const (
	// StatePending: not started, or to be carried out again.
	StatePending = "pending"
	// StateStarted: started, with no outcome recorded: the run stopped
	// while the step was under way.
	StateStarted = "started"
	// StateSucceeded: done, its effects durable.
	StateSucceeded = "succeeded"
	// StateFailed: failed; a resume tries it again.
	StateFailed = "failed"
	// StateSkipped: not due, so not carried out; see Skipped.
	StateSkipped = "skipped"
	// StateRollingBack: its rollback started, with no outcome recorded.
	StateRollingBack = "rolling back"
	// StateRolledBack: undone after another step failed.
	StateRolledBack = "rolled back"
	// StateRollbackFailed: its rollback failed; see Error.
	StateRollbackFailed = "rollback failed"
)

// Run is a run as its journal tells it: what it carries out and where each
// step got to. Records are folded in order, so a resumed run shows each
// step's latest state.
type Run struct {
	// Path is the journal file.
	Path string
	// Info is what the run carries out, as last started or resumed.
	Info journal.RunInfo
	// Started is when the run began; Resumes how often it was resumed.
	Started time.Time
	Resumes int
	// Status is how the run finished, "" when it did not (a crash or a kill).
	Status   string
	Finished time.Time
	// Steps holds every step the journal mentions, in Order.
	Steps map[string]*StepState
	Order []string
	// Torn, when set, is a last record cut short by a crash and ignored.
	Torn *journal.TornTail
	// RollingBack is set once the run started undoing its steps: a resume
	// then finishes the rollback rather than the rotation, unless the
	// rollback cannot finish (see Program.leftInPlace), and the resume went
	// forward, which unsets it again.
	RollingBack bool
	// HostsFailed are the hosts that failed within their rollout's
	// max_failures (host_failed records), in the order they did. The run
	// went on without them, undoing their steps; RolledBack is not set
	// here.
	HostsFailed []HostFailure

	contents *journal.Contents
}

// StepState is where one step got to.
type StepState struct {
	Addr  string `json:"step"`
	State string `json:"state"`
	// Started is when the step last started; Duration how long its last
	// attempt took (zero while started).
	Started  time.Time     `json:"started,omitzero"`
	Duration time.Duration `json:"-"`
	// Intent is what it was about to do (see steps.Resumer).
	Intent map[string]string `json:"-"`
	// Snapshot is what the step's kind saved to undo it (see
	// steps.Rollbacker).
	Snapshot map[string]string `json:"-"`
	// Snapshotted is set when Snapshot was taken (it may be empty).
	Snapshotted bool `json:"-"`
	// Outputs are its non-sensitive outputs, as journaled, when succeeded.
	Outputs json.RawMessage `json:"-"`
	Facts   []journal.Fact  `json:"facts,omitempty"`
	// Checked is set when a resume found the step's effect already in place.
	Checked bool `json:"checked,omitempty"`
	// Error is the last failure.
	Error string `json:"error,omitempty"`
	// Skipped is why the step was skipped, when it was.
	Skipped string `json:"skipped,omitempty"`
	// Redone is why a resume carried the step out again, if it did.
	Redone string `json:"redone,omitempty"`
	// Attempts counts how often the step was started.
	Attempts int `json:"attempts"`
	// Superseded are the outputs of earlier results the step replaced on a
	// resume and that have not been dealt with yet (see steps.Superseder).
	Superseded []json.RawMessage `json:"-"`
	// Unchanged says why a step that succeeded changed nothing (the file
	// was already in place), "" when it changed something.
	Unchanged string `json:"unchanged,omitempty"`
	// Notes are what became of superseded results.
	Notes []string `json:"notes,omitempty"`

	// unsettled is set from the step's first start with a snapshot until
	// it is rolled back: it may have changed something, whatever the
	// journal recorded of it since. A start whose success was lost to a
	// kill leaves the change in place, and so does one redone after that,
	// whether the redo fails before it starts or in its kind's Apply.
	unsettled bool
	// settleOnFail: the step became unsettled with a start in the current
	// process, so a failure it records there is its kind's Apply failing,
	// which leaves nothing behind (as in a run that is not resumed).
	settleOnFail bool
}

// Unfinished reports whether the run stopped part way: it was killed (it
// has no end), or it failed or was interrupted after a step started, so
// something may have changed. (A run that failed before any step started
// changed nothing and needs no resume.)
func (r *Run) Unfinished() bool {
	switch {
	case cleanEnd(r.Status):
		return false
	case r.Status == "" || r.Status == journal.StatusRollbackIncomplete:
		return true
	}
	for _, s := range r.Steps {
		if s.Attempts > 0 {
			return true
		}
	}
	return false
}

// Count returns how many steps are in a state.
func (r *Run) Count(state string) int {
	n := 0
	for _, s := range r.Steps {
		if s.State == state {
			n++
		}
	}
	return n
}

// LastSucceeded reads the state directory dir's journals from the newest
// back and returns the last run that succeeded, nil when none did. A
// journal that cannot be read is passed over: it proves no success, and
// LoadRun reports it when it is the last.
func LastSucceeded(dir string) (*Run, error) {
	paths, err := journal.Runs(dir)
	if err != nil {
		return nil, err
	}
	for i := len(paths) - 1; i >= 0; i-- {
		c, err := journal.Read(paths[i])
		if err != nil || len(c.Records) == 0 {
			continue
		}
		if r, err := foldRun(c); err == nil && r.Status == journal.StatusSucceeded {
			return r, nil
		}
	}
	return nil, nil
}

// LoadRun reads the last run's journal in the state directory dir. It
// returns nil when there is none. A torn last record is left out and
// reported in Run.Torn; corruption before it is an error.
func LoadRun(dir string) (*Run, error) {
	path, err := journal.Last(dir)
	if err != nil || path == "" {
		return nil, err
	}
	c, err := journal.Read(path)
	if err != nil {
		return nil, err
	}
	if len(c.Records) == 0 {
		return nil, nil // a crash before the run's first record: nothing ran
	}
	return foldRun(c)
}

// PruneRuns removes all but the newest keep runs from the state directory
// dir: their journals and the backups they left. A run that did not end
// cleanly (its rollback incomplete, or never finished) and left backups
// keeps them, and its journal, since they may be all that is left of the
// files it replaced: the operator removes those. keep < 1 keeps every run. It returns the
// journals it removed, and the runs it kept although old, with why.
func PruneRuns(dir string, keep int) (removed, kept []string, err error) {
	if keep < 1 {
		return nil, nil, nil
	}
	paths, err := journal.Runs(dir)
	if err != nil || len(paths) <= keep {
		return nil, nil, err
	}
	var errs []error
	for _, path := range paths[:len(paths)-keep] {
		c, err := journal.Read(path)
		var run *Run
		if err == nil && len(c.Records) > 0 {
			run, err = foldRun(c)
		}
		backups := journal.BackupDir(path)
		_, statErr := os.Stat(backups)
		switch {
		case err != nil:
			kept = append(kept, fmt.Sprintf("%s: unreadable (%v)", path, err))
			continue
		case run != nil && !cleanEnd(run.Status) && statErr == nil:
			kept = append(kept, fmt.Sprintf("%s: %s, and its backups in %s may be all that is left of what it replaced", path, statusOf(run), backups))
			continue
		}
		if err := os.RemoveAll(backups); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, path)
	}
	return removed, kept, errors.Join(errs...)
}

// cleanEnd reports whether a run that ended with status needs nothing
// more: it succeeded, or what it did was undone.
func cleanEnd(status string) bool {
	switch status {
	case journal.StatusSucceeded, journal.StatusRolledBack, journal.StatusHostsFailed:
		return true
	}
	return false
}

// statusOf names how a run ended, "unfinished" when it did not.
func statusOf(r *Run) string {
	if r.Status == "" {
		return "unfinished"
	}
	return r.Status
}

func foldRun(c *journal.Contents) (*Run, error) {
	r := &Run{Path: c.Path, Steps: map[string]*StepState{}, Torn: c.Torn, contents: c}
	if first := c.Records[0]; first.Type != journal.RunStarted || first.Run == nil {
		return nil, fmt.Errorf("journal %s does not begin with a run_started record", c.Path)
	}
	step := func(addr string) *StepState {
		s, ok := r.Steps[addr]
		if !ok {
			s = &StepState{Addr: addr, State: StatePending}
			r.Steps[addr] = s
			r.Order = append(r.Order, addr)
		}
		return s
	}
	for _, rec := range c.Records {
		switch rec.Type {
		case journal.RunStarted, journal.RunResumed:
			if rec.Run == nil {
				return nil, fmt.Errorf("journal %s: %s record without run information", c.Path, rec.Type)
			}
			r.Info = *rec.Run
			if rec.Type == journal.RunStarted {
				r.Started = rec.Time
			} else {
				r.Resumes++
			}
			r.Status, r.Finished = "", time.Time{}
			for _, s := range r.Steps {
				s.settleOnFail = false // a failure in this process did not start it
			}
			for _, d := range rec.Run.Steps {
				step(d.Step)
			}
		case journal.StepStarted:
			// Steps start after a rollback only when a resume gave up
			// a rollback that could not finish (see Program.leftInPlace)
			// and went forward.
			r.RollingBack = false
			s := step(rec.Step)
			s.State, s.Started, s.Duration = StateStarted, rec.Time, 0
			s.Intent, s.Error, s.Checked = rec.Intent, "", false
			if r.Info.Rollback { // the first snapshot of a run is the one to go back to
				s.Snapshot, s.Snapshotted = rec.Snapshot, true
				s.settleOnFail = !s.unsettled
				s.unsettled = true
			}
			s.Attempts++
		case journal.StepSucceeded:
			s := step(rec.Step)
			s.State, s.Outputs, s.Facts = StateSucceeded, rec.Outputs, rec.Facts
			s.settleOnFail = false
			s.Duration, s.Checked, s.Unchanged = time.Duration(rec.Duration), rec.Checked, rec.Reason
		case journal.StepFailed:
			s := step(rec.Step)
			s.State, s.Error, s.Duration = StateFailed, rec.Error, time.Duration(rec.Duration)
			if s.settleOnFail && !rec.Unsettled {
				s.unsettled, s.settleOnFail = false, false
			}
		case journal.StepSkipped:
			s := step(rec.Step)
			s.State, s.Skipped = StateSkipped, rec.Reason
		case journal.StepRedo:
			r.RollingBack = false // as for StepStarted
			s := step(rec.Step)
			if s.State == StateSucceeded && len(s.Outputs) > 0 {
				s.Superseded = append(s.Superseded, s.Outputs)
			}
			s.State, s.Outputs, s.Facts, s.Redone = StatePending, nil, nil, rec.Reason
			s.settleOnFail = false
		case journal.StepSuperseded:
			s := step(rec.Step)
			if len(s.Superseded) > 0 {
				s.Superseded = s.Superseded[1:]
			}
			s.Notes = append(s.Notes, rec.Note)
		case journal.HostFailed:
			r.HostsFailed = append(r.HostsFailed, HostFailure{Host: rec.Host, Rollout: rec.Rollout, Step: rec.Step})
		case journal.RollbackStarted:
			// Undoing the steps of a host that failed is part of the
			// run going on, not of its end.
			r.RollingBack = r.RollingBack || rec.Host == ""
			step(rec.Step).State = StateRollingBack
		case journal.RollbackSucceeded:
			s := step(rec.Step)
			s.State, s.unsettled, s.settleOnFail = StateRolledBack, false, false
		case journal.RollbackFailed:
			s := step(rec.Step)
			s.State, s.Error = StateRollbackFailed, rec.Error
		case journal.RunFinished:
			r.Status, r.Finished = rec.Status, rec.Time
		}
	}
	return r, nil
}

// ReopenJournal opens the run's journal to append to it, cutting off a torn
// last record first.
func ReopenJournal(r *Run) (*journal.Journal, error) { return journal.Reopen(r.contents) }
