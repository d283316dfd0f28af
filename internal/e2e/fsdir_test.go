package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// keyPlan writes a secret into tls/, and a file beside the plan first.
const keyPlan = `
write "first" {
  path    = "first.txt"
  content = "first\n"
}

write "key" {
  depends_on = [write.first]
  path       = "tls/server.key"
  content    = sensitive("not-a-real-key-but-secret\n")
}
`

// TestLeftoverTempRemoved: a run killed while a write's temporary file
// holds the key leaves it owner-only, and both the resume and a fresh run
// over the same plan remove it.
func TestLeftoverTempRemoved(t *testing.T) {
	tests := []struct {
		name string
		next []string
	}{
		{"resume", []string{"resume", "plan.hcl"}},
		{"the next run", []string{"run", "-fresh", "plan.hcl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := planDir(t, keyPlan, nil)
			tls := filepath.Join(dir, "tls")
			if err := os.Mkdir(tls, 0o755); err != nil {
				t.Fatal(err)
			}
			// The second write to fill its temporary file is the key's.
			res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=temp:2"}, "run", "plan.hcl")
			if res.exit != -1 {
				t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
			temp := filepath.Join(tls, ".server.key.rotplan-tmp")
			fi, err := os.Lstat(temp)
			if err != nil {
				t.Fatalf("the killed run left no temporary file: %v (%v)", err, strings.Join(dirNames(t, tls), " "))
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm()&0o077 != 0 || int(st.Uid) != os.Geteuid() {
				t.Errorf("the temporary file holding the key has mode %v and owner %d: readable by others", fi.Mode().Perm(), st.Uid)
			}
			res = runIn(t, dir, nil, tt.next...)
			if res.exit != 0 {
				t.Fatalf("%s: exit %d\n%s%s", tt.next[0], res.exit, res.stdout, res.stderr)
			}
			if _, err := os.Lstat(temp); err == nil {
				t.Errorf("%s left the temporary file %s", tt.next[0], temp)
			}
			if got := strings.Join(dirNames(t, tls), " "); got != "server.key" {
				t.Errorf("tls holds %s, want server.key alone", got)
			}
			if got := mustRead(t, filepath.Join(tls, "server.key")); got != "not-a-real-key-but-secret\n" {
				t.Errorf("server.key holds %q", got)
			}
		})
	}
}

// TestSymlinkedDirectoryRefused: with tls a symbolic link to another
// directory, plan reports the refusal as an error at the write's path, and
// run stops in its preflight, before the first write changes anything.
func TestSymlinkedDirectoryRefused(t *testing.T) {
	dir := planDir(t, keyPlan, nil)
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "tls")); err != nil {
		t.Fatal(err)
	}
	res := runIn(t, dir, nil, "plan", "plan.hcl")
	if res.exit != 1 || !strings.Contains(res.stderr, "tls is a symbolic link") || !strings.Contains(res.stderr, "plan.hcl:9:") {
		t.Errorf("plan: exit %d, want 1 and the refusal at the write's path\n%s%s", res.exit, res.stdout, res.stderr)
	}
	res = runIn(t, dir, nil, "run", "plan.hcl")
	if res.exit != 1 || !strings.Contains(res.stderr, "tls is a symbolic link") || !strings.Contains(res.stdout+res.stderr, "before any step ran") {
		t.Errorf("run: exit %d, want 1, the refusal, and nothing run\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for _, p := range []string{filepath.Join(dir, "first.txt"), filepath.Join(elsewhere, "server.key")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if strings.Contains(res.stdout+res.stderr, "not-a-real-key") {
		t.Error("the output holds the secret")
	}
}

// TestResumeRollbackRefusesReplacedDirectory: a run is killed after its
// write, and the directory it wrote in is moved away and replaced by a
// link to root's directory. The resume's rollback must not restore into
// root's directory: it refuses, keeps the backup and says what to do by
// hand.
func TestResumeRollbackRefusesReplacedDirectory(t *testing.T) {
	const plan = `
write "f" {
  path    = "tls/target.txt"
  content = "new\n"
}

reload "x" {
  depends_on = [write.f]
  command    = ["/bin/false"]
}
`
	dir := planDir(t, plan, nil)
	tls, roots := filepath.Join(dir, "tls"), filepath.Join(dir, "roots")
	for _, d := range []string{tls, roots} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "target.txt"), []byte(filepath.Base(d)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Record 5 is reload.x's failure, durable, and with it write.f's
	// success: the kill comes before the rollback starts.
	res := runInWith(t, dir, crashBin, []string{"ROTPLAN_FAILPOINT=after:5"}, "run", "plan.hcl")
	if res.exit != -1 {
		t.Fatalf("run: not killed: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if err := os.Rename(tls, tls+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(roots, tls); err != nil {
		t.Fatal(err)
	}
	res = runIn(t, dir, nil, "resume", "plan.hcl")
	if got := mustRead(t, filepath.Join(roots, "target.txt")); got != "roots\n" {
		t.Errorf("root's file was changed: %q", got)
	}
	if res.exit != exitRollbackIncomplete {
		t.Fatalf("resume: exit %d, want %d (rollback incomplete)\n%s%s", res.exit, exitRollbackIncomplete, res.stdout, res.stderr)
	}
	for _, want := range []string{"tls is a symbolic link", "install -m 0644"} {
		if !strings.Contains(res.stdout+res.stderr, want) {
			t.Errorf("resume does not say %q:\n%s%s", want, res.stdout, res.stderr)
		}
	}
	if got := mustRead(t, filepath.Join(tls+".moved", "target.txt")); got != "new\n" {
		t.Errorf("the directory the write changed holds %q: the rollback went ahead in it from a path that leads elsewhere", got)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, ".rotplan", "backups", "*", "*", "target.txt"))
	if len(backups) != 1 || mustRead(t, backups[0]) != "tls\n" {
		t.Errorf("backups %v, want the copy of the replaced file kept", backups)
	}
}

// TestSeedLayoutNeedsTrustOwner: the seed keeps the listener's TLS
// directory in vaultprod's home, which vaultprod could rename. Without
// trust_owner, plan names the directory and says what to do, and run stops
// before any step, the admin steps included, changes anything.
func TestSeedLayoutNeedsTrustOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the TLS directory belongs to vaultprod only when the tests run as root")
	}
	r := newRotation(t)
	v := r.v
	src := mustRead(t, filepath.Join(repoRoot(t), "examples", "prod.hcl"))
	var kept []string
	for _, line := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "trust_owner") {
			kept = append(kept, line)
		}
	}
	plan := filepath.Join(t.TempDir(), "prod.hcl")
	if err := os.WriteFile(plan, []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	before := digestTree(t, v.AdminDir) + digestTree(t, v.ServerDir)
	wants := []string{
		filepath.Join(v.Dir, "home", "vaultprod") + " belongs to uid",
		"(vaultprod)",
		`trust_owner = "vaultprod"`,
	}
	res := runRotplan(t, v.Environ(), r.planArgs(plan)...)
	if res.exit != 1 {
		t.Errorf("plan: exit %d, want 1\n%s", res.exit, res.stderr)
	}
	for _, want := range wants {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("plan does not say %q:\n%s", want, res.stderr)
		}
	}
	res = runRotplan(t, v.Environ(), r.argsFor(plan, "run", t.TempDir())...)
	if res.exit != 1 || !strings.Contains(res.stdout+res.stderr, "before any step ran") || !strings.Contains(res.stderr, wants[0]) {
		t.Errorf("run: exit %d, want 1 and the refusal before any step ran\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if after := digestTree(t, v.AdminDir) + digestTree(t, v.ServerDir); after != before {
		t.Errorf("the refused run changed files:\nbefore %s\nafter  %s", before, after)
	}
}
