package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testhosts"
)

// failPlan writes a key on every web host, then checks it there with a
// gate: a command that, on the host var.hold names, says it is held
// (a file "held" in the host's directory) and waits until the test
// releases it (a file "release" holding the exit status to end with).
// The hosts go in batches of two, so a test can act on the fleet while
// the run is in flight: cut a host of the second batch while the first
// is held, or cut a host of the first while the second is.
const failPlan = webHosts + keyOnHosts + `
variable "hold" { default = "" }

verify "gate" {
  for_each = var.web
  on       = host.web[each.key]
  timeout  = "2m"
  command {
    argv = ["sh", "-c", <<-EOT
      if [ "$1" = "$2" ]; then
        : > "$3/held"
        while [ ! -e "$3/release" ]; do sleep 0.05; done
        exit "$(cat "$3/release")"
      fi
      test -f "$4"
      EOT
    , "gate", each.key, var.hold, each.value.dir, write.key[each.key].path]
  }
}

rollout "web" {
  hosts      = host.web
  batch_size = 2
}
`

// failRun is the failure tests' fleet plan in a directory of its own, run by the rotplan
// binary in the controller of a bed of four hosts (h1 and h2 the first
// batch, h3 and h4 the second), each holding an old key the run replaces.
type failRun struct {
	f      *testhosts.Fleet
	ctx    context.Context
	dir    string
	secret string // the key's: never in the output or the state
}

// oldKey is what every host's file holds before the run, checked from
// outside as hostFile prints it.
func oldKey(h *testhosts.Host) string { return "640 1001:1002\nold-" + h.Name + "\n" }

// newKey is what the run puts there.
func (r *failRun) newKey(h *testhosts.Host) string {
	return "600 4242:4343\n" + r.secret + "-" + h.Name + "\n"
}

func newFailRun(t *testing.T, secret string) *failRun {
	t.Helper()
	return newFailRunOf(t, failPlan, secret)
}

// newFailRunOf is newFailRun with another plan, which declares the same
// variables.
func newFailRunOf(t *testing.T, plan, secret string) *failRun {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the write gives files to other users, which needs root")
	}
	f := testhosts.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	for _, h := range f.Hosts {
		p := filepath.Join(h.Home, "app.key")
		if err := os.WriteFile(p, []byte("old-"+h.Name+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 1001, 1002); err != nil {
			t.Fatal(err)
		}
	}
	return &failRun{f: f, ctx: ctx, dir: planDir(t, plan, nil), secret: secret}
}

