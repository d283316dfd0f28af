package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
)

// rotation is one Vault and the arguments that rotate it with
// examples/prod.hcl, each run in a state directory of its own.
type rotation struct {
	v       *testvault.Vault
	varFile string
}

func newRotation(t *testing.T) *rotation {
	t.Helper()
	v := testvault.StartT(t)
	varFile := filepath.Join(v.Dir, "prod.vars.hcl")
	if err := v.WriteVarFile(varFile); err != nil {
		t.Fatal(err)
	}
	return &rotation{v: v, varFile: varFile}
}

func (r *rotation) args(command, state string, extra ...string) []string {
	return r.argsFor("examples/prod.hcl", command, state, extra...)
}

func (r *rotation) argsFor(plan, command, state string, extra ...string) []string {
	args := append([]string{command, "-state-dir", state, "-var-file", r.varFile}, extra...)
	return append(args, plan)
}

// crash runs the rotation with the failpoints binary, which must kill itself
// at the failpoint.
func (r *rotation) crash(t *testing.T, state, failpoint string) result {
	t.Helper()
	res := runBinary(t, crashBin, append(r.v.Environ(), "ROTPLAN_FAILPOINT="+failpoint), r.args("run", state)...)
	if res.exit != -1 {
		t.Fatalf("ROTPLAN_FAILPOINT=%s: rotplan exited %d instead of being killed\nstdout:\n%s\nstderr:\n%s", failpoint, res.exit, res.stdout, res.stderr)
	}
	return res
}

