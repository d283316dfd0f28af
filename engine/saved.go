package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
)

// SavedPlanFormat marks a saved plan file, so that `rotplan run FILE`
// tells one from a plan.
const SavedPlanFormat = "rotplan-saved-plan"

// SavedPlan is a preview kept for later, as `terraform plan -out` keeps
// one: what was reviewed, so that a run of it does exactly that or
// refuses. It names the plan file and holds the hashes of its source, of
// the variables and of each step's definition (as a journal's run does),
// the variables as given (non-sensitive values, and var files by path),
// and, per step, what the preview said it would do and what it found in
// place. It holds no secret: sensitive variables are kept by name and
// hash, files by digest.
type SavedPlan struct {
	Format        string    `json:"format"`
	FormatVersion int       `json:"format_version"`
	Created       time.Time `json:"created"`
	// Run identifies the plan, its variables and its steps, as the
	// journal's run_started record would.
	Run journal.RunInfo `json:"run"`
	// Steps are the steps in run order, as previewed.
	Steps []SavedStep `json:"steps"`
}

// SavedStep is one step of a saved plan, as previewed.
type SavedStep struct {
	Step     string       `json:"step"`
	Action   steps.Action `json:"action"`
	Skipped  bool         `json:"skipped,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	Observed string       `json:"observed,omitempty"`
}

// Save keeps a preview of the program for a later run. The preview must
// have no errors: a plan that would fail is not worth keeping. opts
// supplies the version and the variables as given (Version, Inputs).
func (p *Program) Save(pv *Preview, opts Options) (*SavedPlan, error) {
	if p.invalid || pv.Diagnostics.HasErrors() {
		return nil, errors.New("the preview found errors: there is no plan to keep")
	}
	s := &SavedPlan{Format: SavedPlanFormat, FormatVersion: 1, Created: time.Now().UTC(), Run: *p.runInfo(opts)}
	s.Run.PID = 0
	for _, sp := range pv.Steps {
		s.Steps = append(s.Steps, SavedStep{Step: sp.Addr, Action: sp.Action, Skipped: sp.Skipped, Reason: sp.Reason, Observed: sp.Observed})
	}
	return s, nil
}

// ReadSavedPlan decodes a saved plan; ok is false when b is not one (a plan
// file, say), and err says what is wrong with one that is.
func ReadSavedPlan(b []byte) (s *SavedPlan, ok bool, err error) {
	var head struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(b, &head) != nil || head.Format != SavedPlanFormat {
		return nil, false, nil
	}
	s = &SavedPlan{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, true, fmt.Errorf("the saved plan is damaged: %w", err)
	}
	if s.FormatVersion != 1 {
		return nil, true, fmt.Errorf("the saved plan has format version %d; this rotplan reads version 1", s.FormatVersion)
	}
	if s.Run.Plan == "" || len(s.Steps) == 0 {
		return nil, true, errors.New("the saved plan names no plan or no steps")
	}
	return s, true, nil
}

// SavedPlanChanged is a saved plan refused because what it was made from,
// or the system it previewed, changed since: running it would not do what
// was reviewed.
type SavedPlanChanged struct {
	// Created is when the plan was saved.
	Created time.Time
	// Definition is set when the plan, the variables or the working
	// directory changed; Steps lists the steps whose preview now differs.
	Definition *ChangedError
	Steps      []string
}

func (e *SavedPlanChanged) Error() string {
	var parts []string
	if e.Definition != nil {
		parts = append(parts, e.Definition.Error())
	}
	parts = append(parts, e.Steps...)
	return fmt.Sprintf("the saved plan (made %s) no longer holds: %s", e.Created.Local().Format("2006-01-02 15:04:05"), strings.Join(parts, "; "))
}

// CheckSaved compares the program and a fresh preview of it with a saved
// plan. It returns nil when running the program now would do what the
// saved plan says, step for step, on the system it found; otherwise a
// *SavedPlanChanged naming every difference.
func (p *Program) CheckSaved(s *SavedPlan, pv *Preview) error {
	e := &SavedPlanChanged{Created: s.Created}
	if c := p.Changes(&Run{Info: s.Run}); c != nil {
		c.Since = "the plan was saved"
		e.Definition = c
	}
	saved := map[string]SavedStep{}
	for _, st := range s.Steps {
		saved[st.Step] = st
	}
	for _, sp := range pv.Steps {
		st, ok := saved[sp.Addr]
		delete(saved, sp.Addr)
		switch {
		case !ok:
			e.Steps = append(e.Steps, sp.Addr+": not in the saved plan")
		case st.Action != sp.Action || st.Skipped != sp.Skipped:
			e.Steps = append(e.Steps, fmt.Sprintf("%s: was to %s, would now %s", sp.Addr, describeAction(st.Action, st.Skipped, st.Reason), describeAction(sp.Action, sp.Skipped, sp.Reason)))
		case st.Observed != sp.Observed:
			e.Steps = append(e.Steps, fmt.Sprintf("%s: what it acts on changed (was %s, now %s)", sp.Addr, orNothing(st.Observed), orNothing(sp.Observed)))
		}
	}
	for _, st := range s.Steps {
		if _, gone := saved[st.Step]; gone {
			e.Steps = append(e.Steps, st.Step+": no longer in the plan")
		}
	}
	if e.Definition == nil && len(e.Steps) == 0 {
		return nil
	}
	return e
}

// describeAction says what a previewed step was to do: "replace",
// "skip (612h left)".
func describeAction(a steps.Action, skipped bool, reason string) string {
	switch {
	case skipped:
		return "be skipped (" + reason + ")"
	case a == steps.NoChange:
		return "change nothing"
	}
	return string(a)
}

func orNothing(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}
