package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// rollbackRepeats is how often the rollback concurrency tests repeat a run
// at each parallelism: the order in which independent rollbacks end is not
// deterministic.
const rollbackRepeats = 20

// ledger is the shared state behind the rollback tests' fake kinds. It logs,
// in order, what they are asked to do: "snapshot X", "apply X", and "undo X"
// and "undone X" when a Rollback of step X begins and ends, so that a test
// can tell which rollbacks overlapped.
type ledger struct {
	mu       sync.Mutex
	events   []string
	fail     map[string]string // steps whose Apply fails, with the message
	undoFail map[string]string // steps whose Rollback fails, with the message
	// unsettle: steps of fail whose Apply fails after its change may have
	// taken effect (a *steps.UnsettledError).
	unsettle map[string]bool

	snapshots map[string]int    // Snapshot calls per step
	backups   map[string]string // per step, the Env.Backups its Snapshot had
	// Per step, the snapshot and the output attribute each Rollback got.
	undoneWith    map[string][]map[string]string
	undoneOutputs map[string][]string

	// journalPath, when set, is read by each Snapshot: journaled holds, per
	// step, the records (recordTypes) the journal had at that moment.
	journalPath string
	journaled   map[string][]string

	running, most int // Rollbacks under way at once, and the most seen
	// meeting, when set, holds Rollbacks until enough run at once.
	meeting *meeting
}

func newLedger() *ledger {
	return &ledger{
		fail: map[string]string{}, undoFail: map[string]string{}, unsettle: map[string]bool{},
		snapshots: map[string]int{}, backups: map[string]string{},
		undoneWith: map[string][]map[string]string{}, undoneOutputs: map[string][]string{},
		journaled: map[string][]string{},
	}
}

// kinds returns the fake kinds: undo a steps.Rollbacker, restore a
// steps.Rollbacker that is steps.RestoreAware, keep a kind with nothing to
// undo.
func (l *ledger) kinds() steps.Registry {
	return steps.Registry{"undo": undoKind{l}, "restore": restoreKind{l}, "keep": keepKind{l}}
}

func (l *ledger) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"input": &hcldec.AttrSpec{Name: "input", Type: cty.String},
		// log is a file each Rollback appends "inverse <step>" to.
		"log": &hcldec.AttrSpec{Name: "log", Type: cty.String},
	}
}

func (l *ledger) Outputs() map[string]steps.Output {
	return map[string]steps.Output{
		"output": {Type: cty.String},
		"secret": {Type: cty.String, Sensitive: true},
	}
}

func (l *ledger) Validate(steps.Config) error { return nil }

func (l *ledger) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	addr := env.Log.Name()
	l.mu.Lock()
	l.events = append(l.events, "apply "+addr)
	msg, unsettle := l.fail[addr], l.unsettle[addr]
	l.mu.Unlock()
	switch {
	case msg != "" && unsettle:
		return cty.NilVal, &steps.UnsettledError{Err: errors.New(msg)}
	case msg != "":
		return cty.NilVal, errors.New(msg)
	}
	return result("out:" + cfg.String("input")), nil
}

// snapshot keeps a file in the step's backup directory and returns which
// of the step's snapshots it is ("n").
func (l *ledger) snapshot(_ context.Context, env *steps.Env, _ steps.Config) (map[string]string, error) {
	addr := env.Log.Name()
	var seen []string
	if l.journalPath != "" {
		c, err := journal.Read(l.journalPath)
		if err != nil {
			return nil, err
		}
		seen = recordTypes(c.Records)
	}
	if env.Backups != "" {
		if err := os.MkdirAll(env.Backups, 0o700); err != nil { // as kinds do, on first use
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(env.Backups, "saved"), []byte(addr), 0o600); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.snapshots[addr]++
	l.events = append(l.events, "snapshot "+addr)
	l.backups[addr] = env.Backups
	l.journaled[addr] = seen
	return map[string]string{"step": addr, "n": strconv.Itoa(l.snapshots[addr])}, nil
}

func (l *ledger) rollback(_ context.Context, env *steps.Env, cfg steps.Config, outputs cty.Value, snap map[string]string) error {
	addr := env.Log.Name()
	l.mu.Lock()
	l.events = append(l.events, "undo "+addr)
	l.running++
	l.most = max(l.most, l.running)
	l.undoneWith[addr] = append(l.undoneWith[addr], snap)
	out := "(unknown)"
	if v := outputs.GetAttr("output"); v.IsKnown() && !v.IsNull() {
		out = v.AsString()
	}
	l.undoneOutputs[addr] = append(l.undoneOutputs[addr], out)
	msg, m := l.undoFail[addr], l.meeting
	l.mu.Unlock()

	if m != nil {
		m.arrive()
	}
	var err error
	if msg != "" {
		err = errors.New(msg)
	} else if path := cfg.String("log"); path != "" {
		err = appendLine(path, "inverse "+addr)
	}

	l.mu.Lock()
	l.running--
	l.events = append(l.events, "undone "+addr)
	l.mu.Unlock()
	return err
}

// since returns the events after the first n.
func (l *ledger) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events[n:]...)
}

func (l *ledger) eventCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

type undoKind struct{ *ledger }

func (k undoKind) Snapshot(ctx context.Context, env *steps.Env, cfg steps.Config) (map[string]string, error) {
	return k.ledger.snapshot(ctx, env, cfg)
}
func (k undoKind) Rollback(ctx context.Context, env *steps.Env, cfg steps.Config, outputs cty.Value, snap map[string]string) error {
	return k.ledger.rollback(ctx, env, cfg, outputs, snap)
}

type restoreKind struct{ *ledger }

func (k restoreKind) Snapshot(ctx context.Context, env *steps.Env, cfg steps.Config) (map[string]string, error) {
	return k.ledger.snapshot(ctx, env, cfg)
}
func (k restoreKind) Rollback(ctx context.Context, env *steps.Env, cfg steps.Config, outputs cty.Value, snap map[string]string) error {
	return k.ledger.rollback(ctx, env, cfg, outputs, snap)
}
func (restoreKind) RollbackAfterRestore() {}

type keepKind struct{ *ledger }

// The kinds' abilities are the methods of their own type: ledger's are
// unexported so that embedding it does not lend them to keepKind.
var (
	_ steps.Rollbacker   = undoKind{}
	_ steps.Rollbacker   = restoreKind{}
	_ steps.RestoreAware = restoreKind{}
	_ steps.Step         = keepKind{}
)

