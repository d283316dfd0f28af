package e2e

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/engine/journal"
)

// vaultAudit is a file audit device of a test Vault that logs every
// request and response raw (log_raw: strings as they were, not HMACs):
// what reached Vault, as Vault read it.
type vaultAudit struct {
	path string
}

// enableRawAudit enables a file audit device on the Vault root talks to,
// logging raw into a directory it makes in dir, owned by uid:gid (the
// user Vault runs as, who writes the log). On a cluster the device is
// every node's, all writing to the one file (the nodes share the
// machine's filesystem); a request is logged by the node that serves it.
func enableRawAudit(t *testing.T, ctx context.Context, root *vaultapi.Client, dir string, uid, gid int) *vaultAudit {
	t.Helper()
	auditDir, err := os.MkdirTemp(dir, "audit-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(auditDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(auditDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := &vaultAudit{path: filepath.Join(auditDir, "audit.log")}
	err = root.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &vaultapi.EnableAuditOptions{
		Type:    "file",
		Options: map[string]string{"file_path": a.path, "log_raw": "true"},
	})
	if err != nil {
		t.Fatalf("enabling a file audit device: %v", err)
	}
	return a
}

// signRequest is a request to a PKI mount's sign endpoint, as the audit
// log has it.
type signRequest struct {
	path string
	csr  *x509.CertificateRequest
}

// keyStayedOut reads the audit log and fails the test when any request
// or response held a private key in PEM or any of the lines of the keys
// now installed (keyLines), or when a certificate was asked of an issue
// endpoint (where Vault makes the key). It returns the sign requests, in
// the log's order.
func (a *vaultAudit) keyStayedOut(t *testing.T, keyLines []string) []signRequest {
	t.Helper()
	content := mustRead(t, a.path)
	if strings.Contains(content, "PRIVATE KEY") {
		t.Error("Vault's audit log holds a PEM private key")
	}
	var found []string
	for _, line := range keyLines {
		if strings.Contains(content, line) {
			found = append(found, line)
		}
	}
	if len(found) > 0 {
		t.Errorf("Vault's audit log holds %d of the %d lines of the keys now installed (the first: %.12s…)", len(found), len(keyLines), found[0])
	}
	var out []signRequest
	sc := bufio.NewScanner(strings.NewReader(content))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Type    string
			Request struct {
				Path string
				Data map[string]any
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("an audit entry that is not JSON: %v", err)
		}
		if e.Type != "request" {
			continue
		}
		if strings.Contains(e.Request.Path, "/issue/") {
			t.Errorf("a certificate was issued by Vault, key and all: %s", e.Request.Path)
		}
		if !strings.Contains(e.Request.Path, "/sign/") {
			continue
		}
		s, _ := e.Request.Data["csr"].(string)
		block, _ := pem.Decode([]byte(s))
		if block == nil || block.Type != "CERTIFICATE REQUEST" {
			t.Fatalf("a request to %s without a PEM CSR", e.Request.Path)
		}
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			t.Fatalf("the CSR sent to %s: %v", e.Request.Path, err)
		}
		out = append(out, signRequest{e.Request.Path, csr})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// samePublicKey reports whether the certificate is for the CSR's key.
func samePublicKey(c *x509.Certificate, csr *x509.CertificateRequest) bool {
	k, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(csr.PublicKey)
}

// keysMadeOnHosts fails the test unless the journal shows each step of
// keyPaths (a sign instance, by name, to the key file on its host)
// started as a sign on a host does, naming that file in its intent, and
// succeeded, and no write step ran: the key was generated on the host.
func keysMadeOnHosts(t *testing.T, c *journal.Contents, keyPaths map[string]string) {
	t.Helper()
	started, succeeded := map[string]bool{}, map[string]bool{}
	for _, rec := range c.Records {
		if strings.HasPrefix(rec.Step, "write.") && rec.Type == journal.StepStarted {
			t.Errorf("the journal has %s: a key or certificate was written, not made on the host", rec.Step)
		}
		want, ok := keyPaths[rec.Step]
		switch {
		case !ok:
		case rec.Type == journal.StepStarted:
			started[rec.Step] = true
			if rec.Intent["key_path"] != want {
				t.Errorf("%s started with the intent %v; want the key made at %s on its host", rec.Step, rec.Intent, want)
			}
		case rec.Type == journal.StepSucceeded:
			succeeded[rec.Step] = true
		}
	}
	for step := range keyPaths {
		if !started[step] || !succeeded[step] {
			t.Errorf("the journal has %s started %t, succeeded %t; want both", step, started[step], succeeded[step])
		}
	}
}
