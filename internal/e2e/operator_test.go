package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run rotplan as an operator does: from the plan's own
// directory, with relative paths and the default state directory
// (.rotplan beside the plan).

// runIn runs the rotplan binary with dir as its working directory.
func runIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return runInWith(t, dir, rotplanBin, env, args...)
}

// runInWith runs a rotplan binary with dir as its working directory.
func runInWith(t *testing.T, dir, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	return runCmd(t, cmd, 3*time.Minute)
}

// planDir makes a directory holding plan.hcl with src, and the files given
// (relative name → content, mode 0644).
func planDir(t *testing.T, src string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plan.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mustRead returns a file's content.
func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// failingReloadPlan replaces a file, then fails: the write must be undone.
const failingReloadPlan = `
write "f" {
  path    = "target.txt"
  content = "new\n"
  mode    = "0640"
}

reload "x" {
  depends_on = [write.f]
  command    = ["/bin/false"]
}
`

// TestRollbackWithDefaultStateDir: 'rotplan run plan.hcl' from the plan's
// directory keeps its state in the relative .rotplan, and rollback must
// still put the replaced file back.
func TestRollbackWithDefaultStateDir(t *testing.T) {
	dir := planDir(t, failingReloadPlan, map[string]string{"target.txt": "old\n"})
	res := runIn(t, dir, nil, "run", "plan.hcl")
	if res.exit != exitRolledBack {
		t.Fatalf("exit %d, want %d (rolled back)\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "old\n" {
		t.Errorf("target.txt holds %q after the rollback, want the old content", got)
	}
	fi, err := os.Stat(filepath.Join(dir, "target.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("target.txt has mode %v after the rollback, want 0644 as before", fi.Mode().Perm())
	}
	if !strings.Contains(res.stdout, "ROLLED BACK") {
		t.Errorf("the summary should say the run was rolled back:\n%s", res.stdout)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".rotplan", "backups")); len(entries) != 0 {
		t.Errorf("backups left after a clean rollback: %d", len(entries))
	}
}

// TestResumeRollsBackWithDefaultStateDir: a run killed as its last step
// fails is finished by resume from the same directory: the step fails
// again and the write is rolled back from the relative state directory.
func TestResumeRollsBackWithDefaultStateDir(t *testing.T) {
	dir := planDir(t, failingReloadPlan, map[string]string{"target.txt": "old\n"})
	// Record 5 is reload.x's failure: the kill comes just before it.
	res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=before:5"}, "run", "plan.hcl")
	if res.exit != -1 {
		t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "new\n" {
		t.Fatalf("target.txt holds %q after the killed run, want the new content", got)
	}
	res = runIn(t, dir, nil, "resume", "plan.hcl")
	if res.exit != exitRolledBack {
		t.Fatalf("resume: exit %d, want %d (rolled back)\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "old\n" {
		t.Errorf("target.txt holds %q after resume rolled back, want the old content", got)
	}
}