// meeting holds every Rollback that arrives until want of them have, so
// that a test sees whether they run at once. It gives up after a while,
// and the test then sees fewer at once than it wanted.
type meeting struct {
	want    int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func newMeeting(want int) *meeting { return &meeting{want: want, all: make(chan struct{})} }

func (m *meeting) arrive() {
	m.mu.Lock()
	m.arrived++
	if m.arrived == m.want {
		close(m.all)
	}
	m.mu.Unlock()
	select {
	case <-m.all:
	case <-time.After(5 * time.Second):
	}
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	return errors.Join(err, f.Close())
}

// rollbackObserver also hears about rollbacks: "undo X" as one starts and
// "undone X <outcome>" as it ends.
type rollbackObserver struct{ recordingObserver }

func (o *rollbackObserver) RollbackStarted(addr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "undo "+addr)
}

func (o *rollbackObserver) RollbackFinished(r StepResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "undone "+r.Addr+" "+string(r.Outcome))
}

var _ RollbackObserver = (*rollbackObserver)(nil)

// applyRollback runs Apply with rollback on and a new journal in the state
// directory dir; adjust, when set, changes the options first.
func applyRollback(t *testing.T, prog *Program, dir string, adjust func(*Options)) (*Report, error) {
	t.Helper()
	j, err := journal.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	opts := testOptions()
	opts.Journal, opts.Rollback = j, true
	if adjust != nil {
		adjust(&opts)
	}
	return prog.Apply(context.Background(), opts)
}

// resumeWith is resume with the options adjust changes.
func resumeWith(t *testing.T, prog *Program, dir string, adjust func(*Options)) (*Report, error) {
	t.Helper()
	run := loadRun(t, dir)
	j, err := ReopenJournal(run)
	if err != nil {
		t.Fatalf("ReopenJournal: %v", err)
	}
	defer j.Close()
	opts := testOptions()
	opts.Journal = j
	if adjust != nil {
		adjust(&opts)
	}
	return prog.Resume(context.Background(), run, opts)
}

// rollbackOutcomes maps each step in Report.RollbackSteps to its outcome,
// failing if one is listed twice or its error does not match its outcome.
func rollbackOutcomes(t *testing.T, r *Report) map[string]Outcome {
	t.Helper()
	got := map[string]Outcome{}
	for _, s := range r.RollbackSteps {
		if _, dup := got[s.Addr]; dup {
			t.Errorf("%s is listed twice in RollbackSteps", s.Addr)
		}
		got[s.Addr] = s.Outcome
		if (s.Outcome == RollbackFailed) != (s.Err != nil) {
			t.Errorf("%s: rollback outcome %s with error %v", s.Addr, s.Outcome, s.Err)
		}
	}
	return got
}

func rollbackErr(r *Report, addr string) *StepError {
	for _, s := range r.RollbackSteps {
		if s.Addr == addr {
			return s.Err
		}
	}
	return nil
}

// occurrences returns how often each event occurs.
func occurrences(events []string) map[string]int {
	n := map[string]int{}
	for _, e := range events {
		n[e]++
	}
	return n
}

// undoneOnce checks that the ledger's events undo each of want exactly
// once and nothing else.
func undoneOnce(t *testing.T, events []string, want []string) {
	t.Helper()
	var got []string
	for e, n := range occurrences(events) {
		addr, ok := strings.CutPrefix(e, "undo ")
		if !ok {
			continue
		}
		if n != 1 {
			t.Errorf("%s rolled back %d times, want once", addr, n)
		}
		got = append(got, addr)
	}
	sort.Strings(got)
	want = slices.Sorted(slices.Values(want))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rolled back %v, want %v (events %v)", got, want, events)
	}
}

// undoneBefore checks, for each pair, that the rollback of the first step
// ended before that of the second began.
func undoneBefore(t *testing.T, events []string, pairs [][2]string) {
	t.Helper()
	pos := map[string]int{}
	for i, e := range events {
		if _, ok := pos[e]; !ok {
			pos[e] = i
		}
	}
	for _, p := range pairs {
		end, ok1 := pos["undone "+p[0]]
		start, ok2 := pos["undo "+p[1]]
		if !ok1 || !ok2 || end > start {
			t.Errorf("%s's rollback must end before %s's begins; events %v", p[0], p[1], events)
		}
	}
}

// checkRollbackJournal checks the rollback records of a run's journal: one
// rollback_started and one outcome per step in want (rollback_succeeded, or
// rollback_failed for those in failed), all after the run's last forward
// record, and the run_finished status at the end.
func checkRollbackJournal(t *testing.T, recs []journal.Record, want []string, failed map[string]bool, status string) {
	t.Helper()
	lastForward := -1
	started, ended := map[string]int{}, map[string]int{}
	for i, r := range recs {
		switch r.Type {
		case journal.StepStarted, journal.StepSucceeded, journal.StepFailed:
			lastForward = i
		case journal.RollbackStarted:
			started[r.Step]++
			if i < lastForward {
				t.Errorf("rollback_started %s comes before a step record", r.Step)
			}
		case journal.RollbackSucceeded:
			ended[r.Step]++
			if failed[r.Step] {
				t.Errorf("%s journaled as rolled back, want rollback_failed", r.Step)
			}
		case journal.RollbackFailed:
			ended[r.Step]++
			if !failed[r.Step] {
				t.Errorf("%s journaled as rollback_failed (%s)", r.Step, r.Error)
			}
			if r.Error == "" {
				t.Errorf("rollback_failed %s without an error", r.Step)
			}
		}
	}
	wantCount := map[string]int{}
	for _, addr := range want {
		wantCount[addr] = 1
	}
	if !reflect.DeepEqual(started, wantCount) || !reflect.DeepEqual(ended, wantCount) {
		t.Errorf("rollback records: started %v, ended %v; want one each for %v\n%v", started, ended, want, recordTypes(recs))
	}
	if last := recs[len(recs)-1]; last.Type != journal.RunFinished || last.Status != status {
		t.Errorf("the journal ends with %s %q, want run_finished %q", last.Type, last.Status, status)
	}
}

