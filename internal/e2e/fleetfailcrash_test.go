package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
)

// fleetFailCrashSeedEnv names the environment variable that gives
// TestFleetHostFailedKilledAndResumed the seed of its sample back (the
// test logs the seed it used).
const fleetFailCrashSeedEnv = "ROTPLAN_FLEET_FAIL_CRASH_SEED"

// fleetFailCrashAllEnv, set to 1, makes TestFleetHostFailedKilledAndResumed
// kill at every boundary instead of a sample.
const fleetFailCrashAllEnv = "ROTPLAN_FLEET_FAIL_CRASH_ALL"

// fleetFailCrashSample is how many counted boundaries
// TestFleetHostFailedKilledAndResumed kills at when there are more.
const fleetFailCrashSample = 10

// TestFleetHostFailedKilledAndResumed kills rotplan (kill -9, the
// failpoints build) during a run of examples/fleet.hcl on four nginx hosts
// in batches of two with max_failures = 1 and `nginx -t` broken on h2, of
// the first batch (so the second batch starts once h2 is undone), then
// runs `rotplan resume`. Before each kill the hosts get back the files and
// configurations the bed started with, and h2 its broken one (resetSites,
// breakConfig). After each resume, from outside (failedHostOutcome): the
// resume exits 5 and the run ends hosts_failed, h2 having failed at its
// `nginx -t`; h2 serves its old serial and holds its old key and
// certificate, byte for byte, mode and owner; h1, h3 and h4 serve, over
// TLS from the controller, the new chain in their files, whose key is in
// their key files; no temporary file is beside the files; every
// certificate the journal says h2 was signed is revoked, and a certificate
// signed for an attempt whose serial the kill lost before the journal had
// it is warned of (checkLost); the second batch started only once h2's
// sign was undone, in the journal and as a watcher polling the hosts saw
// it; no rollback record is for another host; no key or token is in the
// output or the state.
//
// Killed once the run has journaled its end (after:N of its last record),
// the resume has nothing to do: it exits 0, "nothing to resume", as after
// any finished run (the run's outcome, exit 5, is `rotplan status`'s to
// tell, and the run's own exit said it).
//
// The counted kill points are a sample (sampleKillPoints; the seed
// logged, ROTPLAN_FLEET_FAIL_CRASH_SEED gives it back,
// ROTPLAN_FLEET_FAIL_CRASH_ALL=1 kills at every boundary). Named ones land
// in the failure's windows whatever the order of parallel steps: h2's sign
// done but not journaled; h2's check failed but its host_failed not
// journaled; right after host_failed; between h2's sign's rollback_started
// and rollback_succeeded, before the undo (right after the first) and
// once it is done (right before the second); right after
// rollback_succeeded, before the second batch starts; once the second
// batch's first sign started.
func TestFleetHostFailedKilledAndResumed(t *testing.T) {
	const extra = "max_failures = 1\n"
	f := newFleetFailure(t, 1)
	broken := f.broken.Host.Name
	var oldKeyLines []string
	for _, s := range f.w.Sites {
		oldKeyLines = append(oldKeyLines, pemBodyLines(t, s.KeyFile)...)
	}

	t0 := time.Now()
	f.r = newFleetRun(t, f.w, 2, "50ms")
	f.r.addVars(t, extra)
	f.res = f.r.rotplan(t, f.ctx, "run")
	if f.res.exit != 5 {
		t.Fatalf("uninterrupted run: exit %d, want 5\n%s%s", f.res.exit, f.res.stdout, f.res.stderr)
	}
	total := len(readJournal(t, f.r.state()).Records)
	t.Logf("an uninterrupted run: %d records, %s", total, time.Since(t0).Round(time.Millisecond))
	f.checkHostFailed(t, oldKeyLines, f.res)

	failpoints := sampleKillPoints(t, total, fleetFailCrashSample, fleetFailCrashSeedEnv, fleetFailCrashAllEnv)
	sign, check := fmt.Sprintf("sign.web[%q]", broken), fmt.Sprintf("verify.config[%q]", broken)
	failpoints = append(failpoints,
		"before-"+journal.StepSucceeded+":"+sign,
		"after-"+journal.StepFailed+":"+check,
		"after-"+journal.HostFailed+":"+check,
		"after-"+journal.RollbackStarted+":"+sign,
		"before-"+journal.RollbackSucceeded+":"+sign,
		"after-"+journal.RollbackSucceeded+":"+sign,
		fmt.Sprintf("after-start:sign.web[%q]", f.batches[1][0].Host.Name),
	)

	tally := newKillTally()
	for _, fp := range failpoints {
		t.Run(strings.ReplaceAll(fp, ":", "_"), func(t *testing.T) {
			t0 := time.Now()
			resetSites(t, f.ctx, f.w, f.saved)
			breakConfig(t, f.broken)
			reset := time.Since(t0)
			k := killAndResume(t, f.ctx, f.w, f.batches, fp, extra)
			f.r, f.res, f.seen = k.r, k.res, k.seen
			t.Logf("resume:\n%s", k.res.stdout)
			if k.killed.Status == journal.StatusHostsFailed {
				if k.res.exit != 0 || !strings.Contains(k.res.stdout, "nothing to resume") {
					t.Errorf("resume of a run that had ended: exit %d, want 0 and nothing to resume\n%s%s", k.res.exit, k.res.stdout, k.res.stderr)
				}
			} else if k.res.exit != 5 {
				t.Errorf("resume: exit %d, want 5\nstdout:\n%s\nstderr:\n%s", k.res.exit, k.res.stdout, k.res.stderr)
			}
			accounted := f.checkHostFailed(t, oldKeyLines, k.crash, k.res)
			// A step the kill interrupted is explained as in any resume,
			// but those of a host that had failed by then: they are left.
			others := *k.killed
			others.Steps = maps.Clone(k.killed.Steps)
			if slices.ContainsFunc(k.killed.HostsFailed, func(h engine.HostFailure) bool { return h.Host == fmt.Sprintf("host.web[%q]", broken) }) {
				maps.DeleteFunc(others.Steps, func(addr string, _ *engine.StepState) bool {
					return strings.HasSuffix(addr, fmt.Sprintf("[%q]", broken))
				})
			}
			after, err := engine.LoadRun(k.r.state())
			if err != nil {
				t.Fatal(err)
			}
			checkInterruptedExplained(t, &others, after)
			k.checkLost(t, f.w, accounted)
			tally.add(t, k, reset)
		})
	}
	tally.log(t, total)
}

