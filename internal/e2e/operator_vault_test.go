package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
)

// operatorDir copies examples/prod.hcl into a directory of its own with a
// variable file that leaves vault_addr and server_name out: an operator's
// checkout, where Vault is found through the exported VAULT_* variables.
func operatorDir(t *testing.T, v *testvault.Vault) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join(repoRoot(t), "examples", "prod.hcl"), filepath.Join(dir, "prod.hcl"), 0o644)
	var b strings.Builder
	for name, value := range v.PlanVars() {
		if name == "vault_addr" || name == "server_name" {
			continue
		}
		fmt.Fprintf(&b, "%s = %q\n", name, value)
	}
	if err := os.WriteFile(filepath.Join(dir, "prod.vars.hcl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOperatorRotation runs the reference rotation as an operator does:
// from the plan's directory, relative paths, the default state directory,
// and Vault's address and TLS name from VAULT_ADDR and
// VAULT_TLS_SERVER_NAME (the harness listens on a port of its own, so the
// plan's built-in default would not reach it). The result is checked from
// outside: the served serial is the new server.crt's.
func TestOperatorRotation(t *testing.T) {
	v := testvault.StartT(t)
	dir := operatorDir(t, v)
	before := servedSerial(t, v)
	res := runIn(t, dir, v.Environ(), "plan", "-var-file", "prod.vars.hcl", "prod.hcl")
	if res.exit != 0 || !strings.Contains(res.stdout, v.Addr) {
		t.Fatalf("plan: exit %d, want 0 and the exported VAULT_ADDR %s in the preview\n%s%s", res.exit, v.Addr, res.stdout, res.stderr)
	}
	res = runIn(t, dir, v.Environ(), "run", "-var-file", "prod.vars.hcl", "prod.hcl")
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkRotated(t, v)
	if after := servedSerial(t, v); after == before {
		t.Errorf("the served serial %s did not change", after)
	}
	if _, err := os.Stat(filepath.Join(dir, ".rotplan", "runs", "000001.journal")); err != nil {
		t.Errorf("the journal is not in the default state directory: %v", err)
	}
	if res := runIn(t, dir, nil, "status", "prod.hcl"); res.exit != 0 || !strings.Contains(res.stdout, "succeeded") {
		t.Errorf("status: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	// From a daily timer: with the seed's renew_before (240h), the
	// certificates just issued (720h) are not due; -detailed-exitcode says
	// nothing was rotated, and nothing was.
	rotated := servedSerial(t, v)
	res = runIn(t, dir, v.Environ(), "run", "-detailed-exitcode", "-var-file", "prod.vars.hcl", "-var", "renew_before=240h", "prod.hcl")
	if res.exit != 0 || !strings.Contains(res.stdout, "Nothing to do") {
		t.Errorf("a run with nothing due: exit %d, want 0 and \"Nothing to do\"\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if now := servedSerial(t, v); now != rotated {
		t.Errorf("a run with nothing due changed the served serial from %s to %s", rotated, now)
	}
}

// TestMountTypo: a mistyped PKI mount reads as "permission denied" to the
// admin token, whose policy covers the real mount only. plan and run must
// point at the mount, suggest the real one, and not dump Vault's raw
// HTTP error.
func TestMountTypo(t *testing.T) {
	v := testvault.StartT(t)
	dir := operatorDir(t, v)
	src := mustRead(t, filepath.Join(dir, "prod.hcl"))
	typo := strings.Replace(src, `issue "admin" {
  mount             = "pki-prod"`, `issue "admin" {
  mount             = "pki-prd"`, 1)
	if typo == src {
		t.Fatal("examples/prod.hcl changed shape: no admin mount to mistype")
	}
	if err := os.WriteFile(filepath.Join(dir, "prod.hcl"), []byte(typo), 0o644); err != nil {
		t.Fatal(err)
	}
	at := sourcePosition(t, typo, `"pki-prd"`)
	for _, args := range [][]string{
		{"plan", "-var-file", "prod.vars.hcl", "prod.hcl"},
		{"run", "-var-file", "prod.vars.hcl", "prod.hcl"},
	} {
		res := runIn(t, dir, v.Environ(), args...)
		t.Logf("%s: exit %d\n%s", args[0], res.exit, res.stderr)
		if res.exit == 0 {
			t.Fatalf("%s: exit 0 with a mistyped mount", args[0])
		}
		if !strings.Contains(res.stderr, "prod.hcl:"+at+": error:") || !strings.Contains(res.stderr, `did you mean "pki-prod"?`) {
			t.Errorf("%s: the error should be at the mount (%s) and suggest pki-prod:\n%s", args[0], at, res.stderr)
		}
		if strings.Contains(res.stderr, "Error making API request") || strings.Contains(res.stderr, "URL:") {
			t.Errorf("%s: Vault's raw error is shown:\n%s", args[0], res.stderr)
		}
	}
}

// TestSavedPlanRotation: a saved plan of the reference rotation runs as
// reviewed; one made before the certificates changed under it is refused,
// naming the certificate in use that moved, and changes nothing.
func TestSavedPlanRotation(t *testing.T) {
	v := testvault.StartT(t)
	dir := operatorDir(t, v)
	plan := func() {
		t.Helper()
		if res := runIn(t, dir, v.Environ(), "plan", "-out", "prod.plan", "-var-file", "prod.vars.hcl", "prod.hcl"); res.exit != 0 {
			t.Fatalf("plan -out: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
		}
	}
	plan()
	// Reality moves: the certificates are rotated by another run.
	if res := runIn(t, dir, v.Environ(), "run", "-state-dir", t.TempDir(), "-var-file", "prod.vars.hcl", "prod.hcl"); res.exit != 0 {
		t.Fatalf("the other run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	served := servedSerial(t, v)
	res := runIn(t, dir, v.Environ(), "run", "prod.plan")
	if res.exit != 2 || !strings.Contains(res.stderr, "issue.server: what it acts on changed (was current: serial ") {
		t.Errorf("run of a stale saved plan: exit %d, want 2 naming issue.server's current certificate\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if now := servedSerial(t, v); now != served {
		t.Errorf("a refused run changed the served serial from %s to %s", served, now)
	}
	plan()
	res = runIn(t, dir, v.Environ(), "run", "prod.plan")
	if res.exit != 0 {
		t.Fatalf("run of a fresh saved plan: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkRotated(t, v)
	if now := servedSerial(t, v); now == served {
		t.Error("the saved plan's run did not rotate the served certificate")
	}
	if strings.Contains(mustRead(t, filepath.Join(dir, "prod.plan")), "PRIVATE KEY") {
		t.Error("the saved plan holds a private key")
	}
}
