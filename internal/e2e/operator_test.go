package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
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

// inputsPlan takes a required variable, a sensitive one and one from a
// variable file; write.a is where the run is killed.
const inputsPlan = `
variable "greeting" {
  type = string
}

variable "suffix" {
  type    = string
  default = ""
}

variable "token" {
  type      = string
  sensitive = true
}

write "a" {
  path    = "a.txt"
  content = "${var.greeting}${var.suffix}\n"
}

write "b" {
  depends_on = [write.a]
  path       = "b.txt"
  content    = var.token
}
`

// TestResumeRecoversInputs: a run killed part way is resumed with the
// command rotplan prints, without the operator repeating the run's
// variables; only the sensitive one given with -var, which the journal
// never holds, must be given again.
func TestResumeRecoversInputs(t *testing.T) {
	const secret = "s3cret-token-value"
	dir := planDir(t, inputsPlan, map[string]string{"vars.hcl": "suffix = \"!\"\n"})
	runArgs := []string{"run", "-var-file", "vars.hcl", "-var", "greeting=hello", "-var", "token=" + secret, "plan.hcl"}
	// Record 2 is write.a's start: killed once it is durable, before the
	// file is renamed into place.
	res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=after:2"}, runArgs...)
	if res.exit != -1 {
		t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	// Running the same command again says exactly how to finish.
	res = runIn(t, dir, nil, runArgs...)
	const hint = "rotplan resume -var token=VALUE plan.hcl"
	if res.exit != 2 || !strings.Contains(res.stderr, "Finish it with:       "+hint+"\n") {
		t.Fatalf("run over the unfinished run: exit %d, want 2 and the hint %q\n%s%s", res.exit, hint, res.stdout, res.stderr)
	}
	if strings.Contains(res.stderr, secret) {
		t.Errorf("the hint shows the sensitive value:\n%s", res.stderr)
	}
	// Without the sensitive variable, resume says what it needs.
	res = runIn(t, dir, nil, "resume", "plan.hcl")
	if res.exit != 2 || !strings.Contains(res.stderr, "token") || !strings.Contains(res.stderr, hint) {
		t.Fatalf("resume without the sensitive variable: exit %d, want 2 naming token and the command\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.txt")); err == nil {
		t.Fatal("b.txt was written by a resume that refused")
	}
	res = runIn(t, dir, nil, "resume", "-var", "token="+secret, "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("resume: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "-var-file "+filepath.Join(dir, "vars.hcl")+" -var greeting=hello") {
		t.Errorf("resume should say which variables of the run it used:\n%s", res.stdout)
	}
	if got := mustRead(t, filepath.Join(dir, "a.txt")); got != "hello!\n" {
		t.Errorf("a.txt = %q, want the run's variables applied: %q", got, "hello!\n")
	}
	if got := mustRead(t, filepath.Join(dir, "b.txt")); got != secret {
		t.Errorf("b.txt does not hold the sensitive value given to resume")
	}
	journals, _ := filepath.Glob(filepath.Join(dir, ".rotplan", "runs", "*.journal"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v, want one", journals)
	}
	j := mustRead(t, journals[0])
	if strings.Contains(j, secret) {
		t.Error("the journal holds the sensitive variable's value")
	}
	if !strings.Contains(j, `"greeting=hello"`) || !strings.Contains(j, `"withheld":["token"]`) {
		t.Errorf("the journal should hold the run's variables, the sensitive one by name only:\n%s", j)
	}
}

// TestInterruptIsNotAFailure: Ctrl-C stops the run, says so (not
// "FAILED"), rolls nothing back and prints the command that finishes it.
func TestInterruptIsNotAFailure(t *testing.T) {
	dir := planDir(t, `
write "f" {
  path    = "target.txt"
  content = "new\n"
}

reload "slow" {
  depends_on = [write.f]
  command    = ["sleep", "30"]
}
`, map[string]string{"target.txt": "old\n"})
	cmd := exec.Command(rotplanBin, "run", "plan.hcl")
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(mustRead(t, filepath.Join(dir, "target.txt")), "new") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the reload has started
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	exit := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		exit = exitErr.ExitCode()
	}
	out := stdout.String()
	if exit != 1 || !strings.Contains(out, "Rotation INTERRUPTED") || strings.Contains(out, "FAILED") {
		t.Errorf("exit %d, want 1 and an interrupted run that is not called FAILED\n%s%s", exit, out, stderr.String())
	}
	if !strings.Contains(out, "reload.slow                  interrupted") || !strings.Contains(out, "Finish it with: rotplan resume plan.hcl") {
		t.Errorf("the interrupted step and the command that finishes the run should be shown:\n%s", out)
	}
	if strings.Contains(stderr.String(), "error:") {
		t.Errorf("an interrupt is reported as an error:\n%s", stderr.String())
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "new\n" {
		t.Errorf("target.txt = %q: an interrupted run is not rolled back", got)
	}
	res := runIn(t, dir, nil, "status", "plan.hcl")
	if res.exit != 1 || !strings.Contains(res.stdout, "interrupted") || !strings.Contains(res.stdout, "rotplan resume plan.hcl") {
		t.Errorf("status: exit %d, want 1, the status and the command that finishes the run\n%s%s", res.exit, res.stdout, res.stderr)
	}
}

// TestStatusExitCode: status exits as the last run did, so that a script
// can tell a rotation that rolled back, or could not, from one that
// succeeded.
func TestStatusExitCode(t *testing.T) {
	cases := []struct {
		name string
		plan string
		exit int
	}{
		{"succeeded", `
write "f" {
  path    = "target.txt"
  content = "new\n"
}
`, 0},
		{"rolled back", failingReloadPlan, exitRolledBack},
		{"rollback incomplete", `
write "f" {
  path    = "target.txt"
  content = "new\n"
  rollback {
    command = ["/bin/false"]
  }
}

reload "x" {
  depends_on = [write.f]
  command    = ["/bin/false"]
}
`, exitRollbackIncomplete},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := planDir(t, tc.plan, map[string]string{"target.txt": "old\n"})
			if res := runIn(t, dir, nil, "run", "plan.hcl"); res.exit != tc.exit {
				t.Fatalf("run: exit %d, want %d\n%s%s", res.exit, tc.exit, res.stdout, res.stderr)
			}
			if res := runIn(t, dir, nil, "status", "plan.hcl"); res.exit != tc.exit {
				t.Errorf("status: exit %d, want %d as the run\n%s%s", res.exit, tc.exit, res.stdout, res.stderr)
			}
			if res := runIn(t, dir, nil, "status", "-json", "plan.hcl"); res.exit != tc.exit {
				t.Errorf("status -json: exit %d, want %d as the run", res.exit, tc.exit)
			}
		})
	}
}

