package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// Randomized runs of rollouts that let hosts fail (max_failures), with
// rollback = "all" or "failed_batch": each run is checked against what a
// run must do, read from the events its steps' kind recorded, in order,
// rather than from the engine's report alone.
//
// A run's scenario comes from a seed: the seeds of a test are seedBase,
// seedBase+1, ... where seedBase is ROTPLAN_ROLLOUT_SEED when set (to
// replay a failure: the first seed run is the one given), else the time.
// The order the steps of a parallel run interleave in is the scheduler's:
// a seed replays the scenario, not that order, so a failure prints the
// events it saw.

// randomRolloutRuns bounds the runs of each randomized test, so that it
// stays within seconds.
const randomRolloutRuns = 120

// rolloutSeedBase is the first seed of a randomized test, logged.
func rolloutSeedBase(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROTPLAN_ROLLOUT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ROTPLAN_ROLLOUT_SEED: %v", err)
		}
	}
	t.Logf("seeds from %d (replay with ROTPLAN_ROLLOUT_SEED=%d)", seed, seed)
	return seed
}

// faultLedger is hostLedger that also records a failure ("fail ADDR"),
// when an undo begins ("undoing ADDR"), and fails the first undo of the
// steps in undoFails ("undofail ADDR"; later ones succeed, "undo ADDR").
type faultLedger struct {
	hostLedger
	undoFails map[string]bool // set before the run, read only during it
	// yields are, per step, how often its Apply lets other goroutines
	// run: steps of different lengths interleave in more ways.
	yields map[string]int
	// holds are steps that wait, a bounded while, for a step of their
	// host to fail, and then a while more: that they still run when the
	// engine learns of the failure.
	holds  map[string]bool
	failed map[string]bool // the hosts (their keys) a step failed on, under mu
	tried  map[string]int  // undos begun per step, under mu
}

// hostKey is the key of the host a step of a rolloutScenario is for.
func hostKey(addr string) string {
	_, key, _ := strings.Cut(addr, "[")
	return key
}

var _ steps.Rollbacker = (*faultLedger)(nil)

func (l *faultLedger) Apply(_ context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	l.note("start", env)
	addr := ledgerAddr(env)
	if l.holds[addr] {
		for range 20000 {
			l.mu.Lock()
			failed := l.failed[hostKey(addr)]
			l.mu.Unlock()
			if failed {
				break
			}
			runtime.Gosched()
		}
	}
	for range 1 + l.yields[addr] {
		runtime.Gosched()
	}
	if fail, _ := cfg.Bool("fail", false); fail {
		l.mu.Lock()
		l.failed[hostKey(addr)] = true
		l.mu.Unlock()
		l.note("fail", env)
		return cty.NilVal, errors.New("boom")
	}
	l.note("end", env)
	return cty.ObjectVal(map[string]cty.Value{"output": cty.StringVal(cfg.String("input"))}), nil
}

func (l *faultLedger) Rollback(_ context.Context, env *steps.Env, _ steps.Config, _ cty.Value, _ map[string]string) error {
	l.note("undoing", env)
	runtime.Gosched()
	addr := ledgerAddr(env)
	l.mu.Lock()
	first := l.tried[addr] == 0
	l.tried[addr]++
	l.mu.Unlock()
	if first && l.undoFails[addr] {
		l.note("undofail", env)
		return errors.New("cannot undo")
	}
	l.note("undo", env)
	return nil
}

// rolloutScenario is one random plan and how to run it: hosts
// host.web["h0"]... with one to three steps each (rec.s0, rec.s1, rec.s2,
// chained or not), perhaps rec.here, which runs where rotplan runs, and a
// rollout of the hosts.
type rolloutScenario struct {
	seed        uint64
	src         string
	hostSteps   map[string][]string // host address -> its steps' addresses
	here        bool
	fails       map[string]bool // the steps that fail
	undoFails   map[string]bool // the steps whose first undo fails
	yields      map[string]int  // see faultLedger
	holds       map[string]bool // see faultLedger
	maxFailures int
	rollback    string
	parallelism int
}

