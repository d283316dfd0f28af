package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/fullfs"
)

// TestResumeBeforeTheFirstRecord: a run killed before its first journal
// record reached the file (before it, or half way through writing it) did
// nothing. resume says there is no run to resume, changes nothing and exits
// 0, as the exit codes in docs/cli.md say of "nothing to resume"; the next run
// starts without -fresh.
func TestResumeBeforeTheFirstRecord(t *testing.T) {
	for _, fp := range []string{"before:1", "tear:1"} {
		t.Run(strings.ReplaceAll(fp, ":", "_"), func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			mark := filepath.Join(dir, "ran")
			plan := filepath.Join(dir, "touch.hcl")
			src := "reload \"touch\" {\n  command = [\"/bin/touch\", \"" + mark + "\"]\n}\n"
			if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			res := runBinary(t, crashBin, []string{"ROTPLAN_FAILPOINT=" + fp}, "run", "-state-dir", state, plan)
			if res.exit != -1 {
				t.Fatalf("ROTPLAN_FAILPOINT=%s: exit %d, want the run killed\n%s%s", fp, res.exit, res.stdout, res.stderr)
			}
			res = runRotplan(t, nil, "resume", "-state-dir", state, plan)
			if res.exit != 0 || !strings.Contains(res.stdout, "there is no run to resume in "+state) || !strings.Contains(res.stdout, "nothing was done") {
				t.Errorf("resume: exit %d, want 0 saying there is no run to resume and nothing was done\n%s%s", res.exit, res.stdout, res.stderr)
			}
			if _, err := os.Stat(mark); err == nil {
				t.Error("resume ran the step of a run that never started")
			}
			if res := runRotplan(t, nil, "run", "-state-dir", state, plan); res.exit != 0 {
				t.Errorf("the next run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
		})
	}
}

// fillStep is a plan step that fills the filesystem of the state
// directory state, as a disk filling up mid-run does.
func fillStep(name, state string) string {
	return fmt.Sprintf(`reload %q {
  command = ["/bin/sh", "-c", "cat /dev/zero > %s 2>/dev/null; true"]
`, name, filepath.Join(state, "filler"))
}

// TestJournalFullWithoutVault: the state directory fills up while a run
// has steps under way. The run stops, rolls back what it did, and exits 3,
// not 4 with the journal's own failures listed as steps to undo by hand;
// it says that the journal could not be written, where, and what to do.
//
// The steps after the fill are writes, whose start records must be durable
// before they change anything: the first one that no longer fits in the
// journal's last page fails the run, however fast the machine. (Records a
// run only writes lazily, such as those of a command, reach the disk within
// 50 ms or at the end: a run that fast exits 1 with "the run succeeded but
// its end could not be journaled", which is right too, but not this case.
// With commands after the fill, this test failed on a faster machine.)
func TestJournalFullWithoutVault(t *testing.T) {
	state := fullfs.Mount(t, 64<<10)
	dir := t.TempDir()
	plan := filepath.Join(dir, "fill.hcl")
	src := fillStep("fill", state) + "}\n" + fmt.Sprintf(`write "after" {
  count      = 40
  depends_on = [reload.fill]
  path       = "%s/after-${count.index}"
  content    = "after"
}
`, dir)
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runRotplan(t, nil, "run", "-state-dir", state, plan)
	if res.exit != exitRolledBack || strings.Contains(res.stdout, "by hand") {
		t.Errorf("exit %d, want %d (rolled back) with nothing to undo by hand\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	for _, want := range []string{"Cannot write the journal", "no space left on device", journalPath(t, state), "-fresh"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("the output lacks %q:\n%s", want, res.stderr)
		}
	}
}

// TestJournalFullMidRotation: the state directory fills up once the server
// certificate is issued, before it is written: the backups of the server's
// files and the journal fail, or, with the backups on a filesystem of their
// own, the journal alone. rotplan stops and undoes what it did from what it
// knows in memory: the files are as before the run (server.crt still
// matches server.key), and both certificates it issued are revoked, the
// server's although its issue record never reached the journal. Once space
// is freed, a new run rotates.
func TestJournalFullMidRotation(t *testing.T) {
	r := newRotation(t)
	for _, tt := range []struct {
		name        string
		ownBackups  bool   // the backups have space of their own
		wantJournal string // what the output says of the journal
	}{
		{"backups and journal", false, "no space left on device"},
		{"the journal alone", true, "Cannot write the journal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state := fullfs.Mount(t, 256<<10)
			if tt.ownBackups {
				backups := filepath.Join(state, "backups")
				if err := os.Mkdir(backups, 0o700); err != nil {
					t.Fatal(err)
				}
				fullfs.MountAt(t, backups, 1<<20)
			}
			plan := editedPlan(t, func(src string) string {
				// The server's files are written once the disk is full.
				src = regexp.MustCompile(`(write "server_(key|crt|fullchain|ca_chain)" \{\n)`).ReplaceAllString(src, "${1}  depends_on = [reload.fill]\n")
				return src + "\n" + fillStep("fill", state) + "  depends_on = [issue.server]\n}\n"
			})
			before := readFiles(t, rotatedFiles(r.v))
			served := servedSerial(t, r.v)
			issuedBefore := issuedSerials(t, r.v)

			res := runRotplan(t, r.v.Environ(), r.argsFor(plan, "run", state)...)
			t.Logf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			if res.exit != exitRolledBack {
				t.Errorf("exit %d, want %d: every step it did can be undone", res.exit, exitRolledBack)
			}
			if !strings.Contains(res.stderr, tt.wantJournal) {
				t.Errorf("the output does not say %q", tt.wantJournal)
			}
			after := readFiles(t, rotatedFiles(r.v))
			for p, b := range before {
				if !bytes.Equal(after[p].data, b.data) {
					t.Errorf("%s differs from before the run", p)
				}
			}
			if _, err := tls.LoadX509KeyPair(filepath.Join(r.v.ServerDir, "server.crt"), filepath.Join(r.v.ServerDir, "server.key")); err != nil {
				t.Errorf("server.crt and server.key do not match: %v", err)
			}
			if got := servedSerial(t, r.v); got != served {
				t.Errorf("Vault serves %s, before the run %s", got, served)
			}
			newCerts := 0
			for _, serial := range issuedSerials(t, r.v) {
				if slices.Contains(issuedBefore, serial) {
					continue
				}
				newCerts++
				if !isRevoked(t, r.v, serial) {
					t.Errorf("the run issued %s, which is not revoked", serial)
				}
			}
			if newCerts != 2 {
				t.Errorf("the run issued %d certificates, want 2 (admin and server): the disk filled at the wrong point", newCerts)
			}
			// The journal shows the rollback once it could be written
			// again (the backups removed), or the run said it does not.
			if run, err := engine.LoadRun(state); err != nil || run.Status != journal.StatusRolledBack && !strings.Contains(res.stderr, "-fresh") {
				t.Errorf("the journal shows neither the rollback nor did the run say it does not (%v)", err)
			}
			assertNoSecrets(t, r.v, []string{state})
			assertNoSecretOutput(t, r.v, res)

			if err := os.Remove(filepath.Join(state, "filler")); err != nil {
				t.Fatal(err)
			}
			res = runRotplan(t, r.v.Environ(), r.args("run", state, "-fresh")...)
			if res.exit != 0 {
				t.Fatalf("run -fresh once space is free: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
			checkRotated(t, r.v)
		})
	}
}

// TestResumeAfterRollbackFalse: a run with -rollback=false fails at a step
// after the server's files are written; a resume asked to roll back, with
// the cause still there, fails again and leaves the run in place (nothing
// was saved to undo it with); once the cause is fixed, resume finishes the
// rotation, and Vault serves server.crt.
func TestResumeAfterRollbackFalse(t *testing.T) {
	r := newRotation(t)
	flag := filepath.Join(t.TempDir(), "cause-fixed")
	plan := editedPlan(t, func(src string) string {
		return strings.Replace(src, "depends_on = [chown.server_tls]\n  pid_file", "depends_on = [reload.gate]\n  pid_file", 1) +
			fmt.Sprintf("\nreload \"gate\" {\n  depends_on = [chown.server_tls]\n  command    = [\"/bin/test\", \"-e\", %q]\n}\n", flag)
	})
	state := t.TempDir()
	res := runRotplan(t, r.v.Environ(), r.argsFor(plan, "run", state, "-rollback=false")...)
	if res.exit != 1 {
		t.Fatalf("run -rollback=false: exit %d, want 1\n%s%s", res.exit, res.stdout, res.stderr)
	}
	res = runRotplan(t, r.v.Environ(), r.argsFor(plan, "resume", state, "-rollback")...)
	t.Logf("resume -rollback, the cause still there: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	if res.exit != 1 || !strings.Contains(res.stderr, "nothing was saved to undo") || strings.Contains(res.stdout, "by hand") {
		t.Errorf("resume -rollback with the cause still there: exit %d, want 1 leaving the run in place, saying why", res.exit)
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res = runRotplan(t, r.v.Environ(), r.argsFor(plan, "resume", state, "-force")...)
	if res.exit != 0 {
		t.Fatalf("resume -force once the cause is fixed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkRotated(t, r.v)
}
