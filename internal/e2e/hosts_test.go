package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
)

// webHosts declares the bed's hosts as a plan sees them: the variables the
// tests give (the hosts by name, with address, port and a directory of
// their own; known_hosts; the controller's key; fail; the timeouts) and
// host "web".
const webHosts = `
variable "web" {
  type = map(object({ address = string, port = number, dir = string }))
}
variable "known_hosts" {}
variable "identity" {}
variable "fail" { default = false }
# How long a host that does not answer is waited for; null: the defaults.
variable "connect_timeout" { default = null }
variable "keepalive_interval" { default = null }
variable "keepalive_count_max" { default = null }

host "web" {
  for_each            = var.web
  address             = each.value.address
  port                = each.value.port
  known_hosts         = var.known_hosts
  identity_file       = var.identity
  connect_timeout     = var.connect_timeout
  keepalive_interval  = var.keepalive_interval
  keepalive_count_max = var.keepalive_count_max
}
`

// keyOnHosts writes a key, made of the sensitive variable key and the
// host's name, on every web host over SSH.
const keyOnHosts = `
variable "key" { sensitive = true }

write "key" {
  for_each = var.web
  on       = host.web[each.key]
  path     = "${each.value.dir}/app.key"
  content  = "${var.key}-${each.key}\n"
  mode     = "0600"
  owner    = "4242"
  group    = "4343"
}
`

// hostsPlan writes a key on every web host over SSH, then checks (here,
// where rotplan runs) that the run may stand: with fail set, the check
// fails and every host's write is rolled back.
const hostsPlan = webHosts + keyOnHosts + `
verify "after" {
  depends_on = [write.key]
  command {
    argv = [var.fail ? "/bin/false" : "/bin/true"]
  }
}
`

