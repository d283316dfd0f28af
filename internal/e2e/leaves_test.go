package e2e

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
)

// leafArgs are the arguments that rotate apps leaf certificates into dir
// with examples/leaves.hcl.
func leafArgs(command, state, dir string, apps int, extra ...string) []string {
	args := append([]string{command, "-state-dir", state, "-var", fmt.Sprintf("apps=%d", apps), "-var", "dir=" + dir}, extra...)
	return append(args, "examples/leaves.hcl")
}

// checkLeaves checks that every app has a key (0600) matching its
// certificate, issued for its name.
func checkLeaves(t *testing.T, dir string, apps int) {
	t.Helper()
	for i := range apps {
		app := fmt.Sprintf("app%d", i)
		key, crt := filepath.Join(dir, app+".key"), filepath.Join(dir, app+".crt")
		if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
			t.Errorf("%s: %v", app, err)
			continue
		}
		if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.key: mode %v, %v", app, fi.Mode(), err)
		}
		leaf := readCert(t, crt)
		if want := app + "." + testvault.LeafDomain; len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != want {
			t.Errorf("%s.crt names %v, want %s", app, leaf.DNSNames, want)
		}
		if _, err := os.Stat(filepath.Join(dir, app+".chain.pem")); err != nil {
			t.Error(err)
		}
	}
}

// TestLeavesForEach rotates leaf certificates with for_each, kills a run
// part way and resumes it, and checks the instances in the journal.
func TestLeavesForEach(t *testing.T) {
	r := newRotation(t)
	const apps = 4
	dir, state := t.TempDir(), t.TempDir()
	res := runRotplan(t, r.v.Environ(), leafArgs("run", state, dir, apps)...)
	if res.exit != 0 {
		t.Fatalf("run exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkLeaves(t, dir, apps)
	run, err := engine.LoadRun(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Steps) != 5*apps || run.Steps[`write.key["app3"]`] == nil || run.Steps[`verify.pair["app0"]`].State != engine.StateSucceeded {
		t.Errorf("journal steps: %v", run.Order)
	}
	assertNoSecrets(t, r.v, []string{state})

	// Killed after a third of its records, then resumed.
	total := len(readJournal(t, state).Records)
	dir2, state2 := t.TempDir(), t.TempDir()
	killed := runBinary(t, crashBin, append(r.v.Environ(), fmt.Sprintf("ROTPLAN_FAILPOINT=after:%d", total/3)), leafArgs("run", state2, dir2, apps)...)
	if killed.exit != -1 {
		t.Fatalf("the failpoint did not kill rotplan (exit %d)\n%s", killed.exit, killed.stderr)
	}
	res = runRotplan(t, r.v.Environ(), leafArgs("resume", state2, dir2, apps)...)
	if res.exit != 0 {
		t.Fatalf("resume exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkLeaves(t, dir2, apps)
	after, err := engine.LoadRun(state2)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != journal.StatusSucceeded || after.Count(engine.StateSucceeded) != 5*apps {
		t.Errorf("after resume: %s, %d of %d succeeded", after.Status, after.Count(engine.StateSucceeded), 5*apps)
	}
	if !strings.Contains(res.stdout, `issue.leaf["app`) {
		t.Errorf("resume output names no instance:\n%s", res.stdout)
	}
	assertNoSecrets(t, r.v, []string{state2})

	// The preview shows every instance, and what each waits for.
	res = runRotplan(t, r.v.Environ(), "plan", "-var", "apps=2", "-var", "dir="+dir, "examples/leaves.hcl")
	if res.exit != 0 || !strings.Contains(res.stdout, `~ write.key["app1"]: replace`) || !strings.Contains(res.stdout, "(known after issue)") {
		t.Errorf("plan exited %d:\n%s%s", res.exit, res.stdout, res.stderr)
	}
}