// TestCrashAtEveryBoundary kills rotplan at every journal record of the
// example rotation in turn, just before the record is written (the step's
// effects done, its outcome not recorded) and just after it is durable, and
// checks that `rotplan resume` then finishes the rotation exactly as an
// uninterrupted run would have.
func TestCrashAtEveryBoundary(t *testing.T) {
	r := newRotation(t)

	// An uninterrupted run says how many records there are.
	state := t.TempDir()
	if res := runRotplan(t, r.v.Environ(), r.args("run", state)...); res.exit != 0 {
		t.Fatalf("uninterrupted run exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	total := len(readJournal(t, state).Records)
	if total < 30 {
		t.Fatalf("an uninterrupted run journaled %d records; expected at least 30 (run, 14 steps twice, end)", total)
	}
	checkRotated(t, r.v)

	failpoints := boundaries(total)
	// Which record the Nth is depends on the order parallel steps took in
	// that run: these two kills land where they must whatever the order,
	// once a key's write has started and before the key is in place, so a
	// resume must issue that certificate anew and revoke the one the
	// journal names. (Counted kills alone missed that window once, on a
	// loaded machine.)
	failpoints = append(failpoints, "after-start:write.admin_key", "after-start:write.server_key")
	revoked, checked := 0, 0
	for _, fp := range failpoints {
		t.Run(strings.ReplaceAll(fp, ":", "_"), func(t *testing.T) {
			state := t.TempDir()
			servedBefore := servedSerial(t, r.v)
			r.crash(t, state, fp)
			killed, err := engine.LoadRun(state)
			if err != nil {
				t.Fatalf("reading the journal after the kill: %v", err)
			}

			res := runRotplan(t, r.v.Environ(), r.args("resume", state)...)
			checkResumed(t, killed, state, res)
			checkRotated(t, r.v)
			if got := servedSerial(t, r.v); got == servedBefore {
				t.Errorf("the served serial %s did not change", got)
			}
			revoked += checkSupersededRevoked(t, r.v, state)
			// Here, while the subtest's directory exists.
			assertNoSecrets(t, r.v, []string{state})
			checked++
		})
	}
	if revoked == 0 {
		t.Error("no kill made resume issue a certificate anew: the sensitive-output rule went untested")
	}
	t.Logf("%d superseded certificates revoked", revoked)

	assertNoSecrets(t, r.v, []string{state})
	t.Logf("checked the journals of %d interrupted runs and of the uninterrupted one for secrets", checked)
}

// boundaries are the failpoints at every journal boundary of a run of total
// records: just before each record is written (but the first: nothing has
// happened yet) and just after it is appended.
func boundaries(total int) []string {
	var out []string
	for n := 1; n <= total; n++ {
		if n > 1 {
			out = append(out, fmt.Sprintf("before:%d", n))
		}
		out = append(out, fmt.Sprintf("after:%d", n))
	}
	return out
}

// checkResumed checks the resume of a killed run: it exits 0, says
// "nothing to resume" when the killed run had finished, and its journal
// shows every step succeeded and why each step the kill interrupted was
// found done or run again.
func checkResumed(t *testing.T, killed *engine.Run, state string, res result) {
	t.Helper()
	if res.exit != 0 {
		t.Fatalf("resume exited %d\nstdout:\n%s\nstderr:\n%s", res.exit, res.stdout, res.stderr)
	}
	t.Logf("resume:\n%s", res.stdout)
	if killed.Status == journal.StatusSucceeded && !strings.Contains(res.stdout, "nothing to resume") {
		t.Errorf("resume after a finished run should say so:\n%s", res.stdout)
	}
	after, err := engine.LoadRun(state)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != journal.StatusSucceeded || after.Count(engine.StateSucceeded) != len(after.Steps) {
		t.Errorf("journal after resume: status %q, %d of %d steps succeeded", after.Status, after.Count(engine.StateSucceeded), len(after.Steps))
	}
	checkInterruptedExplained(t, killed, after)
}

// checkInterruptedExplained checks that every step a kill left started or
// failed was, in the resumed run, either found done or run again, and that
// the journal says why.
func checkInterruptedExplained(t *testing.T, killed, after *engine.Run) {
	t.Helper()
	for addr, s := range killed.Steps {
		if s.State != engine.StateStarted && s.State != engine.StateFailed {
			continue
		}
		if a := after.Steps[addr]; !a.Checked && a.Redone == "" {
			t.Errorf("%s was %s at the kill; the journal shows neither a check nor why it ran again", addr, s.State)
		}
	}
}

// checkSupersededRevoked checks that every certificate the last journal in
// state records as superseded (a resume issued anew; the plans ask for the
// old one to be revoked) is revoked in Vault, and returns how many there
// were.
func checkSupersededRevoked(t *testing.T, v *testvault.Vault, state string) int {
	t.Helper()
	n := 0
	for _, rec := range readJournal(t, state).Records {
		if rec.Type != journal.StepSuperseded {
			continue
		}
		var prev struct {
			Serial string `json:"serial_number"`
		}
		if err := json.Unmarshal(rec.Outputs, &prev); err != nil || prev.Serial == "" {
			t.Errorf("superseded record without a serial: %s", rec.Outputs)
			continue
		}
		if !isRevoked(t, v, prev.Serial) {
			t.Errorf("%s: superseded serial %s is not revoked in Vault (%s)", rec.Step, prev.Serial, rec.Note)
		}
		n++
	}
	return n
}

// TestResumeAfterTornAppend kills rotplan half way through writing a record:
// resume drops the torn record with a warning and finishes.
func TestResumeAfterTornAppend(t *testing.T) {
	r := newRotation(t)
	state := t.TempDir()
	r.crash(t, state, "tear:12")
	res := runRotplan(t, r.v.Environ(), r.args("resume", state)...)
	if res.exit != 0 {
		t.Fatalf("resume exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "is incomplete") {
		t.Errorf("resume should warn about the torn record:\n%s", res.stderr)
	}
	checkRotated(t, r.v)
	if _, err := journal.Read(journalPath(t, state)); err != nil {
		t.Errorf("the resumed journal must read cleanly: %v", err)
	}
}

// TestCorruptJournal damages a record in the middle of a killed run's
// journal: resume and run refuse, naming the offset, and change nothing.
func TestCorruptJournal(t *testing.T) {
	r := newRotation(t)
	state := t.TempDir()
	r.crash(t, state, "after:14")
	path := journalPath(t, state)
	c, err := journal.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Find the third record's offset and flip a byte inside it.
	offset := 0
	for i := 0; i < 2; i++ {
		offset += strings.IndexByte(string(data[offset:]), '\n') + 1
	}
	data[offset+20] ^= 0x20
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	served := servedSerial(t, r.v)
	for _, command := range []string{"resume", "run"} {
		res := runRotplan(t, r.v.Environ(), r.args(command, state)...)
		want := fmt.Sprintf("is corrupt at offset %d", offset)
		if res.exit != 2 || !strings.Contains(res.stderr, want) {
			t.Errorf("%s: exit %d, want 2 and %q in:\n%s", command, res.exit, want, res.stderr)
		}
	}
	if got := servedSerial(t, r.v); got != served {
		t.Errorf("a refused resume changed the served serial")
	}
	// The damaged record must not be the last, or it would be a torn
	// tail. (Records Write takes can still be in memory at the kill, so
	// the file may hold fewer than 14.)
	if len(c.Records) < 4 {
		t.Errorf("journal had %d records", len(c.Records))
	}
	// -fresh starts a new journal beside the damaged one.
	if res := runRotplan(t, r.v.Environ(), r.args("run", state, "-fresh")...); res.exit != 0 {
		t.Errorf("run -fresh exited %d\n%s", res.exit, res.stderr)
	}
	checkRotated(t, r.v)
}

// TestRunRefusesAnUnfinishedJournal: run after a kill refuses and points at
// resume and -fresh; resume with changed variables refuses and lists the
// steps whose inputs changed; resume with the run's variables finishes.
func TestRunRefusesAnUnfinishedJournal(t *testing.T) {
	r := newRotation(t)
	state := t.TempDir()
	r.crash(t, state, "after:8")

	res := runRotplan(t, r.v.Environ(), r.args("run", state)...)
	if res.exit != 2 || !strings.Contains(res.stderr, "did not finish") ||
		!strings.Contains(res.stderr, "rotplan resume") || !strings.Contains(res.stderr, "-fresh") {
		t.Errorf("run over an unfinished journal: exit %d\n%s", res.exit, res.stderr)
	}

	res = runRotplan(t, r.v.Environ(), r.args("resume", state, "-var", "owner=root")...)
	if res.exit != 2 || !strings.Contains(res.stderr, "the variables (owner) changed") || !strings.Contains(res.stderr, "chown.server_tls (changed)") {
		t.Errorf("resume with a changed variable: exit %d\n%s", res.exit, res.stderr)
	}
	if strings.Contains(res.stderr, "issue.admin (changed)") {
		t.Errorf("resume lists a step whose inputs did not change:\n%s", res.stderr)
	}

	res = runRotplan(t, r.v.Environ(), r.args("resume", state)...)
	if res.exit != 0 {
		t.Fatalf("resume exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkRotated(t, r.v)

	res = runRotplan(t, r.v.Environ(), "status", "-state-dir", state, "examples/prod.hcl")
	if res.exit != 0 || !strings.Contains(res.stdout, "succeeded") || !strings.Contains(res.stdout, "serial=") {
		t.Errorf("status: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
}

// TestResumeAfterPlanChange: a resume over an edited plan refuses and names
// the edited step; -force carries it out again and finishes the rotation.
func TestResumeAfterPlanChange(t *testing.T) {
	r := newRotation(t)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "prod.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(t.TempDir(), "prod.hcl")
	if err := os.WriteFile(plan, src, 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	res := runBinary(t, crashBin, append(r.v.Environ(), "ROTPLAN_FAILPOINT=after:12"), r.argsFor(plan, "run", state)...)
	if res.exit != -1 {
		t.Fatalf("the run was not killed: exit %d\n%s", res.exit, res.stderr)
	}
	edited := strings.Replace(string(src), `common_name       = "vault-admin-prod"
  ttl               = "720h"`, `common_name       = "vault-admin-prod"
  ttl               = "719h"`, 1)
	if edited == string(src) {
		t.Fatal("the edit did not apply: examples/prod.hcl changed shape")
	}
	if err := os.WriteFile(plan, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	res = runRotplan(t, r.v.Environ(), r.argsFor(plan, "resume", state)...)
	if res.exit != 2 || !strings.Contains(res.stderr, "the plan changed") || !strings.Contains(res.stderr, "issue.admin (changed)") ||
		strings.Contains(res.stderr, "issue.server (changed)") {
		t.Fatalf("resume over an edited plan: exit %d\n%s", res.exit, res.stderr)
	}
	res = runRotplan(t, r.v.Environ(), r.argsFor(plan, "resume", state, "-force")...)
	if res.exit != 0 || !strings.Contains(res.stdout, "issue.admin") || !strings.Contains(res.stdout, "definition changed") {
		t.Fatalf("resume -force: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkRotated(t, r.v)
	admin := readCert(t, filepath.Join(r.v.AdminDir, "admin.crt"))
	if ttl := admin.NotAfter.Sub(admin.NotBefore).Round(time.Hour); ttl > 719*time.Hour+time.Minute {
		t.Errorf("admin.crt lives %s: it was not issued again under the edited plan", ttl)
	}
}

// TestOneRunAtATime: a second run on a locked state directory fails at once,
// naming the holder; once the holder is killed, the lock is free.
func TestOneRunAtATime(t *testing.T) {
	dir := t.TempDir()
	state := t.TempDir()
	plan := filepath.Join(dir, "slow.hcl")
	src := `variable "seconds" {
  default = "30"
}
reload "wait" {
  command = ["/bin/sleep", var.seconds]
  timeout = "60s"
}
`
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := startBinary(ctx, t, rotplanBin, "run", "-state-dir", state, plan)
	holder := waitForHolder(t, state)
	if holder.PID != first.Process.Pid {
		t.Fatalf("lock holder pid %d, want %d", holder.PID, first.Process.Pid)
	}

	start := time.Now()
	res := runRotplan(t, nil, "run", "-state-dir", state, plan)
	want := fmt.Sprintf("locked by rotplan pid %d", first.Process.Pid)
	if res.exit != 2 || !strings.Contains(res.stderr, want) || !strings.Contains(res.stderr, "running since") {
		t.Errorf("second run: exit %d, want 2 and %q:\n%s", res.exit, want, res.stderr)
	}
	t.Logf("the second run gave up after %s", time.Since(start))

	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	res = runRotplan(t, nil, "run", "-fresh", "-var", "seconds=0", "-state-dir", state, plan)
	if res.exit != 0 {
		t.Errorf("after the holder was killed: exit %d\n%s", res.exit, res.stderr)
	}
}

// checkRotated checks the rotation's end state from outside: the listener
// serves server.crt, each key matches its certificate, the admin
// certificate works for vault status, and modes and owners are right.
func checkRotated(t *testing.T, v *testvault.Vault) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serverCrt := readCert(t, filepath.Join(v.ServerDir, "server.crt"))
	chain, err := v.ServedChain(ctx)
	if err != nil {
		t.Fatalf("served chain: %v", err)
	}
	if chain[0].SerialNumber.Cmp(serverCrt.SerialNumber) != 0 {
		t.Errorf("the listener serves %x, server.crt has %x", chain[0].SerialNumber, serverCrt.SerialNumber)
	}
	adminCrt, adminKey := filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")
	for _, pair := range [][2]string{{adminCrt, adminKey}, {filepath.Join(v.ServerDir, "server.crt"), filepath.Join(v.ServerDir, "server.key")}} {
		if _, err := tls.LoadX509KeyPair(pair[0], pair[1]); err != nil {
			t.Errorf("%s and %s do not match: %v", pair[0], pair[1], err)
		}
	}
	if _, err := v.SealStatus(ctx, adminCrt, adminKey); err != nil {
		t.Errorf("vault status with admin.crt: %v", err)
	}
	for _, f := range []struct {
		path  string
		mode  os.FileMode
		owner string
	}{
		{adminKey, 0o600, ""},
		{adminCrt, 0o644, ""},
		{filepath.Join(v.ServerDir, "server.key"), 0o600, v.Owner},
		{filepath.Join(v.ServerDir, "server.crt"), 0o644, v.Owner},
		{filepath.Join(v.ServerDir, "fullchain.crt"), 0o644, v.Owner},
		{filepath.Join(v.ServerDir, "ca_chain.pem"), 0o644, v.Owner},
	} {
		checkModeOwner(t, f.path, f.mode, f.owner)
	}
}

// checkModeOwner checks that path has exactly mode and, unless owner is
// "", belongs to the user owner.
func checkModeOwner(t *testing.T, path string, mode os.FileMode, owner string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), mode)
	}
	if owner == "" {
		return
	}
	uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid))
	if u, err := user.LookupId(uid); err != nil || u.Username != owner {
		t.Errorf("%s: owned by uid %s, want %s", path, uid, owner)
	}
}

func servedSerial(t *testing.T, v *testvault.Vault) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	chain, err := v.ServedChain(ctx)
	if err != nil {
		t.Fatalf("served chain: %v", err)
	}
	return chain[0].SerialNumber.Text(16)
}

func journalPath(t *testing.T, state string) string {
	t.Helper()
	path, err := journal.Last(state)
	if err != nil || path == "" {
		t.Fatalf("no journal in %s: %v", state, err)
	}
	return path
}

func readJournal(t *testing.T, state string) *journal.Contents {
	t.Helper()
	c, err := journal.Read(journalPath(t, state))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertNoSecrets reads every journal under the state directories: no PEM
// private key, no line of the keys now installed, no Vault token.
func assertNoSecrets(t *testing.T, v *testvault.Vault, states []string) {
	t.Helper()
	var keyLines []string
	for _, key := range []string{filepath.Join(v.AdminDir, "admin.key"), filepath.Join(v.ServerDir, "server.key")} {
		keyLines = append(keyLines, pemBodyLines(t, key)...)
	}
	n := 0
	for _, state := range states {
		files, _ := filepath.Glob(filepath.Join(state, "runs", "*.journal"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n++
			text := string(data)
			for _, bad := range append([]string{"PRIVATE KEY", "hvs.", "hvb.", v.RootToken}, keyLines...) {
				if strings.Contains(text, bad) {
					t.Errorf("%s contains a secret (%.12s…)", f, bad)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no journal to check")
	}
	t.Logf("checked %d journals", n)
}

// waitForHolder waits until a run has taken the state directory's lock and
// said who it is.
func waitForHolder(t *testing.T, state string) journal.Holder {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var h journal.Holder
		if data, err := os.ReadFile(filepath.Join(state, "lock")); err == nil && json.Unmarshal(data, &h) == nil && h.PID != 0 {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no run took the lock")
	return journal.Holder{}
}

// isRevoked asks Vault, through the harness's root client, whether a
// certificate of pki-prod is revoked.
func isRevoked(t *testing.T, v *testvault.Vault, serial string) bool {
	t.Helper()
	secret, err := v.Root().Logical().ReadWithContext(context.Background(), "pki-prod/cert/"+serial)
	if err != nil || secret == nil {
		t.Fatalf("reading pki-prod/cert/%s: %v", serial, err)
	}
	n, err := strconv.ParseInt(fmt.Sprint(secret.Data["revocation_time"]), 10, 64)
	if err != nil {
		t.Fatalf("pki-prod/cert/%s: revocation_time %v", serial, secret.Data["revocation_time"])
	}
	return n > 0
}

// TestInterruptThenResume: Ctrl-C (SIGINT) stops the run, which says so in
// its exit code and journal; resume finishes it.
func TestInterruptThenResume(t *testing.T) {
	dir := t.TempDir()
	state := t.TempDir()
	plan := filepath.Join(dir, "interrupt.hcl")
	flag := filepath.Join(dir, "go-on")
	src := `variable "flag" {}
reload "first" {
  command = ["/bin/sh", "-c", "test -e ${var.flag} || exec sleep 30"]
  timeout = "60s"
}
reload "second" {
  depends_on = [reload.first]
  command    = ["/bin/true"]
}
`
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	run := exec.CommandContext(ctx, rotplanBin, "run", "-state-dir", state, "-var", "flag="+flag, plan)
	run.Dir, run.Stdout = repoRoot(t), &stdout
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		r, err := engine.LoadRun(state)
		return err == nil && r != nil && r.Steps["reload.first"].Attempts > 0
	})
	run.Process.Signal(os.Interrupt)
	err := run.Wait()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("interrupted run: %v, want exit 1\n%s", err, stdout.String())
	}
	killed, err := engine.LoadRun(state)
	if err != nil {
		t.Fatal(err)
	}
	if killed.Status != journal.StatusInterrupted || !killed.Unfinished() {
		t.Errorf("journal status %q, want %q and unfinished", killed.Status, journal.StatusInterrupted)
	}

	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res := runRotplan(t, nil, "resume", "-state-dir", state, "-var", "flag="+flag, plan)
	if res.exit != 0 || !strings.Contains(res.stdout, "reload.first") || !strings.Contains(res.stdout, "runs again") {
		t.Errorf("resume: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	res = runRotplan(t, nil, "status", "-json", "-state-dir", state, plan)
	var doc struct {
		Status string `json:"status"`
		Steps  []struct {
			Step, State string
			Attempts    int
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("status -json: %v\n%s", err, res.stdout)
	}
	if doc.Status != journal.StatusSucceeded || len(doc.Steps) != 2 || doc.Steps[0].Attempts != 2 || doc.Steps[1].State != engine.StateSucceeded {
		t.Errorf("status -json after resume: %+v", doc)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out waiting")
}