func TestRollbackUndoesCompletedStepsInReverseOrder(t *testing.T) {
	tests := []struct {
		name string
		src  string
		fail []string // steps whose Apply fails
		undo []string // the steps to undo
		// Each pair: the first step's rollback ends before the second's
		// begins.
		before [][2]string
	}{
		{
			name: "through a step with nothing to undo",
			src: `
undo "a" {
  input = "a"
}
undo "b" {
  input = undo.a.output
}
keep "k" {
  input = undo.b.output
}
undo "c" {
  input = keep.k.output
}
undo "d" {
  input = undo.a.output
}
undo "e" {
  depends_on = [undo.c, undo.d]
}
undo "x" {
  input = "x"
}
undo "bad" {
  depends_on = [undo.e, undo.x]
}
undo "never" {
  input = undo.bad.output
}
`,
			fail:   []string{"undo.bad"},
			undo:   []string{"undo.a", "undo.b", "undo.c", "undo.d", "undo.e", "undo.x"},
			before: [][2]string{{"undo.e", "undo.c"}, {"undo.e", "undo.d"}, {"undo.c", "undo.b"}, {"undo.b", "undo.a"}, {"undo.d", "undo.a"}},
		},
		{
			name: "through a chain with nothing to undo",
			src: `
undo "a" {}
keep "k1" {
  input = undo.a.output
}
keep "k2" {
  input = keep.k1.output
}
undo "b" {
  input = keep.k2.output
}
undo "bad" {
  depends_on = [undo.b]
}
`,
			fail:   []string{"undo.bad"},
			undo:   []string{"undo.a", "undo.b"},
			before: [][2]string{{"undo.b", "undo.a"}},
		},
		{
			name: "diamond, two failures",
			src: `
undo "root" {}
undo "left" {
  input = undo.root.output
}
undo "right" {
  input = undo.root.output
}
undo "join" {
  input = "${undo.left.output}${undo.right.output}"
}
undo "bad1" {
  depends_on = [undo.join]
}
undo "bad2" {
  depends_on = [undo.join]
}
undo "after" {
  depends_on = [undo.bad1, undo.bad2]
}
`,
			fail:   []string{"undo.bad1", "undo.bad2"},
			undo:   []string{"undo.root", "undo.left", "undo.right", "undo.join"},
			before: [][2]string{{"undo.join", "undo.left"}, {"undo.join", "undo.right"}, {"undo.left", "undo.root"}, {"undo.right", "undo.root"}},
		},
	}
	for _, tt := range tests {
		for _, parallelism := range []int{1, 3, 10} {
			t.Run(tt.name+"/parallelism "+strconv.Itoa(parallelism), func(t *testing.T) {
				for range rollbackRepeats {
					l := newLedger()
					for _, addr := range tt.fail {
						l.fail[addr] = "boom"
					}
					prog := compileWith(t, tt.src, nil, l.kinds())
					dir := t.TempDir()
					obs := &rollbackObserver{}
					report, err := applyRollback(t, prog, dir, func(o *Options) { o.Parallelism, o.Observer = parallelism, obs })

					failed := failedAddrs(err)
					if len(failed) == 0 {
						t.Fatalf("Apply returned %v, want the failure", err)
					}
					for _, addr := range failed {
						if !slices.Contains(tt.fail, addr) {
							t.Fatalf("%s failed: %v", addr, err)
						}
					}
					if report.Rollback != RollbackComplete {
						t.Fatalf("Report.Rollback = %q, want %q", report.Rollback, RollbackComplete)
					}
					wantOutcomes := map[string]Outcome{}
					for _, addr := range tt.undo {
						wantOutcomes[addr] = RolledBack
					}
					if got := rollbackOutcomes(t, report); !reflect.DeepEqual(got, wantOutcomes) {
						t.Errorf("RollbackSteps %v, want %v", got, wantOutcomes)
					}
					// Undone steps still count as having succeeded: the
					// rollback is reported on its own.
					for _, addr := range tt.undo {
						if o := outcomes(report)[addr]; o != Succeeded {
							t.Errorf("%s reported %s, want %s", addr, o, Succeeded)
						}
					}
					events := l.since(0)
					undoneOnce(t, events, tt.undo)
					undoneBefore(t, events, tt.before)
					for _, addr := range tt.undo {
						snaps := l.undoneWith[addr]
						if len(snaps) != 1 || snaps[0]["step"] != addr || snaps[0]["n"] != "1" {
							t.Errorf("%s rolled back with snapshots %v, want its own first one", addr, snaps)
						}
						if outs := l.undoneOutputs[addr]; len(outs) != 1 || !strings.HasPrefix(outs[0], "out:") {
							t.Errorf("%s rolled back with outputs %v", addr, outs)
						}
					}
					if l.most > parallelism {
						t.Errorf("%d rollbacks ran at once, parallelism %d", l.most, parallelism)
					}
					checkRollbackJournal(t, lastJournal(t, dir), tt.undo, nil, journal.StatusRolledBack)
					ev := obs.String()
					for _, addr := range tt.undo {
						if !strings.Contains(ev, "undo "+addr+";") || !strings.Contains(ev, "undone "+addr+" "+string(RolledBack)) {
							t.Errorf("the observer did not hear %s rolled back: %s", addr, ev)
						}
					}
					if n := strings.Count(ev, "undo "); n != len(tt.undo) {
						t.Errorf("the observer heard %d rollbacks start, want %d: %s", n, len(tt.undo), ev)
					}
					run := loadRun(t, dir)
					if run.Unfinished() || run.Status != journal.StatusRolledBack || !run.RollingBack {
						t.Errorf("LoadRun: status %q, unfinished %v, rolling back %v", run.Status, run.Unfinished(), run.RollingBack)
					}
					if n := run.Count(StateRolledBack); n != len(tt.undo) {
						t.Errorf("%d steps rolled back in the journal, want %d", n, len(tt.undo))
					}
					if t.Failed() {
						return
					}
				}
			})
		}
	}
}

// TestRollbackOverlapsIndependentSteps checks that independent rollbacks
// run at once, as many as Parallelism allows and no more.
func TestRollbackOverlapsIndependentSteps(t *testing.T) {
	const src = `
undo "a" {}
undo "b" {}
undo "c" {}
undo "bad" {
  depends_on = [undo.a, undo.b, undo.c]
}
`
	for _, parallelism := range []int{1, 2, 3, 10} {
		t.Run("parallelism "+strconv.Itoa(parallelism), func(t *testing.T) {
			want := min(parallelism, 3)
			for range rollbackRepeats {
				l := newLedger()
				l.fail["undo.bad"] = "boom"
				if want > 1 {
					l.meeting = newMeeting(want)
				}
				prog := compileWith(t, src, nil, l.kinds())
				report, _ := applyRollback(t, prog, t.TempDir(), func(o *Options) { o.Parallelism = parallelism })
				if report.Rollback != RollbackComplete {
					t.Fatalf("Report.Rollback = %q", report.Rollback)
				}
				if l.most != want {
					t.Fatalf("%d rollbacks ran at once, want %d", l.most, want)
				}
				undoneOnce(t, l.since(0), []string{"undo.a", "undo.b", "undo.c"})
			}
		})
	}
}

