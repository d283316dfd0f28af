package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/internal/atomicfile"
	"github.com/rotplan/rotplan/plans"
)

// savePlan keeps a preview for 'rotplan run FILE' (see engine.SavedPlan),
// written as rotplan writes any file: owner-only, atomically.
func (c *command) savePlan(path string, l *engine.Loaded, pv *engine.Preview) error {
	saved, err := l.Program.Save(pv, engine.Options{Version: readBuildInfo().short(), Inputs: c.vars.journaled(l)})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(saved, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the plan: %w", err)
	}
	fmt.Fprintf(c.stdout, "\nSaved the plan to %s. To carry out exactly this: %s\n", path, c.runSavedCommandLine(path))
	return nil
}

// runSavedCommandLine is the command that runs a saved plan.
func (c *command) runSavedCommandLine(path string) string {
	parts := []string{"rotplan"}
	if chdir != "" {
		parts = append(parts, "-chdir="+shellQuote(chdir))
	}
	return strings.Join(append(parts, "run", shellQuote(path)), " ")
}

// maxSavedPlanSize bounds what loadSaved reads: a saved plan holds a few
// hundred bytes a step, and a plan has at most 100,000 of them per block.
const maxSavedPlanSize = 64 << 20

// loadSaved reads the file run was given; when it is a saved plan, the run
// takes the plan and the variables from it (sensitive ones, never saved,
// must be given again) and checks it before it starts (checkSaved).
// ok false means return code.
func (c *command) loadSaved() (code int, ok bool) {
	b, diags := plans.ReadLimited(c.plan, maxSavedPlanSize)
	if diags.HasErrors() {
		return 0, true // loading the plan says what is wrong
	}
	saved, isSaved, err := engine.ReadSavedPlan(b)
	switch {
	case !isSaved:
		return 0, true
	case err != nil:
		fmt.Fprintf(c.stderr, "rotplan run: %s: %v\n", c.plan, err)
		return exitInvalid, false
	}
	in := saved.Run.Inputs
	var allowed []string
	if in != nil {
		allowed = in.Withheld
	}
	for _, flag := range c.vars.flags {
		name, _, _ := strings.Cut(flag, "=")
		if !slices.Contains(allowed, name) {
			fmt.Fprintf(c.stderr, "rotplan run: %s is a saved plan, which carries its variables: -var %s is refused.\n"+
				"To run with other variables, make a new plan with rotplan plan -out.\n", c.plan, name)
			return exitInvalid, false
		}
	}
	if len(c.vars.files) > 0 {
		fmt.Fprintf(c.stderr, "rotplan run: %s is a saved plan, which carries its variables: -var-file is refused.\n", c.plan)
		return exitInvalid, false
	}
	if missing := c.vars.resumeWith(in); len(missing) > 0 {
		fmt.Fprintf(c.stderr, "rotplan run: the plan was saved with the sensitive %s %s, whose %s not saved.\n"+
			"Give %s again, with -var or %sNAME.\n",
			plural(len(missing), "variable", "variables"), strings.Join(missing, ", "),
			plural(len(missing), "value is", "values are"), plural(len(missing), "it", "them"), "ROTPLAN_VAR_")
		return exitInvalid, false
	}
	c.savedPath, c.saved = c.plan, saved
	c.plan = saved.Run.Plan
	if !c.stateDirGiven {
		c.stateDir = defaultStateDir(c.plan)
	}
	return 0, true
}

// checkSaved previews the program again, changing nothing, and refuses to
// run when the preview has errors or differs from the saved plan: the run
// would no longer do what was reviewed.
func (c *command) checkSaved(ctx context.Context, s *session) bool {
	pv := s.prog.Preview(ctx, engine.Options{Log: c.log})
	if pv.Diagnostics.HasErrors() {
		s.out.print(pv.Diagnostics)
		fmt.Fprintf(c.stderr, "rotplan run: refusing to run the saved plan %s: the run would now fail (above). Nothing was changed.\n", c.savedPath)
		return false
	}
	err := s.prog.CheckSaved(c.saved, pv)
	if err == nil {
		fmt.Fprintf(c.stdout, "rotplan: the saved plan %s (made %s) still holds: running it.\n",
			c.savedPath, c.saved.Created.Local().Format("2006-01-02 15:04:05"))
		return true
	}
	changed := err.(*engine.SavedPlanChanged)
	fmt.Fprintf(c.stderr, "rotplan run: refusing to run the saved plan %s, made %s: what it was made from, or the system, changed since:\n",
		c.savedPath, changed.Created.Local().Format("2006-01-02 15:04:05"))
	if changed.Definition != nil {
		fmt.Fprintf(c.stderr, "  - %s\n", changed.Definition)
	}
	for _, st := range changed.Steps {
		fmt.Fprintf(c.stderr, "  - %s\n", st)
	}
	fmt.Fprintf(c.stderr, "Nothing was changed. Make a new plan (rotplan plan -out FILE %s), review it, and run that.\n", shellQuote(relToWD(c.plan)))
	return false
}

// relToWD shortens an absolute path to one relative to the working
// directory when it lies below it, for commands rotplan prints.
func relToWD(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}
