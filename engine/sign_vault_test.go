package engine

import (
	"crypto/tls"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/steps"
)

// signPlan is a plan that has Vault sign a CSR for a key rotplan
// generates and writes the key and the chain into dir, through the
// harness's Vault as its operator reaches it.
func signPlan(v *testvault.Vault, dir string) string {
	return fmt.Sprintf(`
vault {
  address         = %q
  ca_cert         = %q
  tls_server_name = %q
  client_cert     = %q
  client_key      = %q
  auth {
    method = "cert"
    mount  = "cert"
  }
}

sign "leaf" {
  mount             = "pki-prod"
  role              = "vault-server"
  common_name       = "vault.prod.privsec.ch"
  key_type          = "rsa"
  ttl               = "1h"
  revoke_superseded = true
}

write "key" {
  path    = "%s/leaf.key"
  content = sign.leaf.private_key
  mode    = "0600"
}

write "crt" {
  path    = "%s/leaf.crt"
  content = sign.leaf.fullchain
}
`, v.Addr, v.RootCAFile, v.ServerName, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"), dir, dir)
}

// TestSignKeyNeverJournaled runs a sign step through the engine against
// the real Vault, with the steps that write its key: the key reaches its
// file and nothing else, neither the journal nor anything else under the
// state directory. A run killed once the step had started, with no outcome
// journaled, is resumed: the step signs anew (the key was never journaled,
// so there is nothing to take up), and the certificate the killed run may
// have got is named for the operator.
func TestSignKeyNeverJournaled(t *testing.T) {
	v := testvault.StartT(t)
	out := t.TempDir()
	prog := compileWith(t, signPlan(v, out), nil, steps.Default())

	state := t.TempDir()
	j, err := journal.Create(state)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Journal, opts.Rollback = j, true
	report, err := prog.Apply(t.Context(), opts)
	j.Close()
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if n := report.Count(Succeeded); n != 3 {
		t.Fatalf("%d steps succeeded, want 3: %+v", n, report.Steps)
	}
	keyFile, crtFile := filepath.Join(out, "leaf.key"), filepath.Join(out, "leaf.crt")
	pair, err := tls.LoadX509KeyPair(crtFile, keyFile)
	if err != nil {
		t.Fatalf("the written key and certificate: %v", err)
	}
	if len(pair.Certificate) != 2 {
		t.Errorf("leaf.crt holds %d certificates, want the leaf and the issuing CA", len(pair.Certificate))
	}
	keyText, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"PRIVATE KEY"}
	for _, line := range strings.Split(string(keyText), "\n") {
		if len(line) >= 32 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	if len(secrets) < 10 {
		t.Fatalf("the key file holds %d base64 lines; an RSA 2048 key has more", len(secrets)-1)
	}
	noSecretsUnder(t, state, secrets)
	first := loadRun(t, state)
	serial := ""
	for _, f := range first.Steps["sign.leaf"].Facts {
		if f.Name == "serial" {
			serial = f.Value
		}
	}
	if serial == "" {
		t.Fatalf("sign.leaf has no serial among its facts: %+v", first.Steps["sign.leaf"])
	}

	// A run killed while sign.leaf was under way.
	killed := t.TempDir()
	writeJournal(t, killed, journalUpTo(t, state, isRecord(journal.StepStarted, "sign.leaf")))
	if s := loadRun(t, killed).Steps["sign.leaf"]; s.State != StateStarted {
		t.Fatalf("sign.leaf is %+v in the killed run", s)
	}
	report, err = resume(t, prog, killed, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := decisions(report)["sign.leaf"]; got != ActionRedo {
		t.Errorf("sign.leaf: %s on resume, want %s (the key was never journaled)", got, ActionRedo)
	}
	again := loadRun(t, killed).Steps["sign.leaf"]
	for _, f := range again.Facts {
		if f.Name == "serial" && f.Value == serial {
			t.Errorf("the resume kept serial %s: it should have signed anew", serial)
		}
	}
	if _, err := tls.LoadX509KeyPair(crtFile, keyFile); err != nil {
		t.Errorf("after the resume, the written key and certificate: %v", err)
	}
	if !anyHas(report.Warnings, "sign.leaf: a certificate for \"vault.prod.privsec.ch\" may have been issued in pki-prod") {
		t.Errorf("the resume does not name the certificate the killed run may have got: %q", report.Warnings)
	}
	keyText, _ = os.ReadFile(keyFile)
	for _, line := range strings.Split(string(keyText), "\n") {
		if len(line) >= 32 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	noSecretsUnder(t, killed, secrets)
}

// noSecretsUnder fails the test if any file under dir holds one of secrets.
func noSecretsUnder(t *testing.T, dir string, secrets []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds key material (%.16s…)", path, s)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func anyHas(items []string, sub string) bool {
	for _, s := range items {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestSignInvalidArguments: a sign block's bad key arguments are
// diagnostics at the argument, as every kind's are; no Vault is needed.
func TestSignInvalidArguments(t *testing.T) {
	tests := []struct {
		name, attr, value, want string
	}{
		{"key type", "key_type", `"dsa"`, `key_type: must be "ec", "rsa" or "ed25519", not "dsa"`},
		{"key bits", "key_bits", "1024", "key_bits: an ec key of 1024 bits is not one rotplan generates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf(`sign "leaf" {
  mount       = "pki-prod"
  role        = "web"
  common_name = "web.example.com"
  %s = %s
}
`, tt.attr, tt.value)
			_, diags := loadSource(t, src, nil, steps.Default())
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			d := diags[0]
			if !strings.Contains(d.Summary+": "+d.Detail, tt.want) {
				t.Errorf("diagnostic %q: %q, want it to say %q", d.Summary, d.Detail, tt.want)
			}
			if d.Subject == nil || d.Subject.Start.Line != 5 {
				t.Errorf("diagnostic at %v, want line 5 (the %s argument)", d.Subject, tt.attr)
			}
		})
	}
}