func (s *rolloutScenario) String() string {
	return fmt.Sprintf("seed %d (max_failures %d, rollback %s, parallelism %d):\n%s", s.seed, s.maxFailures, s.rollback, s.parallelism, s.src)
}

// newRolloutScenario draws a scenario from seed; undoFails draws steps
// whose first undo fails.
func newRolloutScenario(seed uint64, undoFails bool) *rolloutScenario {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	s := &rolloutScenario{seed: seed, hostSteps: map[string][]string{}, fails: map[string]bool{}, undoFails: map[string]bool{}, yields: map[string]int{}, holds: map[string]bool{},
		maxFailures: r.IntN(4), rollback: []string{"all", "failed_batch"}[r.IntN(2)], parallelism: 1 + r.IntN(8)}
	n := 2 + r.IntN(6)
	var keys []string
	count := map[string]int{}
	for i := range n {
		k := fmt.Sprintf("h%d", i)
		keys = append(keys, k)
		count[k] = 1 + r.IntN(3)
	}
	s.here = r.IntN(3) == 0
	hereFirst := s.here && r.IntN(2) == 0 // rec.s0 reads rec.here
	var b strings.Builder
	fmt.Fprintf(&b, "host \"web\" {\n  for_each = toset([%s])\n  address  = each.key\n}\n", hclList(keys))
	fmt.Fprintf(&b, "rollout \"web\" {\n  hosts        = host.web\n  batch_size   = %d\n  max_failures = %d\n  rollback     = %q\n}\n",
		1+r.IntN(n), s.maxFailures, s.rollback)
	if s.here {
		b.WriteString("rec \"here\" {\n  input = \"x\"\n}\n")
	}
	failing := map[string][]string{} // step block -> the keys it fails for
	for _, k := range keys {
		if r.IntN(3) != 0 {
			continue
		}
		at := r.IntN(count[k])
		failing[fmt.Sprintf("s%d", at)] = append(failing[fmt.Sprintf("s%d", at)], k)
		if other := r.IntN(count[k]); other != at && r.IntN(4) == 0 {
			failing[fmt.Sprintf("s%d", other)] = append(failing[fmt.Sprintf("s%d", other)], k)
		}
	}
	for i := range 3 {
		block := fmt.Sprintf("s%d", i)
		var on []string
		for _, k := range keys {
			if count[k] > i {
				on = append(on, k)
			}
		}
		if len(on) == 0 {
			break
		}
		input := "each.key"
		switch {
		case i == 0 && hereFirst:
			input = `"${each.key}${rec.here.output}"`
		case i > 0 && r.IntN(2) == 0: // a chain: the step before on the host
			input = fmt.Sprintf("rec.s%d[each.key].output", r.IntN(i))
		}
		fail := "false"
		if ks := failing[block]; len(ks) > 0 {
			fail = fmt.Sprintf("contains([%s], each.key)", hclList(ks))
		}
		fmt.Fprintf(&b, "rec %q {\n  for_each = toset([%s])\n  on       = host.web[each.key]\n  input    = %s\n  fail     = %s\n}\n",
			block, hclList(on), input, fail)
		for _, k := range on {
			addr := fmt.Sprintf("rec.%s[%q]", block, k)
			host := fmt.Sprintf("host.web[%q]", k)
			s.hostSteps[host] = append(s.hostSteps[host], addr)
			s.fails[addr] = slices.Contains(failing[block], k)
			s.yields[addr] = r.IntN(50)
		}
	}
	for _, k := range keys {
		addrs := s.hostSteps[fmt.Sprintf("host.web[%q]", k)]
		if !slices.ContainsFunc(addrs, func(a string) bool { return s.fails[a] }) {
			continue
		}
		for _, a := range addrs {
			if s.fails[a] {
				continue
			}
			if r.IntN(2) == 0 {
				s.holds[a] = true
				s.yields[a] = r.IntN(5000)
			}
			if undoFails && r.IntN(3) == 0 {
				s.undoFails[a] = true
			}
		}
	}
	s.src = b.String()
	return s
}

