package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/steps"
)

// update makes TestPlanGolden rewrite its golden files instead of comparing
// with them, so that they are only ever produced by the binary:
//
//	ROTPLAN_VAULT_BIN=... go test ./internal/e2e -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files")

// planArgs are the arguments of `rotplan plan` on a plan with the harness's
// variables. plan has no -state-dir: it never touches one.
func (r *rotation) planArgs(plan string, extra ...string) []string {
	args := append([]string{"plan", "-var-file", r.varFile}, extra...)
	return append(args, plan)
}

// planDoc is the part of the `rotplan plan -json` document the tests read.
type planDoc struct {
	Plan    string         `json:"plan"`
	Valid   bool           `json:"valid"`
	Changes bool           `json:"changes"`
	Summary map[string]int `json:"summary"`
	Steps   []planStep     `json:"steps"`
	Errors  []planDiag     `json:"errors"`
}

type planStep struct {
	Address string `json:"address"`
	Action  string `json:"action"`
	Reason  string `json:"reason"`
	Skipped bool   `json:"skipped"`
	// Arguments stay raw: what matters is exactly which of value,
	// sensitive and known_after an argument carries.
	Arguments map[string]json.RawMessage `json:"arguments"`
	Now       []steps.Fact               `json:"now"`
	Errors    []planDiag                 `json:"errors"`
}

type planDiag struct {
	Summary  string `json:"summary"`
	Detail   string `json:"detail"`
	Location *struct {
		File   string `json:"file"`
		Line   int    `json:"line"`
		Column int    `json:"column"`
	} `json:"location"`
}

func decodePlan(t *testing.T, res result) planDoc {
	t.Helper()
	var doc planDoc
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("plan -json (exit %d) is not JSON: %v\nstdout:\n%s\nstderr:\n%s", res.exit, err, res.stdout, res.stderr)
	}
	return doc
}

func (d planDoc) step(t *testing.T, addr string) planStep {
	t.Helper()
	for _, s := range d.Steps {
		if s.Address == addr {
			return s
		}
	}
	t.Fatalf("the preview has no step %s", addr)
	return planStep{}
}

// fact is the value of a step's fact; a missing fact fails the test.
func (s planStep) fact(t *testing.T, name string) string {
	t.Helper()
	for _, f := range s.Now {
		if f.Name == name {
			return f.Value
		}
	}
	t.Fatalf("%s: no fact %q among %#v", s.Address, name, s.Now)
	return ""
}