func TestRollbackRestoreAwareStepsLast(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
restore "r1" {
  input = undo.a.output
}
undo "b" {
  input = restore.r1.output
}
restore "r2" {
  input = undo.b.output
}
restore "r3" {
  depends_on = [restore.r1]
}
undo "c" {
  input = "c"
}
keep "k" {
  input = undo.c.output
}
restore "r4" {
  input = keep.k.output
}
undo "bad" {
  depends_on = [restore.r2, restore.r3, restore.r4]
}
`
	early := []string{"undo.a", "undo.b", "undo.c"}
	late := []string{"restore.r1", "restore.r2", "restore.r3", "restore.r4"}
	for _, parallelism := range []int{1, 4, 10} {
		t.Run("parallelism "+strconv.Itoa(parallelism), func(t *testing.T) {
			for range rollbackRepeats {
				l := newLedger()
				l.fail["undo.bad"] = "boom"
				prog := compileWith(t, src, nil, l.kinds())
				dir := t.TempDir()
				report, _ := applyRollback(t, prog, dir, func(o *Options) { o.Parallelism = parallelism })
				if report.Rollback != RollbackComplete {
					t.Fatalf("Report.Rollback = %q", report.Rollback)
				}
				events := l.since(0)
				undoneOnce(t, events, append(slices.Clone(early), late...))
				var pairs [][2]string
				for _, e := range early {
					for _, r := range late {
						pairs = append(pairs, [2]string{e, r})
					}
				}
				// Among the restore-aware steps, dependency order, also
				// through steps undone earlier (undo.b) or with nothing to
				// undo; among the others, reverse order as always.
				pairs = append(pairs, [2]string{"restore.r1", "restore.r2"}, [2]string{"restore.r1", "restore.r3"},
					[2]string{"undo.b", "undo.a"})
				undoneBefore(t, events, pairs)
				checkRollbackJournal(t, lastJournal(t, dir), append(slices.Clone(early), late...), nil, journal.StatusRolledBack)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func TestRollbackHook(t *testing.T) {
	const head = `
variable "log" {
  type = string
}
undo "a" {
  input = "a"
  log   = var.log
}
`
	tests := []struct {
		name     string
		src      string
		undoFail map[string]string
		// lines is what the log file holds after the rollback.
		lines []string
		want  map[string]Outcome
		// errs holds, per step whose rollback fails, what its error says.
		errs map[string]string
	}{
		{
			name: "after the inverse, with another step's output",
			src: head + `
undo "b" {
  depends_on = [undo.a] # what a rollback block names orders nothing
  input      = "b"
  log        = var.log
  rollback {
    command = ["/bin/sh", "-c", "echo hook ${undo.a.output} >> ${var.log}"]
    timeout = "10s"
  }
}
undo "bad" {
  depends_on = [undo.b]
}
`,
			lines: []string{"inverse undo.b", "hook out:a", "inverse undo.a"},
			want:  map[string]Outcome{"undo.a": RolledBack, "undo.b": RolledBack},
		},
		{
			name: "on a step with nothing else to undo",
			src: head + `
keep "k" {
  depends_on = [undo.a]
  input      = "k"
  rollback {
    command = ["/bin/sh", "-c", "echo hook ${undo.a.output} >> ${var.log}"]
  }
}
undo "bad" {
  depends_on = [keep.k]
}
`,
			lines: []string{"hook out:a", "inverse undo.a"},
			want:  map[string]Outcome{"undo.a": RolledBack, "keep.k": RolledBack},
		},
		{
			name: "failing",
			src: head + `
undo "b" {
  input = undo.a.output
  log   = var.log
  rollback {
    command = ["/bin/sh", "-c", "exit 3"]
  }
}
undo "bad" {
  depends_on = [undo.b]
}
`,
			lines: []string{"inverse undo.b", "inverse undo.a"},
			want:  map[string]Outcome{"undo.a": RolledBack, "undo.b": RollbackFailed},
			errs:  map[string]string{"undo.b": `rollback block command "/bin/sh"`},
		},
		{
			name: "timing out",
			src: head + `
undo "b" {
  input = undo.a.output
  log   = var.log
  rollback {
    command = ["/bin/sh", "-c", "sleep 30"]
    timeout = "200ms"
  }
}
undo "bad" {
  depends_on = [undo.b]
}
`,
			lines: []string{"inverse undo.b", "inverse undo.a"},
			want:  map[string]Outcome{"undo.a": RolledBack, "undo.b": RollbackFailed},
			errs:  map[string]string{"undo.b": "timed out after 200ms"},
		},
		{
			name: "not run when the inverse fails",
			src: head + `
undo "b" {
  input = undo.a.output
  log   = var.log
  rollback {
    command = ["/bin/sh", "-c", "echo hook >> ${var.log}"]
  }
}
undo "bad" {
  depends_on = [undo.b]
}
`,
			undoFail: map[string]string{"undo.b": "disk full"},
			lines:    []string{"inverse undo.a"},
			want:     map[string]Outcome{"undo.a": RolledBack, "undo.b": RollbackFailed},
			errs:     map[string]string{"undo.b": "disk full"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			l.fail["undo.bad"] = "boom"
			for addr, msg := range tt.undoFail {
				l.undoFail[addr] = msg
			}
			logPath := filepath.Join(t.TempDir(), "rollback.log")
			prog := compileWith(t, tt.src, map[string]string{"log": logPath}, l.kinds())
			dir := t.TempDir()
			began := time.Now()
			report, err := applyRollback(t, prog, dir, nil)
			if got := failedAddrs(err); !reflect.DeepEqual(got, []string{"undo.bad"}) {
				t.Fatalf("Apply failed %v (%v), want undo.bad", got, err)
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("the run took %s: the hook's time limit did not hold", d)
			}
			if got := rollbackOutcomes(t, report); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RollbackSteps %v, want %v", got, tt.want)
			}
			wantRollback, status := RollbackComplete, journal.StatusRolledBack
			failed := map[string]bool{}
			for addr, msg := range tt.errs {
				wantRollback, status, failed[addr] = RollbackIncomplete, journal.StatusRollbackIncomplete, true
				se := rollbackErr(report, addr)
				if se == nil || !strings.Contains(se.Error(), msg) || !strings.Contains(se.Error(), "Rollback failed: "+addr) {
					t.Errorf("%s's rollback error %v lacks %q", addr, se, msg)
				}
			}
			if report.Rollback != wantRollback {
				t.Errorf("Report.Rollback = %q, want %q", report.Rollback, wantRollback)
			}
			b, _ := os.ReadFile(logPath)
			if got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); !reflect.DeepEqual(got, tt.lines) {
				t.Errorf("the log holds %q, want %q", got, tt.lines)
			}
			var undone []string
			for addr := range tt.want {
				undone = append(undone, addr)
			}
			checkRollbackJournal(t, lastJournal(t, dir), undone, failed, status)
		})
	}
}

// TestRollbackFailureThenResume fails one rollback: the others go on, the
// run is left unfinished, and a resume undoes only what is left.
func TestRollbackFailureThenResume(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
undo "b" {
  input = undo.a.output
}
undo "c" {
  input = "c"
}
undo "d" {
  input = undo.b.output
}
keep "k" {
  input = undo.a.output
}
undo "bad" {
  depends_on = [undo.d, undo.c, keep.k]
}
undo "never" {
  depends_on = [undo.bad]
}
`
	all := []string{"undo.a", "undo.b", "undo.c", "undo.d"}
	for _, parallelism := range []int{1, 10} {
		t.Run("parallelism "+strconv.Itoa(parallelism), func(t *testing.T) {
			for range rollbackRepeats {
				l := newLedger()
				l.fail["undo.bad"] = "boom"
				l.undoFail["undo.b"] = "disk full"
				prog := compileWith(t, src, nil, l.kinds())
				dir := t.TempDir()
				report, err := applyRollback(t, prog, dir, func(o *Options) { o.Parallelism = parallelism })
				if got := failedAddrs(err); !reflect.DeepEqual(got, []string{"undo.bad"}) {
					t.Fatalf("Apply failed %v (%v)", got, err)
				}
				if report.Rollback != RollbackIncomplete {
					t.Fatalf("Report.Rollback = %q, want %q", report.Rollback, RollbackIncomplete)
				}
				want := map[string]Outcome{"undo.a": RolledBack, "undo.b": RollbackFailed, "undo.c": RolledBack, "undo.d": RolledBack}
				if got := rollbackOutcomes(t, report); !reflect.DeepEqual(got, want) {
					t.Fatalf("RollbackSteps %v, want %v", got, want)
				}
				if se := rollbackErr(report, "undo.b"); se == nil || !strings.Contains(se.Error(), "disk full") {
					t.Errorf("undo.b's rollback error: %v", se)
				}
				// undo.a waits for undo.b's rollback, failed or not.
				undoneOnce(t, l.since(0), all)
				undoneBefore(t, l.since(0), [][2]string{{"undo.d", "undo.b"}, {"undo.b", "undo.a"}})
				checkRollbackJournal(t, lastJournal(t, dir), all, map[string]bool{"undo.b": true}, journal.StatusRollbackIncomplete)

				run := loadRun(t, dir)
				if !run.Unfinished() || !run.RollingBack || run.Status != journal.StatusRollbackIncomplete {
					t.Fatalf("LoadRun: status %q, unfinished %v, rolling back %v", run.Status, run.Unfinished(), run.RollingBack)
				}
				states := map[string]string{}
				for addr, s := range run.Steps {
					states[addr] = s.State
				}
				wantStates := map[string]string{"undo.a": StateRolledBack, "undo.b": StateRollbackFailed, "undo.c": StateRolledBack,
					"undo.d": StateRolledBack, "keep.k": StateSucceeded, "undo.bad": StateFailed, "undo.never": StatePending}
				if !reflect.DeepEqual(states, wantStates) {
					t.Fatalf("states %v, want %v", states, wantStates)
				}
				if s := run.Steps["undo.b"]; !strings.Contains(s.Error, "disk full") {
					t.Errorf("undo.b's journaled error %q", s.Error)
				}

				delete(l.undoFail, "undo.b")
				mark := l.eventCount()
				report, err = resumeWith(t, prog, dir, func(o *Options) { o.Parallelism = parallelism })
				if err == nil {
					t.Error("Resume of a rollback returned no error: the run had failed")
				}
				if report.Rollback != RollbackComplete {
					t.Fatalf("after the resume Report.Rollback = %q", report.Rollback)
				}
				if got, want := rollbackOutcomes(t, report), map[string]Outcome{"undo.b": RolledBack}; !reflect.DeepEqual(got, want) {
					t.Errorf("the resume's RollbackSteps %v, want %v", got, want)
				}
				if got, want := l.since(mark), []string{"undo undo.b", "undone undo.b"}; !reflect.DeepEqual(got, want) {
					t.Errorf("the resume did %v, want %v", got, want)
				}
				// The retry gets the snapshot and outputs from the journal.
				if snaps := l.undoneWith["undo.b"]; len(snaps) != 2 || !reflect.DeepEqual(snaps[1], snaps[0]) {
					t.Errorf("undo.b rolled back with snapshots %v, want the same twice", snaps)
				}
				if outs := l.undoneOutputs["undo.b"]; !reflect.DeepEqual(outs, []string{"out:out:a", "out:out:a"}) {
					t.Errorf("undo.b rolled back with outputs %v", outs)
				}
				recs := sinceResume(t, lastJournal(t, dir))
				if got, want := recordTypes(recs), []string{"rollback_started undo.b", "rollback_succeeded undo.b", "run_finished"}; !reflect.DeepEqual(got, want) {
					t.Errorf("the resume journaled %v, want %v", got, want)
				}
				if last := recs[len(recs)-1]; last.Status != journal.StatusRolledBack {
					t.Errorf("the resume finished %q, want %q", last.Status, journal.StatusRolledBack)
				}
				run = loadRun(t, dir)
				if run.Unfinished() || run.Status != journal.StatusRolledBack || run.Count(StateRolledBack) != len(all) {
					t.Errorf("after the resume: status %q, unfinished %v, %d rolled back", run.Status, run.Unfinished(), run.Count(StateRolledBack))
				}
				if t.Failed() {
					return
				}
			}
		})
	}
}