// hclList is strs as the elements of an HCL list of strings.
func hclList(strs []string) string {
	quoted := make([]string, len(strs))
	for i, s := range strs {
		quoted[i] = strconv.Quote(s)
	}
	return strings.Join(quoted, ", ")
}

// compile compiles the scenario's plan with a new ledger.
func (s *rolloutScenario) compile(t *testing.T) (*Program, *faultLedger) {
	t.Helper()
	l := &faultLedger{hostLedger: hostLedger{f: &fakeSetting{}}, undoFails: s.undoFails, yields: s.yields,
		holds: s.holds, failed: map[string]bool{}, tried: map[string]int{}}
	prog, diags := loadSource(t, s.src, nil, steps.Registry{"rec": l})
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", s, diags.Error())
	}
	return prog, l
}

// stepsOf is every step of the scenario, rec.here included.
func (s *rolloutScenario) stepsOf() []string {
	var out []string
	if s.here {
		out = append(out, "rec.here")
	}
	for _, addrs := range s.hostSteps {
		out = append(out, addrs...)
	}
	return out
}

// ledgerRun is what a faultLedger recorded, indexed.
type ledgerRun struct {
	events []string
	// at holds, per event kind, per step, the indexes of its events.
	at map[string]map[string][]int
}

func readLedger(l *faultLedger) *ledgerRun {
	lr := &ledgerRun{events: l.events, at: map[string]map[string][]int{}}
	for i, e := range l.events {
		what, step, _ := strings.Cut(e, " ")
		if lr.at[what] == nil {
			lr.at[what] = map[string][]int{}
		}
		lr.at[what][step] = append(lr.at[what][step], i)
	}
	return lr
}

func (lr *ledgerRun) count(what, step string) int { return len(lr.at[what][step]) }

// first is the index of step's first event of kind what, -1 if none.
func (lr *ledgerRun) first(what, step string) int {
	if at := lr.at[what][step]; len(at) > 0 {
		return at[0]
	}
	return -1
}

// failedHosts are the hosts one of whose failing steps started (and so
// failed), in the order of their first failure.
func (s *rolloutScenario) failedHosts(lr *ledgerRun) []string {
	type failure struct {
		host string
		at   int
	}
	var fs []failure
	for host, addrs := range s.hostSteps {
		at := -1
		for _, a := range addrs {
			if i := lr.first("fail", a); i >= 0 && (at < 0 || i < at) {
				at = i
			}
		}
		if at >= 0 {
			fs = append(fs, failure{host, at})
		}
	}
	slices.SortFunc(fs, func(a, b failure) int { return a.at - b.at })
	var out []string
	for _, f := range fs {
		out = append(out, f.host)
	}
	return out
}

// keptSteps are the steps a "failed_batch" rollback keeps: those of the
// hosts, but the tolerated ones, of the batches that completed (every
// step of those hosts ended), up to the first that did not, and what they
// depend on, but steps of tolerated hosts.
func keptSteps(prog *Program, s *rolloutScenario, tolerated map[string]bool, ended func(string) bool) map[string]bool {
	kept := map[string]bool{}
	if s.rollback != "failed_batch" {
		return kept
	}
	var keep func(string)
	keep = func(addr string) {
		// A host let fail was undone, whether or not a later batch,
		// which waited for it, completed.
		if !kept[addr] && !tolerated[hostOf(addr)] {
			kept[addr] = true
			for _, d := range prog.DependsOn(addr) {
				keep(d)
			}
		}
	}
	for _, batch := range prog.Rollouts()[0].Batches {
		var these []string
		for _, h := range batch {
			if tolerated[h] {
				continue
			}
			for _, a := range s.hostSteps[h] {
				if !ended(a) {
					return kept
				}
				these = append(these, a)
			}
		}
		for _, a := range these {
			keep(a)
		}
	}
	return kept
}

// hostSet is the hosts of a report's HostsFailed.
func hostSet(fs []*HostFailure) map[string]bool {
	out := map[string]bool{}
	for _, f := range fs {
		out[f.Host] = true
	}
	return out
}