// checkHostFailed checks, after f.r's run or resume whose output is
// results, that the fleet is as a run in which h2 (f.broken) failed
// within max_failures leaves it (see TestFleetHostFailedKilledAndResumed),
// and returns the serials the journal says h2 was signed, revoked.
func (f *fleetFailure) checkHostFailed(t *testing.T, oldKeyLines []string, results ...result) (signed map[string]bool) {
	t.Helper()
	broken := f.broken.Host.Name
	for _, s := range f.w.Sites {
		if s == f.broken {
			f.restored(t, s)
		} else {
			f.rotated(t, s)
		}
	}
	checkFleetClean(t, f.w, f.r, oldKeyLines, results...)
	checkBatchOrder(t, f.seen, f.before, without(f.batches, f.broken))

	run, err := engine.LoadRun(f.r.state())
	if err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("host.web[%q]", broken)
	check := fmt.Sprintf("verify.config[%q]", broken)
	if run.Status != journal.StatusHostsFailed || len(run.HostsFailed) != 1 || run.HostsFailed[0].Host != host || run.HostsFailed[0].Step != check {
		t.Errorf("the journal ends %q with hosts failed %+v, want %s and %s at %s", run.Status, run.HostsFailed, journal.StatusHostsFailed, host, check)
	}

	// The second batch starts once h2's sign is undone: after the last
	// rollback of it that started, and its success.
	c := readJournal(t, f.r.state())
	sign := fmt.Sprintf("sign.web[%q]", broken)
	undoStarted, undone := -1, -1
	for i, rec := range c.Records {
		switch {
		case rec.Type == journal.RollbackStarted && rec.Step == sign:
			undoStarted, undone = i, -1
		case rec.Type == journal.RollbackSucceeded && rec.Step == sign && undone < 0:
			undone = i
		}
		if (rec.Type == journal.RollbackStarted || rec.Type == journal.RollbackSucceeded || rec.Type == journal.RollbackFailed) && rec.Host != host {
			t.Errorf("rollback record %s %s for %q, not the failed host's", rec.Type, rec.Step, rec.Host)
		}
	}
	if undoStarted < 0 || undone < 0 {
		t.Errorf("the journal does not show %s undone (rollback started at record %d, succeeded at %d)", sign, undoStarted, undone)
	}
	for i, rec := range c.Records {
		for _, s := range f.batches[1] {
			if rec.Type == journal.StepStarted && strings.HasSuffix(rec.Step, fmt.Sprintf("[%q]", s.Host.Name)) && i < undone {
				t.Errorf("record %d: %s, of the second batch, started before %s was undone (record %d)", i, rec.Step, sign, undone)
			}
		}
	}

	// What h2 was signed is revoked; what the others serve is not.
	serials := signedSerials(t, c)
	if len(serials[broken]) == 0 {
		t.Errorf("the journal holds no certificate signed for %s", broken)
	}
	signed = map[string]bool{}
	for _, serial := range serials[broken] {
		signed[serial] = true
		if !isRevoked(t, f.w.Vault, serial) {
			t.Errorf("%s's certificate %s (of %v) is not revoked", broken, serial, serials[broken])
		}
	}
	for _, s := range f.w.Sites {
		if s == f.broken {
			continue
		}
		files, err := testvault.ReadCertificates(s.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if serial := colonHex(files[0]); isRevoked(t, f.w.Vault, serial) {
			t.Errorf("%s serves %s, revoked", s.Host.Name, serial)
		}
	}
	return signed
}