// TestNoJournalWhenRunCannotStart: a run that cannot begin (no Vault
// address) leaves no journal behind.
func TestNoJournalWhenRunCannotStart(t *testing.T) {
	dir := planDir(t, `
issue "a" {
  mount       = "pki"
  role        = "r"
  common_name = "a.example"
}
`, nil)
	res := runIn(t, dir, nil, "run", "plan.hcl")
	if res.exit == 0 || !strings.Contains(res.stderr, "VAULT_ADDR") {
		t.Fatalf("exit %d, want a failure naming VAULT_ADDR\n%s%s", res.exit, res.stdout, res.stderr)
	}
	journals, _ := filepath.Glob(filepath.Join(dir, ".rotplan", "runs", "*"))
	if len(journals) != 0 {
		t.Errorf("journals left behind by a run that never began: %v", journals)
	}
	if res := runIn(t, dir, nil, "status", "plan.hcl"); res.exit != 0 || !strings.Contains(res.stdout, "No run recorded") {
		t.Errorf("status: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
}

// TestCommandLineConventions: options after the plan file, and a "did you
// mean" for a mistyped variable name, without the whole usage.
func TestCommandLineConventions(t *testing.T) {
	dir := planDir(t, inputsPlan, nil)
	res := runIn(t, dir, nil, "validate", "plan.hcl", "-var", "greeting=hi", "-var", "token=x")
	if res.exit != 0 {
		t.Errorf("validate with options after the plan: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	res = runIn(t, dir, nil, "validate", "plan.hcl", "-var", "greting=hi", "-var", "greeting=hi", "-var", "token=x")
	if res.exit != 2 || !strings.Contains(res.stderr, `Did you mean "greeting"?`) {
		t.Errorf("a mistyped -var: exit %d, want 2 and a suggestion\n%s", res.exit, res.stderr)
	}
	if strings.Contains(res.stderr, "Usage:") || strings.Contains(res.stderr, ":0:0") {
		t.Errorf("a mistyped -var prints the usage or a position it does not have:\n%s", res.stderr)
	}
}

// TestPlanAndRunAgree: a write whose file already has the content, mode
// and owner is previewed as "no change", and the run then leaves the file
// alone (same inode) and says so; the other write is replaced, as the
// preview said.
func TestPlanAndRunAgree(t *testing.T) {
	dir := planDir(t, `
write "same" {
  path    = "same.txt"
  content = "same\n"
  mode    = "0644"
}

write "other" {
  path    = "other.txt"
  content = "new\n"
  mode    = "0644"
}
`, map[string]string{"same.txt": "same\n", "other.txt": "old\n"})
	res := runIn(t, dir, nil, "plan", "-json", "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("plan: exit %d\n%s", res.exit, res.stderr)
	}
	var doc struct {
		Steps []struct {
			Address, Action string
		}
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, s := range doc.Steps {
		actions[s.Address] = s.Action
	}
	if actions["write.same"] != "no-change" || actions["write.other"] != "replace" {
		t.Fatalf("preview actions %v, want write.same no-change and write.other replace", actions)
	}
	inode := func(name string) uint64 {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	sameBefore, otherBefore := inode("same.txt"), inode("other.txt")
	res = runIn(t, dir, nil, "run", "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if inode("same.txt") != sameBefore {
		t.Error("the run replaced same.txt, which the preview said it would not change")
	}
	if inode("other.txt") == otherBefore || mustRead(t, filepath.Join(dir, "other.txt")) != "new\n" {
		t.Error("the run did not replace other.txt, as the preview said it would")
	}
	if !regexp.MustCompile(`write\.same +ok .* no change: the file already has this content, mode and owner`).MatchString(res.stdout) {
		t.Errorf("the run should say write.same changed nothing:\n%s", res.stdout)
	}
	if regexp.MustCompile(`write\.other +ok .*no change`).MatchString(res.stdout) {
		t.Errorf("write.other changed its file:\n%s", res.stdout)
	}
}

// TestCheckWithMissingCA: a check whose CA file is missing is an error in
// the preview, at the argument, and fails the run at once (not after its
// 10-minute timeout), which then rolls the write back.
func TestCheckWithMissingCA(t *testing.T) {
	dir := planDir(t, `
write "f" {
  path    = "target.txt"
  content = "new\n"
}

verify "served" {
  depends_on = [write.f]
  timeout    = "10m"
  tls {
    address = "127.0.0.1:1"
    ca_file = "no-such-ca.pem"
  }
}
`, map[string]string{"target.txt": "old\n"})
	res := runIn(t, dir, nil, "plan", "plan.hcl")
	if res.exit != 1 || !strings.Contains(res.stderr, "plan.hcl:12:15: error:") || !strings.Contains(res.stderr, "no-such-ca.pem") {
		t.Errorf("plan: exit %d, want 1 and an error at ca_file (12:15) naming the file\n%s%s", res.exit, res.stdout, res.stderr)
	}
	res = runIn(t, dir, nil, "run", "plan.hcl")
	if res.exit != exitRolledBack || !strings.Contains(res.stderr, "not retried") {
		t.Errorf("run: exit %d, want %d and a check failed at once\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "old\n" {
		t.Errorf("target.txt = %q after the rollback", got)
	}
}

// TestValidateOffHost: validate passes a correct plan on a machine that is
// not its target (no such directory, user, pid file or program here), as
// terraform validate does; plan and the run's preflight report each of
// those, once per cause, before anything changes.
func TestValidateOffHost(t *testing.T) {
	dir := planDir(t, `
locals {
  apps = toset(["a", "b", "c", "d"])
}

write "key" {
  for_each = local.apps
  path     = "/nonexistent/rotplan-test/${each.key}.key"
  content  = "k"
  mode     = "0600"
}

write "crt" {
  for_each = local.apps
  path     = "${path_here}/${each.key}.crt"
  content  = "c"
  owner    = "rotplan-no-such-user"
}

reload "svc" {
  depends_on = [write.key, write.crt]
  pid_file   = "/nonexistent/rotplan-test/svc.pid"
}

reload "hook" {
  depends_on = [reload.svc]
  command    = ["rotplan-no-such-program", "reload"]
}
`, nil)
	src := strings.ReplaceAll(mustRead(t, filepath.Join(dir, "plan.hcl")), "${path_here}", dir)
	if err := os.WriteFile(filepath.Join(dir, "plan.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runIn(t, dir, nil, "validate", "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("validate: exit %d, want 0: nothing in the plan is wrong, only this host lacks what it names\n%s", res.exit, res.stderr)
	}
	causes := []string{
		"path: directory /nonexistent/rotplan-test does not exist",
		`owner: no such user "rotplan-no-such-user"`,
		"pid_file:",
		"command: rotplan-no-such-program",
	}
	for _, command := range []string{"plan", "run"} {
		res := runIn(t, dir, nil, command, "plan.hcl")
		if res.exit != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", command, res.exit, res.stdout, res.stderr)
		}
		for _, cause := range causes {
			if n := strings.Count(res.stderr, cause); n != 1 {
				t.Errorf("%s: %q is reported %d times, want once\n%s", command, cause, n, res.stderr)
			}
		}
		if !strings.Contains(res.stderr, "The same for ") {
			t.Errorf("%s: the steps behind a folded cause are not named\n%s", command, res.stderr)
		}
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "*.crt")); len(entries) != 0 {
		t.Errorf("the run wrote %v although its preflight failed", entries)
	}
}

// TestVersion: rotplan version names the commit it was built from, as the
// go command recorded it, and so does the journal of a run.
func TestVersion(t *testing.T) {
	head, err := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("no git checkout to compare with: %v", err)
	}
	commit := strings.TrimSpace(string(head))
	res := runIn(t, t.TempDir(), nil, "version")
	if res.exit != 0 || !strings.HasPrefix(res.stdout, "rotplan ") || !strings.Contains(res.stdout, "commit "+commit) {
		t.Errorf("version: exit %d, want the commit %s\n%s%s", res.exit, commit, res.stdout, res.stderr)
	}
	dir := planDir(t, "write \"f\" {\n  path    = \"f.txt\"\n  content = \"x\"\n}\n", nil)
	if res := runIn(t, dir, nil, "run", "plan.hcl"); res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if j := mustRead(t, filepath.Join(dir, ".rotplan", "runs", "000001.journal")); !strings.Contains(j, commit[:12]) {
		t.Errorf("the journal does not name the commit %s:\n%s", commit[:12], j)
	}
}

// TestVariablesFromEnvironment: ROTPLAN_VAR_NAME gives a variable its
// value, below -var-file and -var as TF_VAR_ is in Terraform; one that
// names no variable is a warning with the name it probably meant.
func TestVariablesFromEnvironment(t *testing.T) {
	cases := []struct {
		name  string
		env   []string
		args  []string
		files map[string]string
		want  string
	}{
		{"environment alone", []string{"ROTPLAN_VAR_greeting=env"}, nil, nil, "env\n"},
		{"a var file wins", []string{"ROTPLAN_VAR_greeting=env", "ROTPLAN_VAR_suffix=?"}, []string{"-var-file", "v.hcl"},
			map[string]string{"v.hcl": "greeting = \"file\"\n"}, "file?\n"},
		{"-var wins", []string{"ROTPLAN_VAR_greeting=env"}, []string{"-var", "greeting=flag"}, nil, "flag\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := planDir(t, inputsPlan, tc.files)
			env := append([]string{"ROTPLAN_VAR_token=secret-from-env"}, tc.env...)
			res := runIn(t, dir, env, append(append([]string{"run"}, tc.args...), "plan.hcl")...)
			if res.exit != 0 {
				t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
			if got := mustRead(t, filepath.Join(dir, "a.txt")); got != tc.want {
				t.Errorf("a.txt = %q, want %q", got, tc.want)
			}
			if j := mustRead(t, filepath.Join(dir, ".rotplan", "runs", "000001.journal")); strings.Contains(j, "secret-from-env") {
				t.Error("the journal holds the sensitive value from the environment")
			}
		})
	}
	t.Run("typo", func(t *testing.T) {
		dir := planDir(t, inputsPlan, nil)
		res := runIn(t, dir, []string{"ROTPLAN_VAR_greting=x"}, "validate", "-var", "greeting=a", "-var", "token=b", "plan.hcl")
		if res.exit != 0 || !strings.Contains(res.stderr, "warning") || !strings.Contains(res.stderr, "Did you mean ROTPLAN_VAR_greeting?") {
			t.Errorf("exit %d, want 0 with a warning suggesting ROTPLAN_VAR_greeting\n%s", res.exit, res.stderr)
		}
	})
}

// TestChdir: rotplan -chdir=DIR works as if started in DIR (the plan's
// relative paths, the default state directory), and the command it prints
// to finish an interrupted run says -chdir too.
func TestChdir(t *testing.T) {
	dir := planDir(t, failingReloadPlan, map[string]string{"target.txt": "old\n"})
	elsewhere := t.TempDir()
	res := runIn(t, elsewhere, nil, "-chdir="+dir, "run", "-rollback=false", "plan.hcl")
	if res.exit != 1 {
		t.Fatalf("run: exit %d, want 1\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "new\n" {
		t.Errorf("target.txt in the -chdir directory = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ".rotplan")); err != nil {
		t.Errorf("no state directory beside the plan: %v", err)
	}
	want := "rotplan -chdir=" + dir + " resume plan.hcl"
	if !strings.Contains(res.stdout, want) {
		t.Errorf("the hint should be %q:\n%s", want, res.stdout)
	}
	if res := runIn(t, elsewhere, nil, "-chdir", dir, "status", "plan.hcl"); res.exit != 1 || !strings.Contains(res.stdout, want) {
		t.Errorf("status: exit %d, want 1 and %q\n%s%s", res.exit, want, res.stdout, res.stderr)
	}
	if res := runIn(t, elsewhere, nil, "-chdir="+filepath.Join(dir, "nope"), "validate", "plan.hcl"); res.exit != 2 || !strings.Contains(res.stderr, "-chdir") {
		t.Errorf("-chdir to a missing directory: exit %d\n%s", res.exit, res.stderr)
	}
}

// TestRunDetailedExitcode: under -detailed-exitcode a run that changed
// something exits 2, one that changed nothing 0, and an error that
// changed nothing 1 (not 2, which would read as "rotated").
func TestRunDetailedExitcode(t *testing.T) {
	dir := planDir(t, `
variable "content" {
  type    = string
  default = "v1\n"
}

write "f" {
  path    = "f.txt"
  content = var.content
  mode    = "0644"
}

verify "pair" {
  depends_on = [write.f]
  key_pair {
    cert_file = "missing.crt"
    key_file  = "missing.key"
  }
}
`, nil)
	// The check fails: drop it for the runs that must succeed.
	src := mustRead(t, filepath.Join(dir, "plan.hcl"))
	ok := src[:strings.Index(src, "verify")]
	if err := os.WriteFile(filepath.Join(dir, "ok.hcl"), []byte(ok), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		want int
	}{
		{[]string{"run", "-detailed-exitcode", "ok.hcl"}, 2},                       // created f.txt
		{[]string{"run", "-detailed-exitcode", "ok.hcl"}, 0},                       // already in place
		{[]string{"run", "-detailed-exitcode", "-var", "content=v2", "ok.hcl"}, 2}, // replaced it
		{[]string{"run", "-detailed-exitcode", "-var", "nope=1", "ok.hcl"}, 1},     // invalid: not 2
		{[]string{"run", "-detailed-exitcode", "-no-such-flag", "ok.hcl"}, 1},
		{[]string{"run", "-detailed-exitcode", "-state-dir", "other", "plan.hcl"}, 3}, // the check fails: rolled back
		{[]string{"run", "ok.hcl", "-var", "nope=1"}, 2},                              // without it, invalid is 2
	}
	for i, st := range steps {
		res := runIn(t, dir, nil, st.args...)
		if res.exit != st.want {
			t.Errorf("step %d, rotplan %s: exit %d, want %d\n%s%s", i, strings.Join(st.args, " "), res.exit, st.want, res.stdout, res.stderr)
		}
	}
}

// TestStateOutsideEtc: a plan in /etc keeps its journal and backups out of
// /etc, in a directory of its own under the state home (ROTPLAN_STATE_HOME
// here, /var/lib/rotplan by default for root), and status and resume find
// it there without being told.
func TestStateOutsideEtc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the plan must live in /etc")
	}
	etc, err := os.MkdirTemp("/etc", "rotplan-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "plan.hcl"), []byte(failingReloadPlan), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "target.txt"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	env := []string{"ROTPLAN_STATE_HOME=" + home}
	res := runIn(t, etc, env, "run", "-rollback=false", "plan.hcl")
	if res.exit != 1 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if _, err := os.Lstat(filepath.Join(etc, ".rotplan")); err == nil {
		t.Error("the state directory was made in /etc")
	}
	journals, _ := filepath.Glob(filepath.Join(home, "etc-rotplan-e2e-*", "runs", "*.journal"))
	if len(journals) != 1 {
		t.Errorf("journals under the state home: %v, want one", journals)
	}
	if res := runIn(t, etc, env, "status", "plan.hcl"); res.exit != 1 || !strings.Contains(res.stdout, "rotplan resume plan.hcl") {
		t.Errorf("status: exit %d, want 1 and the plain resume command\n%s%s", res.exit, res.stdout, res.stderr)
	}
}

// TestKeepRuns: the state directory keeps the journals of the last
// -keep-runs runs; an old run that did not finish and left backups is
// kept, since they may be all that is left of what it replaced.
func TestKeepRuns(t *testing.T) {
	dir := planDir(t, `
write "f" {
  path    = "target.txt"
  content = "new\n"
}
`, map[string]string{"target.txt": "old\n"})
	// Run 1 is killed once its write's start (with the backup) is durable.
	if res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=after:2"}, "run", "plan.hcl"); res.exit != -1 {
		t.Fatalf("run 1: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for i := 2; i <= 6; i++ {
		if res := runIn(t, dir, nil, "run", "-fresh", "-keep-runs", "2", "plan.hcl"); res.exit != 0 {
			t.Fatalf("run %d: exit %d\n%s%s", i, res.exit, res.stdout, res.stderr)
		}
	}
	var names []string
	journals, _ := filepath.Glob(filepath.Join(dir, ".rotplan", "runs", "*.journal"))
	for _, j := range journals {
		names = append(names, filepath.Base(j))
	}
	want := []string{"000001.journal", "000005.journal", "000006.journal"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("journals %v, want %v: the last 2, and run 1 with its backups", names, want)
	}
	if _, err := os.Stat(filepath.Join(dir, ".rotplan", "backups", "000001")); err != nil {
		t.Errorf("run 1's backups are gone: %v", err)
	}
}

// savedPlanSrc writes a file from a variable and a sensitive one.
const savedPlanSrc = `
variable "content" {
  type    = string
  default = "new\n"
}

variable "token" {
  type      = string
  sensitive = true
}

write "f" {
  path    = "t.txt"
  content = var.content
  mode    = "0644"
}

write "secret" {
  path    = "token.txt"
  content = var.token
}
`

// TestSavedPlan: plan -out keeps what was reviewed, without the secret;
// run FILE runs exactly that, and refuses, naming the difference and
// changing nothing, when the system, the plan or the variables moved.
func TestSavedPlan(t *testing.T) {
	const secret = "saved-plan-secret-token"
	newDir := func(t *testing.T) string {
		t.Helper()
		dir := planDir(t, savedPlanSrc, map[string]string{"t.txt": "old\n"})
		res := runIn(t, dir, nil, "plan", "-out", "p.plan", "-var", "content=reviewed\n", "-var", "token="+secret, "plan.hcl")
		if res.exit != 0 || !strings.Contains(res.stdout, "rotplan run p.plan") {
			t.Fatalf("plan -out: exit %d, want 0 and the run command\n%s%s", res.exit, res.stdout, res.stderr)
		}
		fi, err := os.Stat(filepath.Join(dir, "p.plan"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the saved plan: %v, mode %v; want 0600", err, fi.Mode())
		}
		if strings.Contains(mustRead(t, filepath.Join(dir, "p.plan")), secret) {
			t.Fatal("the saved plan holds the sensitive value")
		}
		return dir
	}
	refused := func(t *testing.T, dir string, env []string, want ...string) {
		t.Helper()
		res := runIn(t, dir, env, "run", "p.plan")
		if res.exit != 2 {
			t.Errorf("run p.plan: exit %d, want 2 (refused)\n%s%s", res.exit, res.stdout, res.stderr)
		}
		for _, w := range want {
			if !strings.Contains(res.stderr, w) {
				t.Errorf("the refusal should say %q:\n%s", w, res.stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "token.txt")); err == nil {
			t.Error("a refused run wrote token.txt")
		}
	}
	withToken := []string{"ROTPLAN_VAR_token=" + secret}

	t.Run("runs what was reviewed", func(t *testing.T) {
		dir := newDir(t)
		refused(t, dir, nil, "token", "ROTPLAN_VAR_") // the secret was not saved
		res := runIn(t, dir, withToken, "run", "p.plan")
		if res.exit != 0 {
			t.Fatalf("run p.plan: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
		}
		if got := mustRead(t, filepath.Join(dir, "t.txt")); got != "reviewed\n" {
			t.Errorf("t.txt = %q, want the reviewed variable's value", got)
		}
		if got := mustRead(t, filepath.Join(dir, "token.txt")); got != secret {
			t.Error("token.txt does not hold the sensitive value given to run")
		}
	})
	t.Run("the file moved", func(t *testing.T) {
		dir := newDir(t)
		if err := os.WriteFile(filepath.Join(dir, "t.txt"), []byte("someone else's\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, withToken, "write.f: what it acts on changed")
		if got := mustRead(t, filepath.Join(dir, "t.txt")); got != "someone else's\n" {
			t.Errorf("t.txt = %q: a refused run changed it", got)
		}
	})
	t.Run("the plan was edited", func(t *testing.T) {
		dir := newDir(t)
		src := strings.Replace(savedPlanSrc, `mode    = "0644"`, `mode    = "0640"`, 1)
		if err := os.WriteFile(filepath.Join(dir, "plan.hcl"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, withToken, "the plan changed since the plan was saved", "write.f (changed)")
	})
	t.Run("another secret", func(t *testing.T) {
		dir := newDir(t)
		refused(t, dir, []string{"ROTPLAN_VAR_token=another"}, "the variables (token)")
	})
	t.Run("variables are the plan's", func(t *testing.T) {
		dir := newDir(t)
		res := runIn(t, dir, withToken, "run", "-var", "content=other", "p.plan")
		if res.exit != 2 || !strings.Contains(res.stderr, "-var content is refused") {
			t.Errorf("run -var content=other p.plan: exit %d, want 2 and a refusal\n%s", res.exit, res.stderr)
		}
	})
}
