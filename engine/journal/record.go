package journal

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/rotplan/rotplan/internal/jsonenc"
)

// The record types, in the order a run writes them.
const (
	// RunStarted opens a run: Run says what plan, variables and rotplan.
	RunStarted = "run_started"
	// RunResumed marks where `rotplan resume` took over; Run is updated.
	RunResumed = "run_resumed"
	// StepStarted is written, durably, before a step changes anything:
	// Inputs is the hash of its evaluated arguments, Intent (optional) what
	// it is about to do, free of secrets.
	StepStarted = "step_started"
	// StepSucceeded is written once a step's effects are complete. Outputs
	// holds its non-sensitive outputs; Facts what `status` shows. Checked is
	// true when resume found the effect in place rather than carrying it out;
	// Reason, when set, says why the step changed nothing.
	StepSucceeded = "step_succeeded"
	// StepFailed records a step's error.
	StepFailed = "step_failed"
	// StepSkipped records that a step was not carried out because it was
	// not due (Reason: "612h left"), or because every step it depends on
	// was skipped. It changed nothing.
	StepSkipped = "step_skipped"
	// StepRedo records that resume will carry out a step again, and Reason
	// why. A step that had succeeded loses its outputs; they are kept as
	// superseded.
	StepRedo = "step_redo"
	// StepSuperseded records what became of a superseded result (Note: a
	// certificate's serial, revoked or not).
	StepSuperseded = "step_superseded"
	// RollbackStarted, RollbackSucceeded and RollbackFailed (with Error)
	// record the undoing of a step after a failure, as the forward records
	// do its doing.
	RollbackStarted   = "rollback_started"
	RollbackSucceeded = "rollback_succeeded"
	RollbackFailed    = "rollback_failed"
	// HostFailed records that a step for Host failed (Step, Error) and
	// that its Rollout lets the host fail: the host leaves the run, and
	// the rollback records that follow for its steps (with Host set)
	// undo them alone, while the run goes on.
	HostFailed = "host_failed"
	// RunFinished closes a run with its Status.
	RunFinished = "run_finished"
)

// The statuses a run finishes with.
const (
	StatusSucceeded   = "succeeded"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
	// StatusRolledBack: a step failed and every completed step was undone.
	StatusRolledBack = "rolled_back"
	// StatusRollbackIncomplete: a step failed and some completed steps
	// could not be undone; resume tries them again.
	StatusRollbackIncomplete = "rollback_incomplete"
	// StatusHostsFailed: every step was done except those for hosts that
	// failed within their rollout's max_failures, and those hosts' steps
	// were undone.
	StatusHostsFailed = "hosts_failed"
)

// Record is one line of a journal. Which fields are set depends on Type.
type Record struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`

	Run *RunInfo `json:"run,omitempty"`

	Step     string            `json:"step,omitempty"`
	Inputs   string            `json:"inputs,omitempty"`
	Intent   map[string]string `json:"intent,omitempty"`
	Snapshot map[string]string `json:"snapshot,omitempty"`
	Outputs  json.RawMessage   `json:"outputs,omitempty"`
	Facts    []Fact            `json:"facts,omitempty"`
	Checked  bool              `json:"checked,omitempty"`
	Duration Duration          `json:"duration,omitempty"`
	Error    string            `json:"error,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Note     string            `json:"note,omitempty"`
	// Unsettled, on a step_failed record, says the step failed after its
	// change may have taken effect: a rollback undoes it.
	Unsettled bool `json:"unsettled,omitempty"`
	// Host and Rollout, on a host_failed record, are the host instance
	// that failed and its rollout; Host, on a rollback record, says the
	// step was undone because its host failed, not the run.
	Host    string `json:"host,omitempty"`
	Rollout string `json:"rollout,omitempty"`

	Status string `json:"status,omitempty"`
}