// checkRandomRun checks a run of the scenario against the invariants;
// it returns what is wrong, nil when nothing is.
func checkRandomRun(prog *Program, s *rolloutScenario, lr *ledgerRun, report *Report, runErr error, run *Run) []string {
	var bad []string
	errorf := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	hostOfStep := map[string]string{}
	for h, addrs := range s.hostSteps {
		for _, a := range addrs {
			hostOfStep[a] = h
		}
	}
	failed := s.failedHosts(lr)
	tolerated := hostSet(report.HostsFailed)
	if len(tolerated) != len(report.HostsFailed) {
		errorf("a host in HostsFailed twice: %v", report.HostsFailed)
	}
	// The first max_failures hosts to fail are let fail. Which is first
	// is the engine's to tell when they fail together; with one step at a
	// time, the ledger's order is the engine's.
	if want := min(len(failed), s.maxFailures); len(tolerated) != want {
		errorf("%d hosts let fail (%v), want %d of the failed %v", len(tolerated), keys(tolerated), want, failed)
	}
	for h := range tolerated {
		if !slices.Contains(failed, h) {
			errorf("%s let fail, but no step of it failed", h)
		}
	}
	if s.parallelism == 1 && len(tolerated) == min(len(failed), s.maxFailures) {
		for _, h := range failed[:len(tolerated)] {
			if !tolerated[h] {
				errorf("%s, among the first %d to fail (%v), not let fail", h, len(tolerated), failed)
			}
		}
	}
	undoFailedTolerated := false
	for h := range tolerated {
		for _, a := range s.hostSteps[h] {
			if lr.count("undofail", a) > 0 {
				undoFailedTolerated = true
			}
		}
	}

	// 1 and 5: the run fails iff more hosts failed than max_failures, or
	// undoing a host let fail failed.
	wantErr := len(failed) > s.maxFailures || undoFailedTolerated
	if (runErr != nil) != wantErr {
		errorf("run error %v; want an error %v (failed hosts %v, max_failures %d, an undo of a host let fail failed %v)",
			runErr, wantErr, failed, s.maxFailures, undoFailedTolerated)
	}
	incomplete := false // a step's only undo, in the final rollback, failed
	for _, a := range s.stepsOf() {
		if lr.count("undofail", a) > 0 && lr.count("undo", a) == 0 {
			incomplete = true
		}
	}
	switch {
	case runErr == nil:
		want := journal.StatusSucceeded
		if len(failed) > 0 {
			want = journal.StatusHostsFailed
		}
		if !wantErr && len(tolerated) != len(failed) {
			errorf("HostsFailed %v, want every failed host %v", keys(tolerated), failed)
		}
		for _, f := range report.HostsFailed {
			if !f.RolledBack || f.Rollout != "web" || !s.fails[f.Step] || hostOfStep[f.Step] != f.Host || lr.count("fail", f.Step) == 0 {
				errorf("HostsFailed has %+v", *f)
			}
		}
		if run.Status != want || run.RollingBack {
			errorf("journal status %q, rolling back %v; want %q", run.Status, run.RollingBack, want)
		}
	case incomplete:
		if run.Status != journal.StatusRollbackIncomplete || report.Rollback != RollbackIncomplete {
			errorf("journal status %q, rollback %q; want %q", run.Status, report.Rollback, journal.StatusRollbackIncomplete)
		}
	default:
		if run.Status != journal.StatusRolledBack || report.Rollback != RollbackComplete {
			errorf("journal status %q, rollback %q; want %q", run.Status, report.Rollback, journal.StatusRolledBack)
		}
	}

	// 2: a host let fail has every step that ended undone once, its
	// first undo of a step failing if the scenario says so; no step of it
	// starts once the engine knows of its failure: with one step at a
	// time as soon as the failure ended; in parallel, a step started
	// meanwhile may run, but its undo waits for it.
	for h := range tolerated {
		firstFail, undoBegan := -1, -1
		for _, a := range s.hostSteps[h] {
			if i := lr.first("fail", a); i >= 0 && (firstFail < 0 || i < firstFail) {
				firstFail = i
			}
			if i := lr.first("undoing", a); i >= 0 && (undoBegan < 0 || i < undoBegan) {
				undoBegan = i
			}
		}
		for _, a := range s.hostSteps[h] {
			ended := lr.count("end", a) > 0
			switch {
			case ended && lr.count("undo", a) != 1:
				errorf("%s, of %s let fail, ended and was undone %d times", a, h, lr.count("undo", a))
			case !ended && lr.count("undoing", a) > 0:
				errorf("%s, of %s let fail, did not end but was undone", a, h)
			case ended && s.undoFails[a] && lr.count("undofail", a) != 1:
				errorf("%s: its first undo should have failed", a)
			}
			for _, what := range []string{"start", "end", "fail"} {
				for _, i := range lr.at[what][a] {
					if s.parallelism == 1 && what == "start" && i > firstFail {
						errorf("%s, of %s let fail, started at event %d, after its failure at %d", a, h, i, firstFail)
					}
					if undoBegan >= 0 && i > undoBegan {
						errorf("%s, of %s let fail: %s at event %d, after its undo began at %d", a, h, what, i, undoBegan)
					}
				}
			}
		}
	}

	// 3: no step of a batch starts before every step of the batches
	// before it ended, but for hosts let fail, whose steps that ended must
	// have been undone.
	batchOf := map[string]int{}
	batches := prog.Rollouts()[0].Batches
	for b, hosts := range batches {
		for _, h := range hosts {
			batchOf[h] = b
		}
	}
	for _, a := range s.stepsOf() {
		h := hostOfStep[a]
		if h == "" {
			continue
		}
		for _, i := range lr.at["start"][a] {
			for _, g := range slices.Concat(batches[:batchOf[h]]...) {
				for _, e := range s.hostSteps[g] {
					switch {
					case !tolerated[g] && !(lr.first("end", e) >= 0 && lr.first("end", e) < i):
						errorf("%s started at event %d before %s, of an earlier batch, ended", a, i, e)
					case tolerated[g] && lr.count("end", e) > 0 && !(lr.first("undo", e) >= 0 && lr.first("undo", e) < i):
						errorf("%s started at event %d before %s, of an earlier batch's host let fail, was undone", a, i, e)
					}
				}
			}
		}
	}

	// 4: without an error, every step of a host not let fail ended, and
	// only the steps of hosts let fail were undone; with one, the
	// rollback undid every step that ended once ("all"), but those of the
	// completed batches and what they depend on ("failed_batch").
	ended := func(a string) bool { return lr.count("end", a) > 0 }
	kept := map[string]bool{}
	if runErr != nil {
		kept = keptSteps(prog, s, tolerated, ended)
		if got := slices.Sorted(slices.Values(report.Kept)); !slices.Equal(got, keys(kept)) {
			errorf("Report.Kept %v, want %v", got, keys(kept))
		}
	}
	for _, a := range s.stepsOf() {
		h := hostOfStep[a]
		if h != "" && tolerated[h] {
			continue // 2
		}
		undone, undofail := lr.count("undo", a), lr.count("undofail", a)
		switch {
		case runErr == nil:
			if !ended(a) || undone+undofail > 0 {
				errorf("%s: ended %v, undone %d times (%d failed), in a run that did not fail", a, ended(a), undone, undofail)
			}
		case kept[a]:
			if !ended(a) || undone+undofail > 0 {
				errorf("%s, kept: ended %v, undone %d times (%d failed)", a, ended(a), undone, undofail)
			}
		case ended(a):
			if undone+undofail != 1 || (undofail == 1) != s.undoFails[a] {
				errorf("%s ended, and was undone %d times, its undo failing %d times", a, undone, undofail)
			}
		default:
			if undone+undofail > 0 {
				errorf("%s did not end, but was undone", a)
			}
		}
		if lr.count("start", a) > 1 || lr.count("end", a)+lr.count("fail", a) != lr.count("start", a) {
			errorf("%s started %d times, ended %d, failed %d", a, lr.count("start", a), lr.count("end", a), lr.count("fail", a))
		}
	}
	return bad
}

