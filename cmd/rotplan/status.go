package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
)

const statusUsage = `Usage: rotplan status [options] PLAN.hcl

Shows the last run of the plan as its journal tells it: each step's state,
when it started, how long it took, and what it produced that is not secret
(serials, expiry, digests). Reads the journal only; needs no variables.

Exit codes are those the last run ended with: 0 succeeded (or no run
recorded), 1 failed, interrupted or unfinished, 3 rolled back, 4 rollback
incomplete, 5 done except for hosts a rollout let fail (rolled back); 1
too when the journal cannot be read, or instead of 0 when the
-metrics-file cannot be written.

Options:
`

// statusJSON is the -json document. Its fields are part of rotplan's
// interface: add to it, never rename.
type statusJSON struct {
	Journal  string           `json:"journal"`
	Plan     string           `json:"plan"`
	Version  string           `json:"version"`
	PID      int              `json:"pid"`
	Status   string           `json:"status"` // succeeded, failed, interrupted, unfinished or none
	Started  *time.Time       `json:"started,omitempty"`
	Finished *time.Time       `json:"finished,omitempty"`
	Resumes  int              `json:"resumes"`
	Warning  string           `json:"warning,omitempty"`
	Steps    []statusStepJSON `json:"steps"`
}

type statusStepJSON struct {
	Step       string            `json:"step"`
	State      string            `json:"state"`
	Started    *time.Time        `json:"started,omitempty"`
	DurationMS float64           `json:"duration_ms"`
	Attempts   int               `json:"attempts"`
	Facts      map[string]string `json:"facts,omitempty"`
	Checked    bool              `json:"checked,omitempty"`
	Redone     string            `json:"redone,omitempty"`
	Skipped    string            `json:"skipped,omitempty"`
	Unchanged  string            `json:"unchanged,omitempty"`
	Error      string            `json:"error,omitempty"`
	Notes      []string          `json:"notes,omitempty"`

	factList []string // name=value in the kind's order, for the table
}

func statusCommand(args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "", "read the journal in `DIR` (default: .rotplan beside the plan file)")
	metricsFile := fs.String("metrics-file", "", statusMetricsUsage)
	asJSON := fs.Bool("json", false, "print a JSON document instead of a table")
	var noColour bool
	colourFlag(fs, &noColour)
	fs.Usage = func() {
		fmt.Fprint(stderr, statusUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nExample:\n  rotplan status -json examples/prod.hcl\n")
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "rotplan status: give exactly one plan file")
		fs.Usage()
		return exitInvalid
	}
	if *stateDir == "" {
		*stateDir = defaultStateDir(fs.Arg(0))
	}
	run, err := engine.LoadRun(*stateDir)
	if !writeStatusMetrics(stderr, *metricsFile, fs.Arg(0), *stateDir, run, err) {
		// The status is shown all the same; a timer sees the failure in
		// the exit code, unless the last run's own says more.
		defer func() {
			if code == exitOK {
				code = exitFailed
			}
		}()
	}
	if err != nil {
		fmt.Fprintf(stderr, "rotplan status: %v\n", err)
		return exitFailed
	}
	doc := statusDocument(run)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintf(stderr, "rotplan status: %v\n", err)
			return exitFailed
		}
		return statusExitCode(run)
	}
	if run == nil {
		fmt.Fprintf(stdout, "No run recorded in %s.\n", *stateDir)
		return exitOK
	}
	printStatus(stdout, doc, colours(stdout, noColour))
	if run.Unfinished() {
		given := fs.Lookup("state-dir").Value.String()
		if given == defaultStateDir(fs.Arg(0)) {
			given = ""
		}
		fmt.Fprintf(stdout, "\nThe run did not finish. Finish it with: %s\n", resumeHint(fs.Arg(0), given, withheldOf(run)))
	}
	return statusExitCode(run)
}