// Fact is one named, printable detail of a step's result, journaled for
// `rotplan status` (a kind's summary: a serial, an expiry, a digest). It is
// never a secret.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RunInfo identifies what a run carries out, so that resume can tell whether
// the plan or the variables changed since.
type RunInfo struct {
	Plan     string `json:"plan"`
	PlanHash string `json:"plan_hash"`
	VarsHash string `json:"vars_hash"`
	// VarHashes hash each variable's value by name, so that a refusal can
	// say which changed (absent in journals older than it).
	VarHashes map[string]string `json:"var_hashes,omitempty"`
	Version   string            `json:"version"`
	PID       int               `json:"pid"`
	// Dir is the working directory, against which relative paths in the
	// plan's steps are resolved.
	Dir string `json:"dir"`
	// Steps are the plan's steps in execution order, each with the hash of
	// its definition as evaluated before the run.
	Steps []StepDefinition `json:"steps"`
	// Forced is set on a resume that went ahead despite changes.
	Forced bool `json:"forced,omitempty"`
	// Rollback is set when this part of the run saved what each step
	// replaces, so that a failure can be undone.
	Rollback bool `json:"rollback,omitempty"`
	// Inputs are the variables the run was given from outside the plan,
	// so that resume can give them again; nil in journals older than it.
	Inputs *Inputs `json:"inputs,omitempty"`
}

// Inputs are the variables a run was given from outside the plan, as the
// operator gave them, and the run's options that resume carries on with.
// They hold no secret: the values of sensitive variables given on the
// command line are left out, and only their names kept.
type Inputs struct {
	// VarFiles are the -var-file files, absolute, in the order given.
	// Resume reads them again: they may hold secrets, which stay there.
	VarFiles []string `json:"var_files,omitempty"`
	// Vars are the -var flags (NAME=VALUE) of variables that are not
	// sensitive, in the order given.
	Vars []string `json:"vars,omitempty"`
	// Env are the ROTPLAN_VAR_NAME=VALUE environment variables of
	// variables that are not sensitive.
	Env []string `json:"env,omitempty"`
	// Withheld are the names of sensitive variables given by -var or the
	// environment: resume must be given them again.
	Withheld []string `json:"withheld,omitempty"`
	// KeepBackups is the run's -keep-backups.
	KeepBackups bool `json:"keep_backups,omitempty"`
}

// Duration is a time.Duration journaled in milliseconds, readable by people
// and by any JSON reader.
type Duration time.Duration

// MarshalJSON writes the duration as a number of milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(d) / float64(time.Millisecond))
}

// UnmarshalJSON reads a number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// StepDefinition is a step's address and the hash of its definition.
type StepDefinition struct {
	Step       string `json:"step"`
	Definition string `json:"definition"`
}

// appendRecord appends r as JSON, as json.Marshal(r) would write it but
// without its reflection: a run writes a record or two per step. The rare
// record with a Run goes through json.Marshal. Outputs must hold valid
// JSON (the engine writes it); it is copied as it is.
func appendRecord(b []byte, r Record) ([]byte, error) {
	if r.Run != nil {
		body, err := json.Marshal(r)
		return append(b, body...), err
	}
	b = append(b, `{"type":`...)
	b = jsonenc.AppendString(b, r.Type)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	field := func(name, v string) {
		if v != "" {
			b = append(b, ',', '"')
			b = append(b, name...)
			b = append(b, '"', ':')
			b = jsonenc.AppendString(b, v)
		}
	}
	strMap := func(name string, m map[string]string) {
		if len(m) == 0 {
			return
		}
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, `":{`...)
		for i, k := range slices.Sorted(maps.Keys(m)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, k)
			b = append(b, ':')
			b = jsonenc.AppendString(b, m[k])
		}
		b = append(b, '}')
	}
	field("step", r.Step)
	field("inputs", r.Inputs)
	strMap("intent", r.Intent)
	strMap("snapshot", r.Snapshot)
	if len(r.Outputs) > 0 {
		b = append(b, `,"outputs":`...)
		b = append(b, r.Outputs...)
	}
	if len(r.Facts) > 0 {
		b = append(b, `,"facts":[`...)
		for i, f := range r.Facts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = jsonenc.AppendString(b, f.Name)
			b = append(b, `,"value":`...)
			b = jsonenc.AppendString(b, f.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if r.Checked {
		b = append(b, `,"checked":true`...)
	}
	if r.Duration != 0 {
		b = append(b, `,"duration":`...)
		b = strconv.AppendFloat(b, float64(r.Duration)/float64(time.Millisecond), 'f', -1, 64)
	}
	field("error", r.Error)
	field("reason", r.Reason)
	field("note", r.Note)
	if r.Unsettled {
		b = append(b, `,"unsettled":true`...)
	}
	field("host", r.Host)
	field("rollout", r.Rollout)
	field("status", r.Status)
	return append(b, '}'), nil
}