// TestRollbackUndoesUnsettledFailure: a step that fails after its change
// may have taken effect (a *steps.UnsettledError: a host lost after a
// file's rename) is undone with the completed steps, before them, with
// its outputs unknown (a step that fails otherwise is not:
// TestRollbackFailureThenResume). When its undoing fails too, the journal
// says so, and the resume undoes it.
func TestRollbackUndoesUnsettledFailure(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
undo "b" {
  input = undo.a.output
}
`
	l := newLedger()
	l.fail["undo.b"], l.unsettle["undo.b"] = "host lost after the rename", true
	l.undoFail["undo.b"] = "host still away"
	prog := compileWith(t, src, nil, l.kinds())
	dir := t.TempDir()
	report, err := applyRollback(t, prog, dir, func(o *Options) { o.Parallelism = 1 })
	if errs := StepErrors(err); len(errs) != 1 || errs[0].Addr != "undo.b" || !errs[0].Unsettled {
		t.Fatalf("Apply: %v, want undo.b failed, unsettled", err)
	}
	want := map[string]Outcome{"undo.a": RolledBack, "undo.b": RollbackFailed}
	if got := rollbackOutcomes(t, report); !reflect.DeepEqual(got, want) {
		t.Fatalf("RollbackSteps %v, want %v", got, want)
	}
	if outs := l.undoneOutputs["undo.b"]; !reflect.DeepEqual(outs, []string{"(unknown)"}) {
		t.Errorf("undo.b rolled back with outputs %v, want unknown", outs)
	}
	undoneBefore(t, l.since(0), [][2]string{{"undo.b", "undo.a"}})
	run := loadRun(t, dir)
	if s := run.Steps["undo.b"]; s.State != StateRollbackFailed {
		t.Fatalf("undo.b's state %q, want %q", s.State, StateRollbackFailed)
	}

	delete(l.undoFail, "undo.b")
	mark := l.eventCount()
	report, _ = resumeWith(t, prog, dir, func(o *Options) { o.Parallelism = 1 })
	if report.Rollback != RollbackComplete {
		t.Fatalf("after the resume Report.Rollback = %q", report.Rollback)
	}
	if got, want := l.since(mark), []string{"undo undo.b", "undone undo.b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the resume did %v, want %v", got, want)
	}
}

// TestRollbackResumeAfterCrash kills a rollback part way (the journal cut
// after a record): a resume undoes every completed step not undone yet,
// including one whose rollback had started, and no other.
func TestRollbackResumeAfterCrash(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
undo "b" {
  input = undo.a.output
}
undo "c" {
  input = "c"
}
undo "d" {
  input = undo.b.output
}
undo "bad" {
  depends_on = [undo.d, undo.c]
}
`
	all := []string{"undo.a", "undo.b", "undo.c", "undo.d"}
	tests := []struct {
		name string
		stop func(journal.Record) bool
	}{
		{"during the first rollback", func(r journal.Record) bool { return r.Type == journal.RollbackStarted }},
		{"after the first rollback", func(r journal.Record) bool { return r.Type == journal.RollbackSucceeded }},
		{"during undo.b's rollback", isRecord(journal.RollbackStarted, "undo.b")},
		{"after undo.b's rollback", isRecord(journal.RollbackSucceeded, "undo.b")},
		{"during the last rollback", isRecord(journal.RollbackStarted, "undo.a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range rollbackRepeats {
				l := newLedger()
				l.fail["undo.bad"] = "boom"
				prog := compileWith(t, src, nil, l.kinds())
				first := t.TempDir()
				if _, err := applyRollback(t, prog, first, nil); err == nil {
					t.Fatal("Apply succeeded")
				}
				recs := journalUpTo(t, first, tt.stop)
				dir := t.TempDir()
				writeJournal(t, dir, recs)
				undone := map[string]bool{}
				for _, r := range recs {
					if r.Type == journal.RollbackSucceeded {
						undone[r.Step] = true
					}
				}
				var left []string
				for _, addr := range all {
					if !undone[addr] {
						left = append(left, addr)
					}
				}

				run := loadRun(t, dir)
				if !run.Unfinished() {
					t.Fatal("a run killed during its rollback is finished")
				}
				mark := l.eventCount()
				report, _ := resumeWith(t, prog, dir, nil)
				if report.Rollback != RollbackComplete {
					t.Fatalf("Report.Rollback = %q", report.Rollback)
				}
				events := l.since(mark)
				undoneOnce(t, events, left)
				var pairs [][2]string
				for _, p := range [][2]string{{"undo.d", "undo.b"}, {"undo.b", "undo.a"}} {
					if !undone[p[0]] && !undone[p[1]] {
						pairs = append(pairs, p)
					}
				}
				undoneBefore(t, events, pairs)
				for _, e := range events {
					if strings.HasPrefix(e, "apply ") || strings.HasPrefix(e, "snapshot ") {
						t.Errorf("the resumed rollback did %q", e)
					}
				}
				for _, addr := range left {
					if snaps := l.undoneWith[addr]; len(snaps) == 0 || snaps[len(snaps)-1]["step"] != addr || snaps[len(snaps)-1]["n"] != "1" {
						t.Errorf("%s rolled back with snapshots %v, want the journaled one", addr, snaps)
					}
				}
				run = loadRun(t, dir)
				if run.Unfinished() || run.Status != journal.StatusRolledBack || run.Count(StateRolledBack) != len(all) {
					t.Errorf("after the resume: status %q, unfinished %v, %d rolled back", run.Status, run.Unfinished(), run.Count(StateRolledBack))
				}
				if t.Failed() {
					return
				}
			}
		})
	}
}

