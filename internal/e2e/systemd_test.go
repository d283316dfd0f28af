package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
)

// unitDir is where the example systemd units are.
func unitDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "examples", "systemd")
}

// TestSystemdUnitsVerify: systemd itself accepts the example units (with
// the binary at a path that exists here).
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: cannot check the example units")
	}
	dir := t.TempDir()
	for _, name := range []string{"rotplan-prod.service", "rotplan-prod.timer"} {
		text := mustRead(t, filepath.Join(unitDir(t), name))
		text = strings.ReplaceAll(text, "/usr/local/bin/rotplan", rotplanBin)
		text = strings.ReplaceAll(text, "EnvironmentFile=/etc/rotplan/prod.env", "EnvironmentFile=-/etc/rotplan/prod.env")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "rotplan-prod.service"), filepath.Join(dir, "rotplan-prod.timer")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// execStart reads the service's ExecStart command line, split on spaces
// (the example quotes nothing).
func execStart(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(unitDir(t), "rotplan-prod.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if cmd, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			return strings.Fields(cmd)
		}
	}
	t.Fatal("the example service has no ExecStart")
	return nil
}

// TestSystemdServiceCommand runs the example service's command as the
// timer would, against the prod-like Vault, with the plan installed in
// /etc as the unit says: the first day the certificates are due and are
// rotated (exit 2, a success for the unit), the next day nothing is due
// (exit 0), and the state is under the state home, not in /etc.
func TestSystemdServiceCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the plan is installed in /etc, as the unit has it")
	}
	v := testvault.StartT(t)
	etc, err := os.MkdirTemp("/etc", "rotplan-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	copyFile(t, filepath.Join(repoRoot(t), "examples", "prod.hcl"), filepath.Join(etc, "prod.hcl"), 0o644)
	var vars strings.Builder
	for name, value := range v.PlanVars() {
		switch name {
		case "vault_addr", "server_name", "renew_before":
			continue // from the environment, as in prod.env
		}
		fmt.Fprintf(&vars, "%s = %q\n", name, value)
	}
	if err := os.WriteFile(filepath.Join(etc, "prod.vars.hcl"), []byte(vars.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := execStart(t)
	if argv[0] != "/usr/local/bin/rotplan" || argv[1] != "-chdir=/etc/rotplan" {
		t.Fatalf("ExecStart changed shape: %q", argv)
	}
	args := append([]string{"-chdir=" + etc}, argv[2:]...)
	home := t.TempDir()
	serve := servedSerial(t, v)
	for _, day := range []struct {
		renewBefore string
		exit        int
	}{{"720h", 2}, {"240h", 0}} {
		env := append(v.Environ(), "ROTPLAN_STATE_HOME="+home, "ROTPLAN_VAR_renew_before="+day.renewBefore)
		res := runIn(t, t.TempDir(), env, args...)
		if res.exit != day.exit {
			t.Fatalf("renew_before %s: exit %d, want %d\n%s%s", day.renewBefore, res.exit, day.exit, res.stdout, res.stderr)
		}
	}
	checkRotated(t, v)
	if servedSerial(t, v) == serve {
		t.Error("the first run did not rotate the served certificate")
	}
	if _, err := os.Lstat(filepath.Join(etc, ".rotplan")); err == nil {
		t.Error("state was written in /etc")
	}
	if journals, _ := filepath.Glob(filepath.Join(home, "*", "runs", "*.journal")); len(journals) != 2 {
		t.Errorf("journals under the state home: %v, want two", journals)
	}
}
