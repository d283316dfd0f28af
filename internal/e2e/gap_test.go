package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
)

// TestResumeRollsBackStepWhoseSuccessWasLost: a run is killed after a
// step changed the system but before its success reached the journal. The
// step's effect is then changed again by someone (so that the resume does
// not find it in place and redoes it), and a later step cannot run on
// resume. The resume's rollback must undo the lost step too, from the
// snapshot journaled before it ran: the file's bytes, mode and owner are
// the old ones again.
func TestResumeRollsBackStepWhoseSuccessWasLost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the chown case gives a file to nobody, which needs root")
	}
	const writeStep = `
write "s" {
  path    = "tls/target.txt"
  content = "new\n"
  mode    = "0644"
}`
	// A write's effect changed by someone else: its mode differs.
	chmod600 := func(t *testing.T, target string) {
		t.Helper()
		if err := os.Chmod(target, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		step string // the step under test, on tls/target.txt
		// killRollback kills the resume once its rollback started.
		killRollback bool
		// after changes the target after the kill, so that the resume
		// does not find the step's effect in place.
		after func(t *testing.T, target string)
	}{
		{
			name:  "write",
			step:  writeStep,
			after: chmod600,
		},
		{
			// The resume is killed once its rollback started: a third
			// process finishes the rollback from the journal alone.
			name:         "write, rollback killed",
			step:         writeStep,
			killRollback: true,
			after:        chmod600,
		},
		{
			name: "chown",
			step: `
chown "s" {
  paths = ["tls/target.txt"]
  owner = "nobody"
}`,
			after: func(t *testing.T, target string) {
				t.Helper()
				if err := os.Chown(target, 1, -1); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := strings.Fields(tt.step)[0]
			plan := tt.step + `

write "later" {
  depends_on = [` + kind + `.s]
  path       = "other/later.txt"
  content    = "later\n"
}
`
			dir := planDir(t, plan, nil)
			tls, other := filepath.Join(dir, "tls"), filepath.Join(dir, "other")
			for _, d := range []string{tls, other} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			target := filepath.Join(tls, "target.txt")
			if err := os.WriteFile(target, []byte("old\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(target, 0o640); err != nil {
				t.Fatal(err)
			}
			// Record 3 is the step's success, after its start (2): the
			// kill comes with the step done and its success lost.
			res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=before:3"}, "run", "plan.hcl")
			if res.exit != -1 {
				t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
			if got := journalTypes(t, dir); got != "run_started step_started" {
				t.Fatalf("the killed run journaled %s, want its start and the step's", got)
			}
			tt.after(t, target)
			// The later step cannot run now: its directory became a link.
			if err := os.Rename(other, other+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other+".moved", other); err != nil {
				t.Fatal(err)
			}
			if tt.killRollback {
				// Records 1 and 2 are the resume's start and its decision
				// to redo the step; 3 is the rollback's start.
				res = runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=after:3"}, "resume", "plan.hcl")
				if res.exit != -1 {
					t.Fatalf("resume: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
				}
				if got := journalTypes(t, dir); !strings.HasSuffix(got, "rollback_started") {
					t.Fatalf("the killed resume journaled %s, want it to end with the rollback's start", got)
				}
			}
			res = runIn(t, dir, nil, "resume", "plan.hcl")
			if res.exit != exitRolledBack {
				t.Fatalf("resume: exit %d, want %d (rolled back)\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
			}
			fi, err := os.Lstat(target)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if got := mustRead(t, target); got != "old\n" || fi.Mode().Perm() != 0o640 || st.Uid != 0 {
				t.Errorf("after the rollback the target holds %q, mode %v, owner %d; want \"old\\n\", 0640, 0 as before the run\n%s%s",
					got, fi.Mode().Perm(), st.Uid, res.stdout, res.stderr)
			}
		})
	}
}

// TestResumeKeepsBackupsWhenLostStepCannotBeUndone: as above, but the
// directory of the write whose success was lost is given to another user,
// so that neither the redo nor the rollback may touch it. The resume must
// not say the system is as it was: it exits 4, keeps the backup and says
// how to restore it by hand.
func TestResumeKeepsBackupsWhenLostStepCannotBeUndone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving the directory to nobody needs root")
	}
	const plan = `
write "s" {
  path    = "tls/target.txt"
  content = "new\n"
}
`
	dir := planDir(t, plan, nil)
	tls := filepath.Join(dir, "tls")
	if err := os.Mkdir(tls, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(tls, "target.txt")
	if err := os.WriteFile(target, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=before:3"}, "run", "plan.hcl")
	if res.exit != -1 {
		t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if err := os.Chown(tls, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	res = runIn(t, dir, nil, "resume", "plan.hcl")
	out := res.stdout + res.stderr
	if res.exit != exitRollbackIncomplete {
		t.Errorf("resume: exit %d, want %d (rollback incomplete)\n%s", res.exit, exitRollbackIncomplete, out)
	}
	if strings.Contains(out, "as it was") {
		t.Errorf("resume says the system is as it was, with the write's effect in place:\n%s", out)
	}
	if !strings.Contains(out, "install -m 0644") {
		t.Errorf("resume does not say how to restore the file by hand:\n%s", out)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, ".rotplan", "backups", "*", "*", "target.txt"))
	if len(backups) != 1 || mustRead(t, backups[0]) != "old\n" {
		t.Errorf("backups %v, want the copy of the replaced file kept", backups)
	}
}

// journalTypes returns the types of the records of the only run in the
// plan directory dir's default state directory, space-separated.
func journalTypes(t *testing.T, dir string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, ".rotplan", "runs", "*.journal"))
	if len(paths) != 1 {
		t.Fatalf("journals %v, want one", paths)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(mustRead(t, paths[0])), "\n") {
		_, rest, _ := strings.Cut(line, `"type":"`)
		typ, _, _ := strings.Cut(rest, `"`)
		types = append(types, typ)
	}
	return strings.Join(types, " ")
}

// TestResumeNamesCertificateWhoseSerialWasLost: a run is killed after
// Vault issued a certificate but before its serial reached the journal. The
// certificate cannot be revoked without its serial, but it must not be
// forgotten either: whether the resume's rollback ends the run or the
// resume succeeds, rotplan says that a certificate for the common name may
// have been issued and how to find it in Vault.
func TestResumeNamesCertificateWhoseSerialWasLost(t *testing.T) {
	const plan = `
issue "c" {
  mount       = "pki-prod"
  role        = "vault-server"
  common_name = "vault.prod.privsec.ch"
  ttl         = "1h"
}

write "later" {
  depends_on = [issue.c]
  path       = "other/later.txt"
  content    = issue.c.serial_number
}
`
	tests := []struct {
		name string
		// breakLater makes the later step refuse to run on resume.
		breakLater bool
		wantExit   int
	}{
		{"resume rolls back", true, exitRollbackIncomplete},
		{"resume succeeds", false, 0},
	}
	v := testvault.StartT(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := planDir(t, plan, nil)
			other := filepath.Join(dir, "other")
			if err := os.Mkdir(other, 0o755); err != nil {
				t.Fatal(err)
			}
			// Record 3 is the success, after its start (2).
			res := runInWith(t, dir, crashBin, append(v.Environ(), "ROTPLAN_FAILPOINT=before:3"), "run", "plan.hcl")
			if res.exit != -1 {
				t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
			if tt.breakLater {
				if err := os.Rename(other, other+".moved"); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(other+".moved", other); err != nil {
					t.Fatal(err)
				}
			}
			res = runIn(t, dir, v.Environ(), "resume", "plan.hcl")
			out := res.stdout + res.stderr
			if res.exit != tt.wantExit {
				t.Errorf("resume: exit %d, want %d\n%s", res.exit, tt.wantExit, out)
			}
			for _, want := range []string{`a certificate for "vault.prod.privsec.ch" may have been issued in pki-prod`, "vault list pki-prod/certs"} {
				if !strings.Contains(out, want) {
					t.Errorf("resume does not say %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "as it was") {
				t.Errorf("resume says the system is as it was:\n%s", out)
			}
		})
	}
}