// argument is a step argument's JSON, compacted so that it compares as text.
func (s planStep) argument(t *testing.T, name string) string {
	t.Helper()
	raw, ok := s.Arguments[name]
	if !ok {
		t.Fatalf("%s: no argument %q", s.Address, name)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// colonHex writes a serial as operators read it from Vault: lower-case hex
// pairs joined by colons. It is written out here rather than taken from
// steps.SerialHex, so that the test checks the format instead of repeating
// it.
func colonHex(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	pairs := make([]string, len(b))
	for i, x := range b {
		pairs[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(pairs, ":")
}

// systemState is what a preview must leave as it found it: every file and
// directory under the admin and server directories, the certificates Vault
// has issued, and the serial the listener serves.
type systemState struct {
	files, issued, served string
}

func readSystem(t *testing.T, v *testvault.Vault) systemState {
	t.Helper()
	return systemState{
		files:  digestTree(t, v.AdminDir) + digestTree(t, v.ServerDir),
		issued: strings.Join(issuedSerials(t, v), "\n"),
		served: servedSerial(t, v),
	}
}

func assertUnchanged(t *testing.T, before, after systemState) {
	t.Helper()
	if after.files != before.files {
		t.Errorf("files changed:\nbefore:\n%s\nafter:\n%s", before.files, after.files)
	}
	if after.issued != before.issued {
		t.Errorf("Vault's issued certificates changed:\nbefore:\n%s\nafter:\n%s", before.issued, after.issued)
	}
	if after.served != before.served {
		t.Errorf("the listener served %s, now %s", before.served, after.served)
	}
}

// digestTree describes every entry under dir by mode, owner, size, mtime
// (ns) and, for a file, its SHA-256. Unlike snapshot (badinput_test.go) it
// holds digests, not bytes: these directories hold private keys, and a
// failure message must not print them. A directory's mtime shows a
// temporary file that came and went.
func digestTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d %d %d", path, fi.Mode(), st.Uid, st.Gid, fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " sha256:%x", sha256.Sum256(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// issuedSerials lists, through the harness's root client, the serials of
// every certificate pki-prod has issued, sorted, as colonHex writes them
// (Vault has listed them with hyphens as well as with colons).
func issuedSerials(t *testing.T, v *testvault.Vault) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret, err := v.Root().Logical().ListWithContext(ctx, "pki-prod/certs")
	if err != nil || secret == nil {
		t.Fatalf("listing pki-prod/certs: %v", err)
	}
	keys, _ := secret.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		out = append(out, strings.ReplaceAll(fmt.Sprint(k), "-", ":"))
	}
	if len(out) == 0 {
		t.Fatal("pki-prod/certs lists no certificate: the harness issued two")
	}
	sort.Strings(out)
	return out
}

// assertNoSecretOutput checks what rotplan printed for a private key, a
// line of the keys in place or a Vault token.
func assertNoSecretOutput(t *testing.T, v *testvault.Vault, results ...result) {
	t.Helper()
	secrets := []string{"PRIVATE KEY", "hvs.", "hvb.", v.RootToken}
	for _, key := range []string{filepath.Join(v.AdminDir, "admin.key"), filepath.Join(v.ServerDir, "server.key")} {
		secrets = append(secrets, pemBodyLines(t, key)...)
	}
	for i, res := range results {
		for _, s := range secrets {
			if strings.Contains(res.stdout+res.stderr, s) {
				t.Errorf("output %d contains a secret (%.12s…)", i, s)
			}
		}
	}
}

// TestPlanReadsTheRealSystem previews the example rotation: what it reports
// is what the test reads itself from the files, the process table and the
// listener, and it changes none of them.
func TestPlanReadsTheRealSystem(t *testing.T) {
	r := newRotation(t)
	v := r.v
	const plan = "examples/prod.hcl"
	strayState := filepath.Join(repoRoot(t), "examples", ".rotplan")
	_, err := os.Stat(strayState)
	strayBefore := err == nil
	// A copy alone in its directory, run without -state-dir, shows whether
	// a dry run creates the default state directory beside the plan.
	copied := editedPlan(t)
	dryState := filepath.Join(t.TempDir(), "state")
	before := readSystem(t, v)

	human := runRotplan(t, v.Environ(), r.planArgs(plan)...)
	asJSON := runRotplan(t, v.Environ(), r.planArgs(plan, "-json")...)
	detailed := runRotplan(t, v.Environ(), r.planArgs(plan, "-detailed-exitcode")...)
	dryHuman := runRotplan(t, v.Environ(), r.argsFor(plan, "run", dryState, "-dry-run")...)
	dryJSON := runRotplan(t, v.Environ(), r.argsFor(plan, "run", dryState, "-dry-run", "-json")...)
	dryDetailed := runRotplan(t, v.Environ(), r.argsFor(plan, "run", dryState, "-dry-run", "-detailed-exitcode")...)
	dryCopy := runRotplan(t, v.Environ(), "run", "-dry-run", "-var-file", r.varFile, copied)
	planCopy := runRotplan(t, v.Environ(), r.planArgs(copied)...)
	all := []result{human, asJSON, detailed, dryHuman, dryJSON, dryDetailed, dryCopy, planCopy}

	t.Run("exit codes", func(t *testing.T) {
		for _, c := range []struct {
			name string
			res  result
			want int
		}{
			{"plan", human, 0},
			{"plan -json", asJSON, 0},
			{"plan -detailed-exitcode", detailed, 2},
			{"run -dry-run", dryHuman, 0},
			{"run -dry-run -json", dryJSON, 0},
			{"run -dry-run -detailed-exitcode", dryDetailed, 2},
			{"run -dry-run on a copy", dryCopy, 0},
			{"plan on a copy", planCopy, 0},
		} {
			if c.res.exit != c.want {
				t.Errorf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", c.name, c.res.exit, c.want, c.res.stdout, c.res.stderr)
			}
		}
	})

	doc := decodePlan(t, asJSON)
	adminCrt := readCert(t, filepath.Join(v.AdminDir, "admin.crt"))
	serverCrt := readCert(t, filepath.Join(v.ServerDir, "server.crt"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	chain, err := v.ServedChain(ctx)
	if err != nil {
		t.Fatalf("served chain: %v", err)
	}

	t.Run("facts read from the system", func(t *testing.T) {
		for _, c := range []struct {
			step string
			cert *x509.Certificate
		}{{"issue.admin", adminCrt}, {"issue.server", serverCrt}} {
			s := doc.step(t, c.step)
			if got, want := s.fact(t, "current_serial"), colonHex(c.cert); got != want {
				t.Errorf("%s: current_serial %q, the file's certificate has %q", c.step, got, want)
			}
			// The time left follows in brackets: "... (719h left)".
			if got, want := s.fact(t, "current_not_after"), c.cert.NotAfter.UTC().Format(time.RFC3339)+" ("; !strings.HasPrefix(got, want) {
				t.Errorf("%s: current_not_after %q, the file's certificate expires %s", c.step, got, want)
			}
			if s.Action != "replace" || s.Skipped {
				t.Errorf("%s: action %q skipped %v, want replace (the harness's renew_before is the certificates' lifetime)", c.step, s.Action, s.Skipped)
			}
		}
		if got, want := doc.step(t, "write.server_crt").fact(t, "serial"), colonHex(serverCrt); got != want {
			t.Errorf("write.server_crt: serial %q, server.crt has %q", got, want)
		}

		pidText, err := os.ReadFile(v.PIDFile)
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(string(pidText))
		if pid != strconv.Itoa(v.PID()) {
			t.Fatalf("the pid file says %s, the harness started pid %d", pid, v.PID())
		}
		reload := doc.step(t, "reload.vault")
		if got := reload.fact(t, "process"); !strings.HasPrefix(got, "pid "+pid+" ") || !strings.Contains(got, v.PIDFile) {
			t.Errorf("reload.vault: process %q does not name pid %s from %s", got, pid, v.PIDFile)
		}
		if want := "SIGHUP to pid " + pid; reload.Reason != want {
			t.Errorf("reload.vault: reason %q, want %q", reload.Reason, want)
		}

		if got, want := doc.step(t, "verify.check_b").fact(t, "now"), "serves serial "+colonHex(chain[0]); got != want {
			t.Errorf("verify.check_b: now %q, want %q", got, want)
		}
		if !doc.Valid || !doc.Changes || len(doc.Errors) != 0 || len(doc.Steps) != 14 {
			t.Errorf("valid %v changes %v, %d errors, %d steps; want a valid plan of 14 steps with changes and no error", doc.Valid, doc.Changes, len(doc.Errors), len(doc.Steps))
		}
	})

	t.Run("arguments", func(t *testing.T) {
		for _, c := range []struct{ step, arg, want string }{
			{"write.admin_key", "content", `{"sensitive":true}`},
			{"write.admin_crt", "content", `{"known_after":["issue"]}`},
			{"write.admin_key", "path", fmt.Sprintf(`{"value":%q}`, filepath.Join(v.AdminDir, "admin.key"))},
			{"verify.check_b", "tls.expect_serial", `{"known_after":["issue"]}`},
		} {
			if got := doc.step(t, c.step).argument(t, c.arg); got != c.want {
				t.Errorf("%s.%s: %s, want %s", c.step, c.arg, got, c.want)
			}
		}
	})

	t.Run("human form", func(t *testing.T) {
		for _, want := range []string{
			"(known after issue)",
			"(sensitive)",
			"current_serial     " + colonHex(adminCrt),
			"serves serial " + colonHex(chain[0]),
		} {
			if !strings.Contains(human.stdout, want) {
				t.Errorf("plan's output lacks %q:\n%s", want, human.stdout)
			}
		}
		if human.stderr != "" {
			t.Errorf("plan wrote to stderr:\n%s", human.stderr)
		}
	})

	t.Run("run -dry-run is plan", func(t *testing.T) {
		for _, c := range []struct {
			name      string
			plan, dry result
		}{{"text", human, dryHuman}, {"JSON", asJSON, dryJSON}, {"-detailed-exitcode", detailed, dryDetailed}} {
			if c.dry.stdout != c.plan.stdout {
				t.Errorf("%s: run -dry-run printed\n%s\nplan printed\n%s", c.name, c.dry.stdout, c.plan.stdout)
			}
		}
		// The same preview of the copy, but for the plan file's name.
		if got, want := dryCopy.stdout, strings.ReplaceAll(human.stdout, plan, copied); got != want {
			t.Errorf("run -dry-run on a copy of the plan printed\n%s\nplan on the original printed\n%s", got, human.stdout)
		}
	})

	t.Run("changes nothing", func(t *testing.T) {
		assertUnchanged(t, before, readSystem(t, v))
		if _, err := os.Stat(strayState); !strayBefore && err == nil {
			t.Errorf("%s was created", strayState)
		}
		for _, dir := range []string{dryState, filepath.Join(filepath.Dir(copied), ".rotplan")} {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("a preview created the state directory %s", dir)
			}
		}
	})

	t.Run("no secrets", func(t *testing.T) {
		assertNoSecretOutput(t, v, all...)
	})
}

// evilCommonName asks issue.server for a name the vault-server role does not
// allow.
func evilCommonName(src string) string {
	return strings.Replace(src, "common_name       = var.server_name", `common_name       = "vault.evil.example"`, 1)
}

// sourcePosition is "LINE:COL" of the only occurrence of needle in text, as
// HCL counts them (from 1, columns in characters).
func sourcePosition(t *testing.T, text, needle string) string {
	t.Helper()
	i := strings.Index(text, needle)
	if i < 0 || strings.Count(text, needle) != 1 {
		t.Fatalf("%q occurs %d times in the plan; the test needs it once", needle, strings.Count(text, needle))
	}
	line := strings.Count(text[:i], "\n") + 1
	col := len([]rune(text[strings.LastIndex(text[:i], "\n")+1:i])) + 1
	return fmt.Sprintf("%d:%d", line, col)
}

// deadPIDFile writes a pid file naming a process that has exited.
func deadPIDFile(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dead.pid")
	if err := os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPlanReportsProblems previews plans that would fail: each problem is
// an error at the line and column of the expression at fault, every problem
// is reported (not only the first), plan exits 1, and nothing changes.
func TestPlanReportsProblems(t *testing.T) {
	r := newRotation(t)
	dead := deadPIDFile(t)
	missing := filepath.Join(t.TempDir(), "no-such.pid")
	for _, c := range []struct {
		name  string
		edits []func(string) string // none: examples/prod.hcl itself
		vars  []string
		// at are the expressions the errors must point at, one per
		// error.
		at []string
	}{
		{name: "common name the role refuses", edits: []func(string) string{evilCommonName}, at: []string{`"vault.evil.example"`}},
		{name: "owner who does not exist", vars: []string{"owner=no-such-user-rotplan"}, at: []string{"var.owner"}},
		{name: "pid file of an exited process", vars: []string{"vault_pid_file=" + dead}, at: []string{"var.vault_pid_file"}},
		{name: "refused name and exited process", edits: []func(string) string{evilCommonName}, vars: []string{"vault_pid_file=" + dead},
			at: []string{`"vault.evil.example"`, "var.vault_pid_file"}},
		{name: "missing pid file", vars: []string{"vault_pid_file=" + missing}, at: []string{"var.vault_pid_file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan := "examples/prod.hcl"
			if len(c.edits) > 0 {
				plan = editedPlan(t, c.edits...)
			}
			path := plan
			if !filepath.IsAbs(path) {
				path = filepath.Join(repoRoot(t), plan)
			}
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var extra []string
			for _, kv := range c.vars {
				extra = append(extra, "-var", kv)
			}
			before := readSystem(t, r.v)
			human := runRotplan(t, r.v.Environ(), r.planArgs(plan, extra...)...)
			asJSON := runRotplan(t, r.v.Environ(), r.planArgs(plan, append(extra, "-json")...)...)
			assertUnchanged(t, before, readSystem(t, r.v))
			assertNoSecretOutput(t, r.v, human, asJSON)
			if human.exit != 1 || asJSON.exit != 1 {
				t.Errorf("exit %d (-json: %d), want 1", human.exit, asJSON.exit)
			}
			var want []string
			for _, needle := range c.at {
				want = append(want, plan+":"+sourcePosition(t, string(src), needle))
				if at := want[len(want)-1] + ": error: "; !strings.Contains(human.stderr, at) {
					t.Errorf("stderr lacks %q", at)
				}
			}
			doc := decodePlan(t, asJSON)
			var got []string
			for _, d := range doc.Errors {
				if d.Location == nil {
					t.Errorf("error without a location: %s: %s", d.Summary, d.Detail)
					continue
				}
				got = append(got, fmt.Sprintf("%s:%d:%d", d.Location.File, d.Location.Line, d.Location.Column))
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("-json errors at %q, want %q", got, want)
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s\n-json:\n%s", human.stdout, human.stderr, asJSON.stdout)
			}
		})
	}

	t.Run("directory not writable", func(t *testing.T) {
		// Root may write anywhere, so as root the preview runs as nobody
		// against a root-owned directory; otherwise the directory loses its
		// write bit. Everything nobody must read is in a directory of its
		// own with world-readable modes: t.TempDir's are private.
		home, err := os.MkdirTemp("", "rotplan-e2e-nobody-*")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(home) })
		target := filepath.Join(home, "target")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		src := `variable "dir" {}

write "x" {
  path    = "${var.dir}/x.pem"
  content = "hello"
}
`
		plan := filepath.Join(home, "write.hcl")
		if err := os.WriteFile(plan, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		bin, targetMode := rotplanBin, os.FileMode(0o555)
		var cred *syscall.Credential
		if os.Geteuid() == 0 {
			cred = &syscall.Credential{Uid: 65534, Gid: 65534}
			targetMode = 0o755
			// The test binaries live in a private directory.
			bin = filepath.Join(home, "rotplan")
			copyFile(t, rotplanBin, bin, 0o755)
		} else {
			t.Cleanup(func() { os.Chmod(target, 0o755) })
		}
		// MkdirTemp's directory is private, and the umask may have taken
		// bits off the others.
		for path, mode := range map[string]os.FileMode{home: 0o755, plan: 0o644, target: targetMode} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		before := digestTree(t, target)
		res := runAs(t, bin, home, cred, "plan", "-var", "dir="+target, plan)
		if res.exit != 1 {
			t.Errorf("exit %d, want 1", res.exit)
		}
		if want := plan + ":" + sourcePosition(t, src, `"${var.dir}/x.pem"`) + ": error: "; !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
		if !strings.Contains(res.stderr, "not writable") {
			t.Errorf("stderr does not say the directory is not writable")
		}
		if got := digestTree(t, target); got != before {
			t.Errorf("the directory changed:\nbefore:\n%s\nafter:\n%s", before, got)
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
		}
	})
}

// runAs runs a rotplan binary in dir as cred's user (nil: as the test),
// which runBinary cannot: it keeps the test's user and runs in the
// repository root, which another user may not be able to enter.
func runAs(t *testing.T, bin, dir string, cred *syscall.Credential, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return runCmd(t, cmd, time.Minute)
}

// copyFile copies a file to a new one with mode.
func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// stepRecords maps each step to the types of its journal records, in order.
func stepRecords(t *testing.T, state string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, rec := range readJournal(t, state).Records {
		if rec.Step != "" {
			out[rec.Step] = append(out[rec.Step], rec.Type)
		}
	}
	return out
}

// notDue sets a renew_before shorter than the 720h the harness's
// certificates live; -var wins over the harness's var file, whose
// renew_before is their whole lifetime.
var notDue = []string{"-var", "renew_before=240h"}

// TestRenewBefore: with renew_before shorter than what the certificates in
// place have left, the plan shows nothing to do and the run does nothing;
// once one certificate is short-lived, only its half of the plan runs. Each
// case has a Vault of its own, so that a failed run cannot spoil the next.
func TestRenewBefore(t *testing.T) {
	t.Run("fresh certificates", func(t *testing.T) {
		r := newRotation(t)
		v := r.v
		before := readSystem(t, v)
		res := runRotplan(t, v.Environ(), r.planArgs("examples/prod.hcl", append(notDue, "-detailed-exitcode")...)...)
		if res.exit != 0 {
			t.Errorf("plan -detailed-exitcode: exit %d, want 0 (nothing to do)\n%s%s", res.exit, res.stdout, res.stderr)
		}
		doc := decodePlan(t, runRotplan(t, v.Environ(), r.planArgs("examples/prod.hcl", append(notDue, "-json")...)...))
		if doc.Changes {
			t.Error("plan -json: changes is true")
		}
		for _, s := range doc.Steps {
			if !s.Skipped || s.Action != "no-change" {
				t.Errorf("%s: action %q skipped %v, want no-change and skipped", s.Address, s.Action, s.Skipped)
			}
		}

		state := t.TempDir()
		res = runRotplan(t, v.Environ(), r.args("run", state, notDue...)...)
		if res.exit != 0 || !strings.Contains(res.stdout, "Nothing to do: every step was skipped as not due") {
			t.Errorf("run: exit %d, want 0 and nothing to do\n%s%s", res.exit, res.stdout, res.stderr)
		}
		recs := stepRecords(t, state)
		if len(recs) != 14 {
			t.Errorf("the journal has records of %d steps, want 14", len(recs))
		}
		for step, types := range recs {
			if len(types) != 1 || types[0] != journal.StepSkipped {
				t.Errorf("%s: journal records %v, want only %s", step, types, journal.StepSkipped)
			}
		}
		assertUnchanged(t, before, readSystem(t, v))
	})

	adminSteps := []string{"issue.admin", "write.admin_key", "write.admin_crt", "write.admin_issuing_ca", "verify.admin_status"}
	serverSteps := []string{"issue.server", "write.server_key", "write.server_crt", "write.server_fullchain",
		"write.server_ca_chain", "chown.server_tls", "reload.vault"}
	for _, c := range []struct {
		name string
		// due is the issue step whose certificate is made short-lived;
		// ran and skipped are the steps the run must carry out and skip.
		due, role, crt, key string
		ran, skipped        []string
		// kept is the directory the run must leave alone.
		kept func(v *testvault.Vault) string
	}{
		{
			name: "short-lived admin certificate", due: "issue.admin", role: "admin-client", crt: "admin.crt", key: "admin.key",
			// check_a may go either way: it follows the reload, but it logs
			// in with the new admin certificate.
			ran: adminSteps, skipped: append(serverSteps, "verify.check_b"),
			kept: func(v *testvault.Vault) string { return v.ServerDir },
		},
		{
			name: "short-lived server certificate", due: "issue.server", role: "vault-server", crt: "server.crt", key: "server.key",
			ran: append(serverSteps, "verify.check_a", "verify.check_b"), skipped: adminSteps,
			kept: func(v *testvault.Vault) string { return v.AdminDir },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRotation(t)
			v := r.v
			const plan = "examples/prod.hcl"
			dir := v.AdminDir
			if c.due == "issue.server" {
				dir = v.ServerDir
			}
			crt, key := filepath.Join(dir, c.crt), filepath.Join(dir, c.key)
			short := installShortLived(t, v, c.role, crt, key)
			kept := digestTree(t, c.kept(v))
			served := servedSerial(t, v)
			issuedBefore := issuedSerials(t, v)

			res := runRotplan(t, v.Environ(), r.planArgs(plan, append(notDue, "-json", "-detailed-exitcode")...)...)
			if res.exit != 2 {
				t.Errorf("plan -detailed-exitcode: exit %d, want 2 (changes pending)\n%s", res.exit, res.stderr)
			}
			doc := decodePlan(t, res)
			for _, addr := range []string{"issue.admin", "issue.server"} {
				s := doc.step(t, addr)
				switch {
				case addr == c.due && (s.Action != "replace" || s.Skipped || !strings.Contains(s.Reason, "renew_before 240h")):
					t.Errorf("%s: action %q skipped %v reason %q, want replace as due", addr, s.Action, s.Skipped, s.Reason)
				case addr != c.due && (s.Action != "no-change" || !s.Skipped):
					t.Errorf("%s: action %q skipped %v, want no-change and skipped", addr, s.Action, s.Skipped)
				}
			}

			state := t.TempDir()
			res = runRotplan(t, v.Environ(), r.argsFor(plan, "run", state, notDue...)...)
			if res.exit != 0 {
				t.Fatalf("run: exit %d, want 0\n%s%s", res.exit, res.stdout, res.stderr)
			}
			renewed := readCert(t, crt)
			if renewed.SerialNumber.Cmp(short.SerialNumber) == 0 {
				t.Errorf("%s still has the short-lived serial %s", c.crt, colonHex(short))
			}
			if left := time.Until(renewed.NotAfter); left < 719*time.Hour || left > 720*time.Hour {
				t.Errorf("the new %s has %s left, want about 720h", c.crt, left.Round(time.Minute))
			}
			// Keys match, vault status works with admin.crt, the listener
			// serves server.crt, modes and owners are right.
			checkRotated(t, v)
			if got := digestTree(t, c.kept(v)); got != kept {
				t.Errorf("%s changed:\nbefore:\n%s\nafter:\n%s", c.kept(v), kept, got)
			}
			if got := servedSerial(t, v); (got == served) != (c.due == "issue.admin") {
				t.Errorf("the listener served %s before the run and %s after it", served, got)
			}
			issued := issuedSerials(t, v)
			if want := colonHex(renewed); len(issued) != len(issuedBefore)+1 || !slices.Contains(issued, want) {
				t.Errorf("Vault issued %d certificates during the run, want one, %s's %s", len(issued)-len(issuedBefore), c.crt, want)
			}

			recs := stepRecords(t, state)
			for _, step := range c.ran {
				if types := recs[step]; !slices.Contains(types, journal.StepSucceeded) {
					t.Errorf("%s: journal records %v, want it carried out", step, types)
				}
			}
			for _, step := range c.skipped {
				if types := recs[step]; len(types) != 1 || types[0] != journal.StepSkipped {
					t.Errorf("%s: journal records %v, want only %s", step, types, journal.StepSkipped)
				}
			}
			assertNoSecrets(t, v, []string{state})
		})
	}
}

// installShortLived replaces a certificate and its key in place (keeping
// their modes and owners) by a pair the role issues for 100h, as a
// certificate looks some weeks into its life. A server certificate's
// fullchain.crt, which the listener loads with server.key, is replaced too:
// a reload (the rollback's, say) must find a matching pair.
func installShortLived(t *testing.T, v *testvault.Vault, role, crt, key string) *x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	current := readCert(t, crt)
	data := map[string]any{"common_name": current.Subject.CommonName, "ttl": "100h"}
	if len(current.IPAddresses) > 0 {
		data["ip_sans"] = "127.0.0.1"
	}
	secret, err := v.Root().Logical().WriteWithContext(ctx, "pki-prod/issue/"+role, data)
	if err != nil || secret == nil {
		t.Fatalf("issuing a short-lived certificate of %s: %v", role, err)
	}
	field := func(name string) string {
		pem, ok := secret.Data[name].(string)
		if !ok {
			t.Fatalf("pki-prod/issue/%s returned no %s", role, name)
		}
		return pem + "\n"
	}
	files := map[string]string{crt: field("certificate"), key: field("private_key")}
	if fullchain := filepath.Join(filepath.Dir(crt), "fullchain.crt"); role == "vault-server" {
		files[fullchain] = field("certificate") + field("issuing_ca")
	}
	for path, content := range files {
		// Truncating in place keeps the file's mode and owner.
		if err := os.WriteFile(path, []byte(content), 0); err != nil {
			t.Fatal(err)
		}
	}
	short := readCert(t, crt)
	if left := time.Until(short.NotAfter); left > 100*time.Hour {
		t.Fatalf("the short-lived certificate has %s left", left)
	}
	return short
}

// normalisers replace, in order, what differs between two previews of the
// same plan on two harness Vaults: the harness directory comes first, as
// it holds digits the later patterns would take.
func normalisers(v *testvault.Vault) []func(string) string {
	re := func(pattern, repl string) func(string) string {
		r := regexp.MustCompile(pattern)
		return func(s string) string { return r.ReplaceAllString(s, repl) }
	}
	out := []func(string) string{
		func(s string) string { return strings.ReplaceAll(s, v.Dir, "$DIR") },
		re(`\b[0-9a-f]{2}(:[0-9a-f]{2}){7,}\b`, "SERIAL"),
		re(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z`, "TIME"),
		re(`\b\d+h left\b`, "Nh left"),
		re(`\b\d+ bytes\b`, "N bytes"),
		re(`127\.0\.0\.1:\d+`, "127.0.0.1:PORT"),
		re(`\bpid \d+\b`, "pid PID"),
		re(`\buid \d+\b`, "uid UID"),
		re(`\bVault \d+\.\d+\.\d+([-+][0-9A-Za-z.]+)?`, "Vault VERSION"),
	}
	if os.Geteuid() != 0 {
		// The harness runs Vault as the running user then, and the admin
		// files are the user's too.
		if u, err := user.Current(); err == nil {
			out = append(out, re(`\b`+regexp.QuoteMeta(u.Username)+`\b`, "USER"))
		}
		if g, err := user.LookupGroupId(strconv.Itoa(os.Getegid())); err == nil {
			out = append(out, re(`\b`+regexp.QuoteMeta(g.Name)+`\b`, "GROUP"))
		}
	}
	return out
}

// TestPlanGolden compares the preview of the example rotation, text and
// JSON, with golden files, once what varies from one harness to the next is
// normalised.
func TestPlanGolden(t *testing.T) {
	r := newRotation(t)
	for _, c := range []struct {
		golden string
		extra  []string
	}{
		{"plan.txt", nil},
		{"plan.json", []string{"-json"}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			res := runRotplan(t, r.v.Environ(), r.planArgs("examples/prod.hcl", c.extra...)...)
			if res.exit != 0 {
				t.Fatalf("exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
			got := res.stdout
			for _, n := range normalisers(r.v) {
				got = n(got)
			}
			if strings.Contains(got, "\x1b") {
				t.Fatalf("control sequences in the preview: it is not on a terminal, and golden files hold plain text\n%q", got)
			}
			path := filepath.Join("testdata", "golden", c.golden)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (write it with -update)", err)
			}
			if got != string(want) {
				t.Errorf("the preview differs from %s (rewrite it with -update if the change is meant):\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}