// statusExitCode is the exit code the last run ended with, as run and
// resume give it, so that a script can ask status how the last run went.
func statusExitCode(run *engine.Run) int {
	if run == nil {
		return exitOK
	}
	switch run.Status {
	case journal.StatusSucceeded:
		return exitOK
	case journal.StatusRolledBack:
		return exitRolledBack
	case journal.StatusRollbackIncomplete:
		return exitRollbackIncomplete
	case journal.StatusHostsFailed:
		return exitHostsFailed
	}
	return exitFailed
}

func statusDocument(run *engine.Run) statusJSON {
	if run == nil {
		return statusJSON{Status: "none", Steps: []statusStepJSON{}}
	}
	doc := statusJSON{
		Journal: run.Path, Plan: run.Info.Plan, Version: run.Info.Version, PID: run.Info.PID,
		Status: run.Status, Started: timePtr(run.Started), Finished: timePtr(run.Finished), Resumes: run.Resumes,
		Steps: []statusStepJSON{},
	}
	if doc.Status == "" {
		doc.Status = "unfinished"
	}
	if run.Torn != nil {
		doc.Warning = run.Torn.Warning(run.Path)
	}
	for _, addr := range run.Order {
		s := run.Steps[addr]
		st := statusStepJSON{
			Step: addr, State: s.State, Started: timePtr(s.Started), DurationMS: float64(s.Duration) / float64(time.Millisecond),
			Attempts: s.Attempts, Checked: s.Checked, Redone: s.Redone, Skipped: s.Skipped, Unchanged: s.Unchanged, Error: s.Error, Notes: s.Notes,
		}
		if len(s.Facts) > 0 {
			st.Facts = map[string]string{}
			for _, f := range s.Facts {
				st.Facts[f.Name] = f.Value
				st.factList = append(st.factList, f.Name+"="+f.Value)
			}
		}
		doc.Steps = append(doc.Steps, st)
	}
	return doc
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// printStatus prints the status table; pal paints how the run ended.
func printStatus(w io.Writer, doc statusJSON, pal palette) {
	fmt.Fprintf(w, "Last run of %s: %s\n", doc.Plan, paintStatus(pal, doc.Status))
	fmt.Fprintf(w, "  started %s", doc.Started.Local().Format("2006-01-02 15:04:05"))
	if doc.Resumes > 0 {
		fmt.Fprintf(w, ", resumed %d time(s)", doc.Resumes)
	}
	if doc.Finished != nil {
		fmt.Fprintf(w, ", finished %s", doc.Finished.Local().Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(w, "\n  journal %s (rotplan %s, pid %d)\n", doc.Journal, doc.Version, doc.PID)
	if doc.Warning != "" {
		fmt.Fprintf(w, "  %s: %s\n", pal.caution("warning"), doc.Warning)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATE\tSTARTED\tDURATION\tDETAILS")
	for _, s := range doc.Steps {
		started, duration := "-", "-"
		if s.Started != nil {
			started = s.Started.Local().Format("15:04:05")
		}
		if s.State == engine.StateSucceeded || s.State == engine.StateFailed {
			duration = roundDuration(time.Duration(s.DurationMS * float64(time.Millisecond))).String()
		}
		details := s.factList
		if s.Checked {
			details = append(details, "(found done on resume)")
		}
		if s.Skipped != "" {
			details = append(details, "(skipped: "+s.Skipped+")")
		}
		if s.Unchanged != "" {
			details = append(details, "(no change: "+s.Unchanged+")")
		}
		if s.Redone != "" {
			details = append(details, "(ran again: "+s.Redone+")")
		}
		if s.Error != "" {
			details = append(details, "error: "+firstLine(s.Error))
		}
		details = append(details, s.Notes...)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Step, s.State, started, duration, strings.Join(details, " "))
	}
	tw.Flush()
}

// paintStatus paints how a run ended as its summary is painted.
func paintStatus(pal palette, status string) string {
	switch status {
	case journal.StatusSucceeded:
		return pal.good(status)
	case journal.StatusRolledBack, journal.StatusInterrupted, journal.StatusHostsFailed, "unfinished":
		return pal.caution(status)
	case "none":
		return status
	}
	return pal.bad(status)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