// TestRolloutFailuresRandom runs random rollouts that let hosts fail, and
// checks each run's events against the invariants (see checkRandomRun).
func TestRolloutFailuresRandom(t *testing.T) {
	base := rolloutSeedBase(t)
	for i := range uint64(randomRolloutRuns) {
		runRandomRollout(t, newRolloutScenario(base+i, true))
	}
}

func runRandomRollout(t *testing.T, s *rolloutScenario) {
	t.Helper()
	prog, l := s.compile(t)
	dir := t.TempDir()
	report, err := applyRollback(t, prog, dir, func(o *Options) { o.Parallelism = s.parallelism })
	lr := readLedger(l)
	if bad := checkRandomRun(prog, s, lr, report, err, loadRun(t, dir)); len(bad) > 0 {
		t.Fatalf("%s\nrun error: %v\n%s\nevents:\n%s", s, err, strings.Join(bad, "\n"), strings.Join(lr.events, "\n"))
	}
}

// TestRolloutFailuresRandomResumed runs random rollouts that let hosts
// fail, cuts each run's journal at a random record, as a kill after it
// would have left it, resumes (with the rollback), and checks the end
// state across both processes (see checkResumedRun).
func TestRolloutFailuresRandomResumed(t *testing.T) {
	base := rolloutSeedBase(t)
	for i := range uint64(randomRolloutRuns) {
		runRandomResume(t, newRolloutScenario(base+i, false))
	}
}