func TestRollbackSnapshots(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
keep "k" {
  input = undo.a.output
}
undo "b" {
  input = keep.k.output
}
undo "bad" {
  depends_on = [undo.b]
}
`
	tests := []struct {
		name      string
		rollback  bool
		noJournal bool
		want      bool // whether snapshots are taken and the run rolled back
	}{
		{"rollback", true, false, true},
		{"no rollback", false, false, false},
		{"rollback without a journal", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			l.fail["undo.bad"] = "boom"
			prog := compileWith(t, src, nil, l.kinds())
			dir := t.TempDir()
			j, err := journal.Create(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			l.journalPath = j.Path()
			opts := testOptions()
			opts.Journal, opts.Rollback = j, tt.rollback
			if tt.noJournal {
				opts.Journal = nil
			}
			report, err := prog.Apply(context.Background(), opts)
			if got := failedAddrs(err); !reflect.DeepEqual(got, []string{"undo.bad"}) {
				t.Fatalf("Apply failed %v (%v)", got, err)
			}
			backups := filepath.Join(dir, "backups", strings.TrimSuffix(filepath.Base(j.Path()), ".journal"))

			if !tt.want {
				if n := len(l.snapshots); n != 0 {
					t.Errorf("Snapshot called for %v", l.snapshots)
				}
				if report.Rollback != RollbackNone || len(report.RollbackSteps) != 0 {
					t.Errorf("Report.Rollback %q, %v; want none", report.Rollback, report.RollbackSteps)
				}
				undoneOnce(t, l.since(0), nil)
				if _, err := os.Stat(backups); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the run keeps backups in %s (%v)", backups, err)
				}
				if tt.noJournal {
					return
				}
				for _, r := range readJournal(t, j.Path()) {
					if r.Snapshot != nil || strings.HasPrefix(r.Type, "rollback_") {
						t.Errorf("record %s %s with snapshot %v", r.Type, r.Step, r.Snapshot)
					}
					if r.Type == journal.RunFinished && r.Status != journal.StatusFailed {
						t.Errorf("run finished %q, want %q", r.Status, journal.StatusFailed)
					}
				}
				// The completed steps are left as they are.
				run := loadRun(t, dir)
				for _, addr := range []string{"undo.a", "keep.k", "undo.b"} {
					if s := run.Steps[addr]; s.State != StateSucceeded || s.Snapshotted {
						t.Errorf("%s: %+v", addr, s)
					}
				}
				return
			}

			if report.Rollback != RollbackComplete {
				t.Errorf("Report.Rollback = %q", report.Rollback)
			}
			// undo.bad fails, but only after its snapshot was taken.
			wantSnaps := map[string]int{"undo.a": 1, "undo.b": 1, "undo.bad": 1}
			if !reflect.DeepEqual(l.snapshots, wantSnaps) {
				t.Errorf("Snapshot calls %v, want %v", l.snapshots, wantSnaps)
			}
			events := l.since(0)
			var final []string
			for _, r := range readJournal(t, j.Path()) {
				final = append(final, r.Type+" "+r.Step)
			}
			for addr := range wantSnaps {
				// Taken before the step_started record and the step's
				// Apply; what it depends on was done, and is journaled
				// before the record that holds the snapshot (a success
				// may wait in memory for the next durable record, which
				// this one is).
				if seen := l.journaled[addr]; slices.Contains(seen, "step_started "+addr) {
					t.Errorf("%s's snapshot was taken after its step_started record: %v", addr, seen)
				}
				started := slices.Index(final, "step_started "+addr)
				for _, dep := range prog.DependsOn(addr) {
					if done := slices.Index(final, "step_succeeded "+dep); done < 0 || done > started {
						t.Errorf("%s's start (record %d) is journaled before %s's success (record %d): %v", addr, started, dep, done, final)
					}
					if !slices.Contains(events, "apply "+dep) || slices.Index(events, "apply "+dep) > slices.Index(events, "snapshot "+addr) {
						t.Errorf("%s's snapshot was taken before %s was applied: %v", addr, dep, events)
					}
				}
				if s, a := slices.Index(events, "snapshot "+addr), slices.Index(events, "apply "+addr); s < 0 || s > a {
					t.Errorf("%s: snapshot at event %d, apply at %d", addr, s, a)
				}
				if want := filepath.Join(backups, addr); l.backups[addr] != want {
					t.Errorf("%s's snapshot had the backup directory %q, want %q", addr, l.backups[addr], want)
				}
			}
			for _, r := range readJournal(t, j.Path()) {
				if r.Type != journal.StepStarted {
					continue
				}
				want := map[string]string(nil)
				if wantSnaps[r.Step] > 0 {
					want = map[string]string{"step": r.Step, "n": "1"}
				}
				if !reflect.DeepEqual(r.Snapshot, want) {
					t.Errorf("step_started %s journals the snapshot %v, want %v", r.Step, r.Snapshot, want)
				}
			}
			run := loadRun(t, dir)
			if s := run.Steps["undo.a"]; !s.Snapshotted || s.Snapshot["step"] != "undo.a" {
				t.Errorf("LoadRun: undo.a %+v", s)
			}
		})
	}
}

// TestRollbackBackupDirectoryMode checks the directory Snapshot keeps its
// copies in: created before Snapshot, owner-only.
func TestRollbackBackupDirectoryMode(t *testing.T) {
	l := newLedger()
	prog := compileWith(t, "undo \"a\" {}\n", nil, l.kinds())
	dir := t.TempDir()
	if _, err := applyRollback(t, prog, dir, func(o *Options) { o.KeepBackups = true }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	fi, err := os.Stat(l.backups["undo.a"])
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("the backup directory is %v, want a directory 0700", fi.Mode())
	}
}

// TestRollbackAfterRedoKeepsFirstSnapshot kills a run with rollback on
// while a step is under way: the resume carries it out again without a new
// snapshot, journals the first one again, and when a later step fails, the
// rollback goes back to what was there before the run.
func TestRollbackAfterRedoKeepsFirstSnapshot(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
undo "b" {
  input = undo.a.output
}
undo "c" {
  input = undo.b.output
}
`
	for range rollbackRepeats {
		l := newLedger()
		prog := compileWith(t, src, nil, l.kinds())
		first := t.TempDir()
		if _, err := applyRollback(t, prog, first, nil); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		dir := t.TempDir()
		writeJournal(t, dir, journalUpTo(t, first, isRecord(journal.StepStarted, "undo.b")))
		if s := loadRun(t, dir).Steps["undo.b"]; s.State != StateStarted || !s.Snapshotted || s.Snapshot["n"] != "1" {
			t.Fatalf("undo.b after the crash: %+v", s)
		}

		l.fail["undo.c"] = "boom"
		mark := l.eventCount()
		report, err := resumeWith(t, prog, dir, func(o *Options) { o.Rollback = true })
		if got := failedAddrs(err); !reflect.DeepEqual(got, []string{"undo.c"}) {
			t.Fatalf("Resume failed %v (%v)", got, err)
		}
		if got := decisions(report); got["undo.b"] != ActionRedo || got["undo.a"] != ActionSkip {
			t.Fatalf("decisions %v", got)
		}
		// Only undo.c, which never started in this run's journal, takes a
		// snapshot.
		want := []string{"apply undo.b", "snapshot undo.c", "apply undo.c", "undo undo.b", "undone undo.b", "undo undo.a", "undone undo.a"}
		if got := l.since(mark); !reflect.DeepEqual(got, want) {
			t.Fatalf("the resume did %v, want %v", got, want)
		}
		if got := l.snapshots; !reflect.DeepEqual(got, map[string]int{"undo.a": 1, "undo.b": 1, "undo.c": 2}) {
			t.Errorf("Snapshot calls %v", got)
		}
		var redo *journal.Record
		for _, r := range sinceResume(t, lastJournal(t, dir)) {
			if r.Type == journal.StepStarted && r.Step == "undo.b" {
				redo = &r
			}
		}
		if redo == nil || !reflect.DeepEqual(redo.Snapshot, map[string]string{"step": "undo.b", "n": "1"}) {
			t.Fatalf("the redo's step_started: %+v", redo)
		}
		for _, addr := range []string{"undo.a", "undo.b"} {
			if snaps := l.undoneWith[addr]; len(snaps) != 1 || snaps[0]["n"] != "1" {
				t.Errorf("%s rolled back with snapshots %v, want the first", addr, snaps)
			}
		}
		if report.Rollback != RollbackComplete {
			t.Errorf("Report.Rollback = %q", report.Rollback)
		}
		if s := loadRun(t, dir).Steps["undo.b"]; s.Snapshot["n"] != "1" || s.State != StateRolledBack {
			t.Errorf("undo.b after the resume: %+v", s)
		}
	}
}

