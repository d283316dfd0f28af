package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
)

// checksPlan restarts a service (a command, as systemctl restart would be)
// and then logs in with cert auth as the admin, reporting how long after
// the restart the login first passed.
const checksPlan = `
variable "vault_addr" {}
variable "server_name" {}
variable "ca_file" {}
variable "admin_dir" {}
variable "policy" { default = "rotplan-admin" }

reload "service" {
  command = ["/bin/true"]
}

verify "login" {
  timeout = "5s"
  since   = reload.service.at
  vault_login {
    address         = var.vault_addr
    server_name     = var.server_name
    ca_file         = var.ca_file
    client_cert     = "${var.admin_dir}/admin.crt"
    client_key      = "${var.admin_dir}/admin.key"
    name            = "admin"
    expect_policies = [var.policy]
  }
}
`

// TestLoginCheckReportsTimeSinceRestart runs a cert login check after a
// restart through the binary: the progress line and the journal (status)
// say how long after the restart it passed, and no token shows anywhere.
// With a policy the mapping does not give, the run fails.
func TestLoginCheckReportsTimeSinceRestart(t *testing.T) {
	v := testvault.StartT(t)
	dir := planDir(t, checksPlan, nil)
	vars := []string{
		"-var", "vault_addr=" + v.Addr, "-var", "server_name=" + v.ServerName,
		"-var", "ca_file=" + v.RootCAFile, "-var", "admin_dir=" + v.AdminDir,
	}
	res := runIn(t, dir, v.Environ(), append(append([]string{"run"}, vars...), "plan.hcl")...)
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	line := regexp.MustCompile(`(?m)^verify\.login +ok +\S+  passed \d\S*s after the reload$`)
	if !line.MatchString(res.stdout) {
		t.Errorf("no progress line saying how long after the restart the check passed:\n%s", res.stdout)
	}
	status := runIn(t, dir, nil, "status", "plan.hcl")
	t.Logf("run:\n%sstatus:\n%s", res.stdout, status.stdout)
	if status.exit != 0 || !regexp.MustCompile(`passed_after[=: ]+\d\S*s`).MatchString(status.stdout) || !strings.Contains(status.stdout, "rotplan-admin") {
		t.Errorf("status: exit %d, want passed_after and the policies among the facts\n%s%s", status.exit, status.stdout, status.stderr)
	}
	res = runIn(t, dir, v.Environ(), append(append([]string{"run"}, vars...), "-var", "policy=pki-issue-ncprd1", "plan.hcl")...)
	if res.exit == 0 || !strings.Contains(res.stderr, "without pki-issue-ncprd1") {
		t.Errorf("run with a policy the mapping lacks: exit %d, want a failure naming it\n%s%s", res.exit, res.stdout, res.stderr)
	}
	// No token in the output, the log or the journal.
	var everything strings.Builder
	everything.WriteString(res.stdout + res.stderr + status.stdout)
	filepath.Walk(filepath.Join(dir, ".rotplan"), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(path)
			everything.Write(b)
		}
		return nil
	})
	if strings.Contains(everything.String(), "hvs.") {
		t.Error("a Vault token shows in the output or the state directory")
	}
}