// TestRolloutFailuresRandomRegressions replays the seeds that found a
// defect, run as TestRolloutFailuresRandom or, resumed,
// TestRolloutFailuresRandomResumed do (the scenario a seed draws depends
// on newRolloutScenario: change it and these replay other scenarios).
func TestRolloutFailuresRandomRegressions(t *testing.T) {
	for _, tt := range []struct {
		name    string
		seed    uint64
		resumed bool
	}{
		// h0 fails at its second step and is let fail (max_failures 1);
		// h1 to h3 complete, h4 fails the run. Report.Kept listed h0's
		// steps, the first undone and the second failed, through the
		// batch order's edges from h1 to h0.
		{"a host let fail is not kept through the batch after it", 226, false},
		// rollback = "failed_batch", max_failures 0, one step at a time:
		// the run is killed once rec.s0["h3"], of the second batch,
		// failed, before its rollback. The resume runs what is left of
		// the second batch, rec.s0["h3"] fails again, and its rollback
		// undid the first batch, complete, too: every step a journal
		// showed started counted as unsettled, so no batch as complete.
		{"failed_batch keeps the completed batches after a resume", 6, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.resumed {
				runRandomResume(t, newRolloutScenario(tt.seed, false))
			} else {
				runRandomRollout(t, newRolloutScenario(tt.seed, true))
			}
		})
	}
}

func runRandomResume(t *testing.T, s *rolloutScenario) {
	t.Helper()
	r := rand.New(rand.NewPCG(s.seed, 0xc07))
	prog, _ := s.compile(t)
	first := t.TempDir()
	if _, err := applyRollback(t, prog, first, func(o *Options) { o.Parallelism = s.parallelism }); err != nil && !strings.Contains(err.Error(), "boom") {
		t.Fatalf("%s\nrun error: %v", s, err)
	}
	recs := lastJournal(t, first)
	cut := recs[:1+r.IntN(len(recs)-1)] // never the run's end
	dir := t.TempDir()
	writeJournal(t, dir, cut)
	rollingBack := loadRun(t, dir).RollingBack
	prog, l := s.compile(t)
	parallelism := 1 + r.IntN(8)
	report, err := resumeWith(t, prog, dir, func(o *Options) { o.Rollback, o.Parallelism = true, parallelism })
	lr := readLedger(l)
	if bad := checkResumedRun(prog, s, cut, rollingBack, lr, report, err, loadRun(t, dir)); len(bad) > 0 {
		var types []string
		for _, rec := range cut {
			types = append(types, rec.Type+" "+rec.Step+" "+rec.Host)
		}
		t.Fatalf("%s\nkilled after record %d of %d:\n%s\nresumed with parallelism %d; error: %v\n%s\nevents of the resume:\n%s",
			s, len(cut), len(recs), strings.Join(types, "\n"), parallelism, err, strings.Join(bad, "\n"), strings.Join(lr.events, "\n"))
	}
}