func TestRollbackRemovesBackups(t *testing.T) {
	const src = `
undo "a" {
  input = "a"
}
undo "b" {
  input = undo.a.output
}
`
	tests := []struct {
		name     string
		fail     bool // undo.b fails
		undoFail bool // and undo.a's rollback too
		keep     bool
		wantKept bool
	}{
		{"success", false, false, false, false},
		{"success, backups kept", false, false, true, true},
		{"rolled back", true, false, false, false},
		{"rolled back, backups kept", true, false, true, true},
		{"rollback incomplete", true, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			if tt.fail {
				l.fail["undo.b"] = "boom"
			}
			if tt.undoFail {
				l.undoFail["undo.a"] = "disk full"
			}
			prog := compileWith(t, src, nil, l.kinds())
			dir := t.TempDir()
			report, err := applyRollback(t, prog, dir, func(o *Options) { o.KeepBackups = tt.keep })
			if (err != nil) != tt.fail {
				t.Fatalf("Apply: %v", err)
			}
			if tt.undoFail != (report.Rollback == RollbackIncomplete) {
				t.Fatalf("Report.Rollback = %q", report.Rollback)
			}
			root := filepath.Join(dir, "backups", "000001")
			saved := filepath.Join(root, "undo.a", "saved")
			if l.backups["undo.a"] != filepath.Dir(saved) {
				t.Fatalf("undo.a's backups in %q, want under %s", l.backups["undo.a"], root)
			}
			_, statErr := os.Stat(saved)
			if tt.wantKept && statErr != nil {
				t.Errorf("the backups are gone: %v", statErr)
			}
			if !tt.wantKept {
				if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s is still there (%v)", root, err)
				}
			}
			if len(report.Warnings) != 0 {
				t.Errorf("warnings %v", report.Warnings)
			}
			if !tt.undoFail {
				return
			}
			// Once a resume has rolled back the rest, they go.
			delete(l.undoFail, "undo.a")
			report, _ = resumeWith(t, prog, dir, nil)
			if report.Rollback != RollbackComplete {
				t.Fatalf("after the resume Report.Rollback = %q", report.Rollback)
			}
			if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after the resume %s is still there (%v)", root, err)
			}
		})
	}
}

