package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
)

// The Vault configuration kinds, run by the binary as an operator runs
// them, with the admin identity; the root back door only sets up and
// inspects.

// displaySecret is given through a sensitive variable: it must show in no
// output, journal or log.
const displaySecret = "e2e-display-name-that-must-never-be-printed"

const vaultcfgHead = `variable "ca_file" {
  type = string
}
variable "display" {
  type      = string
  sensitive = true
}

vault_auth "cert" {
  path = "cert"
  type = "cert"
}

vault_auth "extra" {
  path = "cert-e2e"
  type = "cert"
}

vault_policy "issue" {
  name   = "pki-issue-e2e"
  policy = <<-EOT
    path "pki-prod/issue/agent-mtls-e2e" {
      capabilities = ["update"]
    }
  EOT
}

vault_write "mapping" {
  depends_on = [vault_auth.cert]
  path       = "auth/cert/certs/agent-e2e"
  data = {
    certificate          = file(var.ca_file)
    allowed_common_names = ["agent-e2e.prod.privsec.ch"]
    token_policies       = [vault_policy.issue.name, "marker-cert-auth"]
    token_ttl            = "1h"
  }
}
`

const vaultcfgSecret = `
vault_write "fresh" {
  path = "auth/cert/certs/agent-e2e-new"
  data = {
    certificate  = file(var.ca_file)
    display_name = var.display
  }
}
`

const vaultcfgFailing = `
verify "fails" {
  depends_on = [vault_write.mapping, vault_write.fresh, vault_auth.extra]
  timeout    = "1s"
  interval   = "250ms"
  tls {
    address     = env("VAULT_ADDR", "")
    server_name = "vault.wrong.privsec.ch"
    ca_file     = var.ca_file
  }
}
`

// vaultcfgBefore sets up what the plan finds: an older policy and mapping.
const policyBefore = "path \"pki-prod/issue/agent-mtls-e2e\" {\n  capabilities = [\"read\"]\n}"

func writePlanFile(t *testing.T, text string) string {
	t.Helper()
	plan := filepath.Join(t.TempDir(), "agents.hcl")
	if err := os.WriteFile(plan, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return plan
}

// grepTree reports the files under dir that hold s.
func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var found []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
				found = append(found, p)
			}
		}
		return nil
	})
	return found
}