// checkResumedRun checks the end state of a run killed after the records
// cut and resumed (lr, report, resumeErr, run): what the first process did
// is what cut says it did. rollingBack: the cut run had begun its final
// rollback. It returns what is wrong, nil when nothing is.
func checkResumedRun(prog *Program, s *rolloutScenario, cut []journal.Record, rollingBack bool, lr *ledgerRun, report *Report, resumeErr error, run *Run) []string {
	var bad []string
	errorf := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	ended1, undone1, failedBefore := map[string]bool{}, map[string]int{}, map[string]bool{}
	for _, rec := range cut {
		switch rec.Type {
		case journal.StepSucceeded:
			ended1[rec.Step] = true
		case journal.RollbackSucceeded:
			undone1[rec.Step]++
		case journal.HostFailed:
			failedBefore[rec.Host] = true
		}
	}
	ended := func(a string) bool { return ended1[a] || lr.count("end", a) > 0 }
	undone := func(a string) int { return undone1[a] + lr.count("undo", a) }
	// The hosts that failed: let fail before the kill, or failing since.
	failed := map[string]bool{}
	for h := range failedBefore {
		failed[h] = true
	}
	for _, h := range s.failedHosts(lr) {
		failed[h] = true
	}
	tolerated := hostSet(report.HostsFailed)
	for h := range failedBefore {
		if !tolerated[h] {
			errorf("%s, let fail before the kill, is not in HostsFailed %v", h, keys(tolerated))
		}
		for _, a := range s.hostSteps[h] {
			if lr.count("start", a) > 0 {
				errorf("%s, of %s let fail before the kill, started again", a, h)
			}
		}
	}
	for h := range tolerated {
		if !failed[h] {
			errorf("%s let fail, but it did not fail", h)
		}
	}
	wantErr := rollingBack || len(failed) > s.maxFailures
	if (resumeErr != nil) != wantErr {
		errorf("resume error %v; want an error %v (failed hosts %v, max_failures %d, rolling back %v)", resumeErr, wantErr, keys(failed), s.maxFailures, rollingBack)
	}
	if rollingBack && len(lr.at["start"]) > 0 {
		errorf("steps started while the rollback was resumed: %v", keys(lr.at["start"]))
	}
	if !rollingBack && len(tolerated) != min(len(failed), s.maxFailures) {
		errorf("%d hosts let fail (%v), want %d of %v", len(tolerated), keys(tolerated), min(len(failed), s.maxFailures), keys(failed))
	}
	kept := map[string]bool{}
	switch {
	case resumeErr == nil:
		want := journal.StatusSucceeded
		if len(failed) > 0 {
			want = journal.StatusHostsFailed
		}
		if run.Status != want {
			errorf("journal status %q, want %q", run.Status, want)
		}
	default:
		if run.Status != journal.StatusRolledBack || report.Rollback != RollbackComplete {
			errorf("journal status %q, rollback %q; want %q", run.Status, report.Rollback, journal.StatusRolledBack)
		}
		kept = keptSteps(prog, s, tolerated, ended)
		if got := slices.Sorted(slices.Values(report.Kept)); !slices.Equal(got, keys(kept)) {
			errorf("Report.Kept %v, want %v", got, keys(kept))
		}
	}
	// A host that failed has every step that ended, in either process,
	// undone once in all; a step that was under way at the kill may have
	// changed something, and is undone at most once. Without an error,
	// every other host has every step done and not undone; with one,
	// the rollback undid it but what it kept.
	for _, a := range s.stepsOf() {
		h := hostOf(a)
		switch {
		case tolerated[h] || resumeErr != nil && !kept[a]:
			if ended(a) && undone(a) != 1 || !ended(a) && undone(a) > 1 {
				errorf("%s: ended %v, undone %d times", a, ended(a), undone(a))
			}
		default:
			if !ended(a) || undone(a) != 0 {
				errorf("%s: ended %v, undone %d times; want done, not undone", a, ended(a), undone(a))
			}
		}
	}
	return bad
}