// TestWriteOnHosts runs the rotplan binary in the controller of a bed of
// real sshd hosts, as an operator would there: a write per host, over
// SSH, checked from outside through ssh; a failing later step rolls every
// host's file back (removed where the run created it, restored where it
// replaced one); the key never shows in the output or the state.
func TestWriteOnHosts(t *testing.T) {
	f := testhosts.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var web []string
	for _, h := range f.Hosts {
		// The hosts share the machine's file system: each writes into a
		// directory of its own.
		web = append(web, fmt.Sprintf("%s = { address = %q, port = %d, dir = %q }", h.Name, h.Addr, h.Port, h.Home))
	}
	dir := planDir(t, hostsPlan, nil)
	knownHosts := f.KnownHosts
	writeVars := func(key string, fail bool) {
		t.Helper()
		vars := fmt.Sprintf("web = { %s }\nknown_hosts = %q\nidentity = %q\nkey = %q\nfail = %t\n",
			strings.Join(web, ", "), knownHosts, f.ClientKey, key, fail)
		if err := os.WriteFile(filepath.Join(dir, "vars.hcl"), []byte(vars), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rotplan := func(command string) result {
		t.Helper()
		cmd := f.Controller.Command(ctx, rotplanBin, command, "-var-file", "vars.hcl", "plan.hcl")
		cmd.Dir = dir
		cmd.Env = cleanEnv()
		return runCmd(t, cmd, 3*time.Minute)
	}
	run := func() result { t.Helper(); return rotplan("run") }
	stat := func(h *testhosts.Host) string {
		t.Helper()
		return hostFile(ctx, t, f, h, filepath.Join(h.Home, "app.key"))
	}
	// wantKeys checks every host's file: the key of secret, or none
	// when secret is "".
	wantKeys := func(when, secret string) {
		t.Helper()
		for _, h := range f.Hosts {
			want := ""
			if secret != "" {
				want = "600 4242:4343\n" + secret + "-" + h.Name + "\n"
			}
			if got := stat(h); got != want {
				t.Errorf("%s: %s the file is %q, want %q", h.Name, when, got, want)
			}
		}
	}
	noSecret := func(res result, secret string) {
		t.Helper()
		noSecretIn(t, res, dir, secret)
	}

	// 1. The check fails: the files the run created are removed again.
	writeVars("first-secret", true)
	res := run()
	if res.exit != 3 {
		t.Fatalf("failing run: exit %d, want 3 (rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	noSecret(res, "first-secret")
	wantKeys("after a rollback of the run that created it,", "")

	// 2. It passes: every host has its key, 0600, owned as asked.
	writeVars("first-secret", false)
	res = run()
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	noSecret(res, "first-secret")
	wantKeys("after the run,", "first-secret")

	// The preview reads every host's file: nothing to change.
	res = rotplan("plan")
	if res.exit != 0 || strings.Count(res.stdout, "the file already has this content, mode and owner") != len(f.Hosts) {
		t.Errorf("plan after the run: exit %d, want every write unchanged\n%s%s", res.exit, res.stdout, res.stderr)
	}

	// 3. A new key, and the check fails: every host has its old file back.
	writeVars("second-secret", true)
	res = run()
	if res.exit != 3 {
		t.Fatalf("failing run: exit %d, want 3 (rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	noSecret(res, "second-secret")
	wantKeys("after the rollback,", "first-secret")

	// 4. Host keys that do not match: refused before anything changes.
	var wrong strings.Builder
	for i, h := range f.Hosts {
		other := f.Hosts[(i+1)%len(f.Hosts)]
		wrong.WriteString(testhosts.KnownHostsLine(h.Addr.String(), h.Port, other.HostKey))
	}
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(wrong.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	writeVars("third-secret", false)
	res = run()
	if res.exit != 1 || !strings.Contains(res.stdout, "nothing was changed") ||
		strings.Count(res.stderr, "refusing to connect") != len(f.Hosts) {
		t.Errorf("run with wrong host keys: exit %d, want 1, nothing changed, and every host refused\n%s%s", res.exit, res.stdout, res.stderr)
	}
	wantKeys("after a refused run,", "first-secret")

	// The hosts share this machine's file system, so the files alone do
	// not show that the writes went over SSH: the copies the rollback
	// restored from are on the hosts (a local write keeps its copies in
	// the state directory), and every host's sshd logged rotplan in.
	for _, h := range f.Hosts {
		backup := filepath.Join(h.Home, ".rotplan-backups", "app.key")
		if b, err := os.ReadFile(backup); err != nil || string(b) != "first-secret-"+h.Name+"\n" {
			t.Errorf("%s: the copy on the host %s: %q, %v", h.Name, backup, b, err)
		}
		if log, _ := os.ReadFile(h.Log); !strings.Contains(string(log), "Accepted publickey for root") {
			t.Errorf("%s: sshd logged no login:\n%s", h.Name, log)
		}
	}
}

// TestWriteOnHostResume kills rotplan once a write on a host is done and
// before its success is journaled: resume asks the host whether the file
// is in place (its SHA-256 there), and does not write it again.
func TestWriteOnHostResume(t *testing.T) {
	f := testhosts.Start(t, 1)
	h := f.Hosts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := planDir(t, hostsPlan, nil)
	vars := fmt.Sprintf("web = { %s = { address = %q, port = %d, dir = %q } }\nknown_hosts = %q\nidentity = %q\nkey = \"resumed-secret\"\n",
		h.Name, h.Addr, h.Port, h.Home, f.KnownHosts, f.ClientKey)
	if err := os.WriteFile(filepath.Join(dir, "vars.hcl"), []byte(vars), 0o600); err != nil {
		t.Fatal(err)
	}
	rotplan := func(bin string, env []string, args ...string) result {
		t.Helper()
		cmd := f.Controller.Command(ctx, bin, args...)
		cmd.Dir = dir
		cmd.Env = append(cleanEnv(), env...)
		return runCmd(t, cmd, 3*time.Minute)
	}
	// Records: run_started, the write's step_started, then its success.
	res := rotplan(crashBin, []string{"ROTPLAN_FAILPOINT=before:3"}, "run", "-var-file", "vars.hcl", "plan.hcl")
	if res.exit != -1 {
		t.Fatalf("rotplan exited %d instead of being killed\n%s%s", res.exit, res.stdout, res.stderr)
	}
	p := filepath.Join(h.Home, "app.key")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("the write was not done before the kill: %v", err)
	}
	res = rotplan(rotplanBin, nil, "resume", "-var-file", "vars.hcl", "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("resume: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "its effect was found in place") {
		t.Errorf("resume does not say the write was found in place:\n%s", res.stdout)
	}
	after, err := os.Stat(p)
	if err != nil || !os.SameFile(fi, after) {
		t.Errorf("resume wrote the file again (%v): Done should have found it in place on the host", err)
	}
}

// hostFile asks the host, over ssh from the controller, for the file's
// mode, owner and content: "600 4242:4343\nCONTENT"; "" when there is
// none.
func hostFile(ctx context.Context, t *testing.T, f *testhosts.Fleet, h *testhosts.Host, p string) string {
	t.Helper()
	out, err := f.Controller.Command(ctx, "ssh", "-F", f.SSHConfig, h.Name,
		fmt.Sprintf("if test -e %s; then stat -c '%%a %%u:%%g' %s; cat %s; fi", p, p, p)).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh %s: %v\n%s", h.Name, err, out)
	}
	return string(out)
}

// noSecretIn checks that secret shows neither in rotplan's output nor in
// a file under dir (the plan's directory, with the state directory) other
// than vars.hcl, which gives it.
func noSecretIn(t *testing.T, res result, dir, secret string) {
	t.Helper()
	if strings.Contains(res.stdout+res.stderr, secret) {
		t.Errorf("the key shows in rotplan's output:\n%s%s", res.stdout, res.stderr)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || filepath.Base(p) == "vars.hcl" {
			return nil
		}
		if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
			t.Errorf("the key is in %s", p)
		}
		return nil
	})
}