func TestVaultConfigurationSteps(t *testing.T) {
	v := testvault.StartT(t)
	root := v.Root()
	if err := root.Sys().PutPolicy("pki-issue-e2e", policyBefore); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/cert/certs/agent-e2e", map[string]any{
		"certificate":          readFile(t, v.RootCAFile),
		"allowed_common_names": "agent-e2e.prod.privsec.ch",
		"token_policies":       "marker-cert-auth",
		"token_ttl":            "30m",
	}); err != nil {
		t.Fatal(err)
	}
	mappingBefore := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e")
	vars := []string{"-var", "ca_file=" + v.RootCAFile, "-var", "display=" + displaySecret}

	t.Run("preview", func(t *testing.T) {
		plan := writePlanFile(t, vaultcfgHead+vaultcfgSecret)
		res := runRotplan(t, v.Environ(), append(append([]string{"plan"}, vars...), plan)...)
		if res.exit != 0 {
			t.Fatalf("plan exit %d\n%s%s", res.exit, res.stdout, res.stderr)
		}
		t.Logf("stdout:\n%s", res.stdout)
		for _, want := range []string{
			`~ token_policies: ["marker-cert-auth"] -> ["pki-issue-e2e", "marker-cert-auth"]`,
			`~ token_ttl: 1800 -> "1h"`,
			`= allowed_common_names: ["agent-e2e.prod.privsec.ch"]`,
			`+ display_name: (sensitive)`,
			`= auth/cert: cert`,
			`+ auth/cert-e2e: cert`,
			`~ policy: (3 lines, sha256 `,
			`= vault_auth.cert: no change, already enabled`,
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("preview lacks %q", want)
			}
		}
		res = runRotplan(t, v.Environ(), append(append([]string{"plan", "-json"}, vars...), plan)...)
		if !strings.Contains(res.stdout, `"field": "token_policies"`) || !strings.Contains(res.stdout, `"sensitive": true`) {
			t.Errorf("plan -json lacks the fields:\n%s", res.stdout)
		}
		if strings.Contains(res.stdout, displaySecret) {
			t.Error("plan -json shows the sensitive value")
		}
	})

	t.Run("rolled back", func(t *testing.T) {
		plan := writePlanFile(t, vaultcfgHead+vaultcfgSecret+vaultcfgFailing)
		state := t.TempDir()
		res := runRotplan(t, v.Environ(), append(append([]string{"run", "-state-dir", state}, vars...), plan)...)
		if res.exit != exitRolledBack {
			t.Fatalf("exit %d, want %d\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
		}
		if got := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e"); !reflect.DeepEqual(got, mappingBefore) {
			t.Errorf("mapping after rollback:\n%#v\nwant as before:\n%#v", got, mappingBefore)
		}
		if got, _ := root.Sys().GetPolicy("pki-issue-e2e"); got != policyBefore {
			t.Errorf("policy after rollback %q, want the text before byte for byte", got)
		}
		if got := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e-new"); got != nil {
			t.Error("rollback left the mapping the run created")
		}
		auths, _ := root.Sys().ListAuth()
		if auths["cert-e2e/"] != nil || auths["cert/"] == nil {
			t.Errorf("auth methods after rollback: cert-e2e %v (the run enabled it), cert %v (there before)", auths["cert-e2e/"] != nil, auths["cert/"] != nil)
		}
		if files := grepTree(t, state, displaySecret); len(files) > 0 || strings.Contains(res.stdout+res.stderr, displaySecret) {
			t.Errorf("the sensitive value is in %v or the output", files)
		}
		if files := grepTree(t, state, "BEGIN CERTIFICATE"); len(files) == 0 {
			t.Log("(the journal keeps no previous certificate text: fine if so)")
		}
	})

	t.Run("applied, then no change", func(t *testing.T) {
		plan := writePlanFile(t, vaultcfgHead)
		state := t.TempDir()
		res := runRotplan(t, v.Environ(), append(append([]string{"run", "-state-dir", state}, vars...), plan)...)
		if res.exit != 0 {
			t.Fatalf("exit %d\n%s%s", res.exit, res.stdout, res.stderr)
		}
		got := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e")
		if !reflect.DeepEqual(got["token_policies"], []any{"pki-issue-e2e", "marker-cert-auth"}) {
			t.Errorf("token_policies %v", got["token_policies"])
		}
		res = runRotplan(t, v.Environ(), append(append([]string{"plan", "-detailed-exitcode"}, vars...), plan)...)
		if res.exit != 0 {
			t.Errorf("plan after the run: exit %d, want 0 (no change)\n%s%s", res.exit, res.stdout, res.stderr)
		}
		// The run found what it declares in place: no change, and says so.
		res = runRotplan(t, v.Environ(), append(append([]string{"run", "-state-dir", t.TempDir(), "-detailed-exitcode"}, vars...), plan)...)
		if res.exit != 0 {
			t.Errorf("second run: exit %d, want 0\n%s%s", res.exit, res.stdout, res.stderr)
		}
		auths, _ := root.Sys().ListAuth()
		if auths["cert-e2e/"] == nil {
			t.Error("cert-e2e not enabled")
		}
		if err := root.Sys().DisableAuth("cert-e2e"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("secret field of an existing entry", func(t *testing.T) {
		plan := writePlanFile(t, vaultcfgHead+vaultcfgSecret)
		if _, err := root.Logical().Write("auth/cert/certs/agent-e2e-new", map[string]any{
			"certificate": readFile(t, v.RootCAFile), "display_name": "old",
		}); err != nil {
			t.Fatal(err)
		}
		// No copy of the old secret: refused, and the rest rolled back.
		state := t.TempDir()
		res := runRotplan(t, v.Environ(), append(append([]string{"run", "-state-dir", state}, vars...), plan)...)
		if res.exit != exitRolledBack || !strings.Contains(res.stderr, "-rollback=false") {
			t.Errorf("exit %d, want %d and the way out\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
		}
		if got := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e-new"); got["display_name"] != "old" {
			t.Errorf("display_name %v after the refusal", got["display_name"])
		}
		// Without a rollback, nothing to lose: it is written.
		res = runRotplan(t, v.Environ(), append(append([]string{"run", "-rollback=false", "-state-dir", t.TempDir()}, vars...), plan)...)
		if res.exit != 0 {
			t.Errorf("-rollback=false: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
		}
		if got := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e-new"); got["display_name"] != displaySecret {
			t.Error("display_name not written with -rollback=false")
		}
		if files := grepTree(t, state, displaySecret); len(files) > 0 || strings.Contains(res.stdout+res.stderr, displaySecret) {
			t.Errorf("the sensitive value is in %v or the output", files)
		}
		if _, err := root.Logical().Delete("auth/cert/certs/agent-e2e-new"); err != nil {
			t.Fatal(err)
		}
		if err := root.Sys().DisableAuth("cert-e2e"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad paths", func(t *testing.T) {
		plan := writePlanFile(t, `variable "ca_file" {
  type = string
}

vault_policy "first" {
  name   = "pki-issue-never"
  policy = "path \"x\" { capabilities = [\"read\"] }"
}

vault_write "denied" {
  depends_on = [vault_policy.first]
  path       = "auth/cert/certs/admin"
  data = {
    token_ttl = "1h"
  }
}

vault_write "missing" {
  depends_on = [vault_policy.first]
  path = "auth/nosuch/certs/agent-x"
  data = {
    token_ttl = "1h"
  }
}
`)
		res := runRotplan(t, v.Environ(), "plan", "-var", "ca_file="+v.RootCAFile, plan)
		if res.exit != 1 {
			t.Errorf("plan exit %d, want 1", res.exit)
		}
		t.Logf("plan's stderr:\n%s", res.stderr)
		for _, want := range []string{
			plan + ":12:16: error: Would fail: vault_write.denied",
			"path: reading auth/cert/certs/admin: permission denied: the token's policies must allow read",
			plan + ":20:10: error: Would fail: vault_write.missing",
			"path: Vault has nothing mounted at auth/nosuch/certs/agent-x",
		} {
			if !strings.Contains(res.stderr, want) {
				t.Errorf("plan's stderr lacks %q:\n%s", want, res.stderr)
			}
		}
		res = runRotplan(t, v.Environ(), "run", "-state-dir", t.TempDir(), "-var", "ca_file="+v.RootCAFile, plan)
		if res.exit == 0 || !regexp.MustCompile(regexp.QuoteMeta(plan)+`:12:16: error: .*vault_write.denied`).MatchString(res.stderr) {
			t.Errorf("run: exit %d\n%s", res.exit, res.stderr)
		}
		if p, _ := root.Sys().GetPolicy("pki-issue-never"); p != "" {
			t.Error("the run changed Vault before refusing")
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVaultConfigurationCrashes kills rotplan at every journal boundary of
// a plan of the three Vault kinds, with Vault as before the run each time,
// and resumes: Vault ends as the plan declares, and each step the kill
// interrupted was either found done in Vault (Resumer.Done) or run again.
func TestVaultConfigurationCrashes(t *testing.T) {
	v := testvault.StartT(t)
	root := v.Root()
	caPEM := readFile(t, v.RootCAFile)
	reset := func(t *testing.T) {
		t.Helper()
		if err := root.Sys().PutPolicy("pki-issue-e2e", policyBefore); err != nil {
			t.Fatal(err)
		}
		if _, err := root.Logical().Write("auth/cert/certs/agent-e2e", map[string]any{
			"certificate": caPEM, "allowed_common_names": "agent-e2e.prod.privsec.ch",
			"token_policies": "marker-cert-auth", "token_ttl": "30m",
		}); err != nil {
			t.Fatal(err)
		}
		if err := root.Sys().DisableAuth("cert-e2e"); err != nil {
			t.Fatal(err)
		}
	}
	declared := func(t *testing.T) {
		t.Helper()
		got := testvault.ReadData(t, root, "auth/cert/certs/agent-e2e")
		if !reflect.DeepEqual(got["token_policies"], []any{"pki-issue-e2e", "marker-cert-auth"}) || got["token_ttl"] != json.Number("3600") {
			t.Errorf("mapping: policies %v ttl %v", got["token_policies"], got["token_ttl"])
		}
		if p, _ := root.Sys().GetPolicy("pki-issue-e2e"); !strings.Contains(p, `["update"]`) {
			t.Errorf("policy %q", p)
		}
		if auths, _ := root.Sys().ListAuth(); auths["cert-e2e/"] == nil {
			t.Error("cert-e2e not enabled")
		}
	}
	plan := writePlanFile(t, vaultcfgHead)
	args := func(cmd, state string) []string {
		return []string{cmd, "-state-dir", state, "-var", "ca_file=" + v.RootCAFile, "-var", "display=x"}
	}

	reset(t)
	state := t.TempDir()
	if res := runRotplan(t, v.Environ(), append(args("run", state), plan)...); res.exit != 0 {
		t.Fatalf("uninterrupted run exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	declared(t)
	total := len(readJournal(t, state).Records)

	checked := 0
	for n := 1; n <= total; n++ {
		for _, fp := range []string{fmt.Sprintf("before:%d", n), fmt.Sprintf("after:%d", n)} {
			if fp == "before:1" {
				continue
			}
			t.Run(strings.ReplaceAll(fp, ":", "_"), func(t *testing.T) {
				reset(t)
				state := t.TempDir()
				res := runBinary(t, crashBin, append(v.Environ(), "ROTPLAN_FAILPOINT="+fp), append(args("run", state), plan)...)
				if res.exit != -1 {
					t.Fatalf("rotplan exited %d instead of being killed\n%s%s", res.exit, res.stdout, res.stderr)
				}
				killed, err := engine.LoadRun(state)
				if err != nil {
					t.Fatal(err)
				}
				res = runRotplan(t, v.Environ(), append(args("resume", state), plan)...)
				if res.exit != 0 {
					t.Fatalf("resume exited %d\n%s%s", res.exit, res.stdout, res.stderr)
				}
				declared(t)
				after, err := engine.LoadRun(state)
				if err != nil {
					t.Fatal(err)
				}
				if after.Status != journal.StatusSucceeded {
					t.Errorf("journal after resume: %q", after.Status)
				}
				for addr, s := range killed.Steps {
					if s.State != engine.StateStarted {
						continue
					}
					a := after.Steps[addr]
					if !a.Checked && a.Redone == "" {
						t.Errorf("%s was started at the kill; the journal shows neither a check nor why it ran again", addr)
					}
					if a.Checked {
						checked++
					}
				}
			})
		}
	}
	if checked == 0 {
		t.Error("no resume found a step done in Vault")
	}
	t.Logf("%d records; %d interrupted steps found done in Vault by resume", total, checked)
}