// TestCompileChecksRollbackBlocks checks what can be checked of a rollback
// block before the run; what depends on other steps waits for the rollback.
func TestCompileChecksRollbackBlocks(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		summary string // of the first error; "" for none
		line    int
		detail  string
	}{
		{"empty command", "rec \"a\" {\n  rollback {\n    command = []\n  }\n}\n",
			"Invalid rollback block in rec.a", 3, "command: must name a program"},
		{"empty program name", "rec \"a\" {\n  rollback {\n    command = [\"\"]\n  }\n}\n",
			"Invalid rollback block in rec.a", 3, "the program name must not be empty"},
		{"unknown argument", "rec \"a\" {\n  rollback {\n    command = [\"/bin/true\"]\n    retries = 3\n  }\n}\n",
			"Unsupported argument", 4, `"retries" is not expected here`},
		{"no command", "rec \"a\" {\n  input = \"x\"\n  rollback {\n  }\n}\n",
			"Missing required argument", 3, `"command" is required`},
		{"command not a list", "rec \"a\" {\n  rollback {\n    command = \"/bin/true\"\n  }\n}\n",
			"Incorrect attribute value type", 3, "list of string required"},
		{"bad timeout", "rec \"a\" {\n  rollback {\n    command = [\"/bin/true\"]\n    timeout = \"soon\"\n  }\n}\n",
			"Invalid rollback block in rec.a", 4, `timeout: "soon" is not a duration`},
		{"negative timeout", "rec \"a\" {\n  rollback {\n    command = [\"/bin/true\"]\n    timeout = \"-1s\"\n  }\n}\n",
			"Invalid rollback block in rec.a", 4, "must be positive"},
		{"zero timeout", "rec \"a\" {\n  rollback {\n    command = [\"/bin/true\"]\n    timeout = \"0s\"\n  }\n}\n",
			"Invalid rollback block in rec.a", 4, "must be positive"},
		{"undeclared step", "rec \"a\" {\n  rollback {\n    command = [rec.nope.output]\n  }\n}\n",
			"Reference to undeclared step", 3, "There is no step rec.nope"},
		{"duplicate", "rec \"a\" {\n  rollback {\n    command = [\"/bin/true\"]\n  }\n  rollback {\n    command = [\"/bin/false\"]\n  }\n}\n",
			"Duplicate rollback block", 5, "plan.hcl:2"},
		{"a hook may name a later step", "rec \"a\" {\n  rollback {\n    command = [rec.b.output]\n  }\n}\nrec \"b\" {\n  input = rec.a.output\n}\n",
			"", 0, ""},
		{"no secret on a command line", "rec \"a\" {}\nrec \"b\" {\n  rollback {\n    command = [\"/bin/echo\", rec.a.secret]\n  }\n}\n",
			"Invalid rollback block in rec.b", 4, "must not use sensitive values"},
		{"values known only at run time", "rec \"a\" {}\nrec \"b\" {\n  rollback {\n    command = [rec.a.output]\n    timeout = rec.a.output\n  }\n}\n",
			"", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, diags := compileSource(t, tt.src, nil)
			if tt.summary == "" {
				if diags.HasErrors() {
					t.Fatalf("unexpected diagnostics: %s", diags.Error())
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			d := diags[0]
			if d.Summary != tt.summary {
				t.Errorf("summary %q, want %q (all: %s)", d.Summary, tt.summary, diags.Error())
			}
			if d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Errorf("subject %v, want line %d", d.Subject, tt.line)
			}
			if !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("detail %q lacks %q", d.Detail, tt.detail)
			}
		})
	}
}

// TestRollbackHookReadsOwnOutputs: a rollback block runs after its step has
// completed, so it can read the step's own outputs ("revoked serial
// ${issue.a.serial_number}") without any cycle.
func TestRollbackHookReadsOwnOutputs(t *testing.T) {
	l := newLedger()
	l.fail["undo.bad"] = "boom"
	logPath := filepath.Join(t.TempDir(), "rollback.log")
	prog := compileWith(t, `
variable "log" {
  type = string
}
undo "a" {
  input = "a"
  rollback {
    command = ["/bin/sh", "-c", "echo hook ${undo.a.output} >> ${var.log}"]
  }
}
undo "bad" {
  depends_on = [undo.a]
}
`, map[string]string{"log": logPath}, l.kinds())
	report, _ := applyRollback(t, prog, t.TempDir(), nil)
	if report.Rollback != RollbackComplete {
		t.Fatalf("Report.Rollback = %q", report.Rollback)
	}
	if b, _ := os.ReadFile(logPath); string(b) != "hook out:a\n" {
		t.Errorf("the log holds %q", b)
	}
}