// vars writes the variables: the bed's hosts, the key's secret and the
// host whose gate holds ("" for none).
func (r *failRun) vars(t *testing.T, hold string) {
	t.Helper()
	var web []string
	for _, h := range r.f.Hosts {
		web = append(web, fmt.Sprintf("%s = { address = %q, port = %d, dir = %q }", h.Name, h.Addr, h.Port, h.Home))
	}
	// A host that stops answering is given up after 4 seconds (3
	// probes missed, one a second); one that does not answer a connect,
	// after 3.
	vars := fmt.Sprintf("web = { %s }\nknown_hosts = %q\nidentity = %q\nkey = %q\nhold = %q\n"+
		"connect_timeout = \"3s\"\nkeepalive_interval = \"1s\"\nkeepalive_count_max = 3\n",
		strings.Join(web, ", "), r.f.KnownHosts, r.f.ClientKey, r.secret, hold)
	if err := os.WriteFile(filepath.Join(r.dir, "vars.hcl"), []byte(vars), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start starts bin with command in the controller, from the plan's
// directory; wait waits for it.
func (r *failRun) start(t *testing.T, bin string, env []string, command string) (wait func() result) {
	t.Helper()
	cmd := r.f.Controller.Command(r.ctx, bin, command, "-var-file", "vars.hcl", "plan.hcl")
	cmd.Dir = r.dir
	cmd.Env = append(cleanEnv(), env...)
	return startCmd(t, cmd, 3*time.Minute)
}

// rotplan runs the rotplan binary with command and waits for it.
func (r *failRun) rotplan(t *testing.T, command string) result {
	t.Helper()
	return r.start(t, rotplanBin, nil, command)()
}

// cutWhileHeld runs rotplan with held's gate holding, cuts cut off once
// it holds, releases the gate with status and waits for the run; after
// is how long the run took to end after the cut.
func (r *failRun) cutWhileHeld(t *testing.T, held, cut *testhosts.Host, status int) (res result, after time.Duration) {
	t.Helper()
	r.vars(t, held.Name)
	wait := r.start(t, rotplanBin, nil, "run")
	waitFor(t, func() bool {
		_, err := os.Stat(filepath.Join(held.Home, "held"))
		return err == nil
	})
	if err := cut.Cut(r.ctx); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	// The gate reads its status from "release", which appears whole.
	tmp := filepath.Join(held.Home, ".release")
	if err := os.WriteFile(tmp, []byte(fmt.Sprint(status)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(held.Home, "release")); err != nil {
		t.Fatal(err)
	}
	res = wait()
	after = time.Since(begin)
	t.Logf("the run ended %s after %s was cut off; its output:\n%s%s", after.Round(time.Millisecond), cut.Name, res.stdout, res.stderr)
	noSecretIn(t, res, r.dir, r.secret)
	return res, after
}

// want checks every host's key from outside, over ssh: want gives what
// hostFile must print for h.
func (r *failRun) want(t *testing.T, when string, want func(h *testhosts.Host) string) {
	t.Helper()
	for _, h := range r.f.Hosts {
		if got, w := hostFile(r.ctx, t, r.f, h, filepath.Join(h.Home, "app.key")), want(h); got != w {
			t.Errorf("%s: %s the key is %q, want %q", h.Name, when, got, w)
		}
		// No temporary file of a write is left beside it.
		if tmps, _ := filepath.Glob(filepath.Join(h.Home, ".app.key.rotplan-tmp-*")); len(tmps) > 0 {
			t.Errorf("%s: %s temporary files are left: %v", h.Name, when, tmps)
		}
	}
}

// TestHostCutOffDuringRun cuts a host of the second batch off (its link
// down: its connection, made by the run's preflight, stalls) while the
// first batch's gate holds. The run must fail within bounds, name the
// host, roll the others back and exit 3; the cut host is untouched.
func TestHostCutOffDuringRun(t *testing.T) {
	r := newFailRun(t, "cut-secret")
	h3 := r.f.Host("h3")
	res, _ := r.cutWhileHeld(t, r.f.Host("h1"), h3, 0)
	if res.exit != 3 {
		t.Fatalf("run with h3 cut off: exit %d, want 3 (rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if out := res.stdout + res.stderr; !strings.Contains(out, `host.web["h3"]`) || !strings.Contains(out, h3.HostPort()) {
		t.Errorf("the report does not name the host cut off (host.web[\"h3\"], %s):\n%s%s", h3.HostPort(), res.stdout, res.stderr)
	}
	if err := h3.Restore(r.ctx); err != nil {
		t.Fatal(err)
	}
	r.want(t, "after the rollback,", oldKey)
}

// TestHostUnreachableDuringRollback cuts a host of the first batch off
// while the second batch's gate holds, then fails that gate: the rollback
// cannot reach the host, and the run exits 4 naming what is left to undo.
// Once the host is back, resume finishes the rollback: every host has its
// old key.
func TestHostUnreachableDuringRollback(t *testing.T) {
	r := newFailRun(t, "unreachable-secret")
	h1 := r.f.Host("h1")
	res, _ := r.cutWhileHeld(t, r.f.Host("h4"), h1, 1)
	if res.exit != 4 {
		t.Fatalf("run whose rollback cannot reach h1: exit %d, want 4 (rollback incomplete)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "Still to undo") || !strings.Contains(res.stdout, `write.key["h1"]`) || !strings.Contains(res.stdout, h1.HostPort()) {
		t.Errorf("the report does not say what is left to undo on h1 (%s):\n%s%s", h1.HostPort(), res.stdout, res.stderr)
	}

	// Resumed while the host is still cut off: the connect times out,
	// and the rollback is still incomplete.
	begin := time.Now()
	res = r.rotplan(t, "resume")
	t.Logf("the resume with h1 still cut off ended in %s", time.Since(begin).Round(time.Millisecond))
	t.Logf("the resume's output:\n%s%s", res.stdout, res.stderr)
	if res.exit != 4 || !strings.Contains(res.stdout, `write.key["h1"]`) || !strings.Contains(res.stdout, h1.HostPort()) {
		t.Errorf("resume with h1 still cut off: exit %d, want 4 naming h1 (%s)\n%s%s", res.exit, h1.HostPort(), res.stdout, res.stderr)
	}

	if err := h1.Restore(r.ctx); err != nil {
		t.Fatal(err)
	}
	res = r.rotplan(t, "resume")
	if res.exit != 3 {
		t.Errorf("resume of the rollback: exit %d, want 3 (rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	noSecretIn(t, res, r.dir, r.secret)
	r.want(t, "after the resumed rollback,", oldKey)
}

// TestFleetKilledDuringBatch kills rotplan (SIGKILL, by the failpoints
// build) once the second batch is under way, then resumes: every host
// ends with the new key, checked from outside.
func TestFleetKilledDuringBatch(t *testing.T) {
	r := newFailRun(t, "killed-secret")
	r.vars(t, "")
	// Killed once the start of h4's write is durable: the second batch
	// is under way (h3's write may be half done, its temporary file on
	// the host).
	res := r.start(t, crashBin, []string{`ROTPLAN_FAILPOINT=after-start:write.key["h4"]`}, "run")()
	if res.exit != -1 {
		t.Fatalf("rotplan exited %d instead of being killed\n%s%s", res.exit, res.stdout, res.stderr)
	}
	// The kill came with the second batch under way: every step of the
	// first had succeeded, a step of the second had started, and not
	// every one of them had succeeded.
	done := map[string]bool{}
	started := 0
	for _, rec := range readJournal(t, filepath.Join(r.dir, ".rotplan")).Records {
		switch {
		case rec.Type == journal.StepSucceeded:
			done[rec.Step] = true
		case rec.Type == journal.StepStarted && (strings.Contains(rec.Step, `"h3"`) || strings.Contains(rec.Step, `"h4"`)):
			started++
		}
	}
	first := done[`write.key["h1"]`] && done[`write.key["h2"]`] && done[`verify.gate["h1"]`] && done[`verify.gate["h2"]`]
	if !first || started == 0 || len(done) == 8 {
		t.Fatalf("the kill did not come with the second batch under way: succeeded %v, %d of its steps started", done, started)
	}
	res = r.rotplan(t, "resume")
	if res.exit != 0 {
		t.Fatalf("resume: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	noSecretIn(t, res, r.dir, r.secret)
	r.want(t, "after the resume,", r.newKey)
}
