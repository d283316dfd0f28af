package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
)

// TestRotation runs examples/prod.hcl with the rotplan binary against the
// prod-like Vault and checks the result from outside, as an operator would
// after the seed's rotation.
func TestRotation(t *testing.T) {
	v := testvault.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	before, err := v.ServedChain(ctx)
	if err != nil {
		t.Fatalf("served chain before the rotation: %v", err)
	}
	adminBefore := readCert(t, filepath.Join(v.AdminDir, "admin.crt"))

	varFile := filepath.Join(v.Dir, "prod.vars.hcl")
	if err := v.WriteVarFile(varFile); err != nil {
		t.Fatal(err)
	}
	res := runRotplan(t, v.Environ(), "run", "-log-level", "trace", "-state-dir", t.TempDir(), "-var-file", varFile, "examples/prod.hcl")
	if res.exit != 0 {
		t.Fatalf("rotplan run exited %d\nstdout:\n%s\nstderr:\n%s", res.exit, res.stdout, res.stderr)
	}
	t.Logf("rotplan stdout:\n%s", res.stdout)

	serverCrt := readCert(t, filepath.Join(v.ServerDir, "server.crt"))
	after, err := v.ServedChain(ctx)
	if err != nil {
		t.Fatalf("served chain after the rotation: %v", err)
	}

	t.Run("listener serves the new server.crt", func(t *testing.T) {
		if after[0].SerialNumber.Cmp(serverCrt.SerialNumber) != 0 {
			t.Errorf("served serial %x, server.crt has %x", after[0].SerialNumber, serverCrt.SerialNumber)
		}
		if after[0].SerialNumber.Cmp(before[0].SerialNumber) == 0 {
			t.Errorf("served serial %x did not change", after[0].SerialNumber)
		}
		if err := after[0].VerifyHostname(v.ServerName); err != nil {
			t.Errorf("served leaf is not valid for %s: %v", v.ServerName, err)
		}
		if err := after[0].VerifyHostname("127.0.0.1"); err != nil {
			t.Errorf("served leaf lacks the IP SAN 127.0.0.1: %v", err)
		}
	})

	t.Run("served chain verifies with only the root", func(t *testing.T) {
		roots := x509.NewCertPool()
		rootPEM, err := os.ReadFile(v.RootCAFile)
		if err != nil || !roots.AppendCertsFromPEM(rootPEM) {
			t.Fatalf("reading root CA %s: %v", v.RootCAFile, err)
		}
		inter := x509.NewCertPool()
		for _, c := range after[1:] {
			inter.AddCert(c)
		}
		if len(after) < 2 {
			t.Fatalf("listener serves %d certificate(s): the intermediate is missing", len(after))
		}
		if _, err := after[0].Verify(x509.VerifyOptions{DNSName: v.ServerName, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("served chain does not verify to the root: %v", err)
		}
	})

	t.Run("vault status works with the new admin cert", func(t *testing.T) {
		adminCrt := readCert(t, filepath.Join(v.AdminDir, "admin.crt"))
		if adminCrt.SerialNumber.Cmp(adminBefore.SerialNumber) == 0 {
			t.Errorf("admin.crt was not replaced (serial %x)", adminCrt.SerialNumber)
		}
		status, err := v.SealStatus(ctx, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
		if err != nil {
			t.Fatalf("vault status with the new admin cert: %v", err)
		}
		if status.Sealed {
			t.Error("Vault reports sealed")
		}
	})

	t.Run("keys match their certificates", func(t *testing.T) {
		for _, pair := range [][2]string{
			{filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")},
			{filepath.Join(v.ServerDir, "server.crt"), filepath.Join(v.ServerDir, "server.key")},
		} {
			if _, err := tls.LoadX509KeyPair(pair[0], pair[1]); err != nil {
				t.Errorf("%s and %s: %v", pair[0], pair[1], err)
			}
		}
	})

	t.Run("chain files", func(t *testing.T) {
		full := readCerts(t, filepath.Join(v.ServerDir, "fullchain.crt"))
		caChain := readCerts(t, filepath.Join(v.ServerDir, "ca_chain.pem"))
		if len(full) != 2 || full[0].SerialNumber.Cmp(serverCrt.SerialNumber) != 0 || full[1].IsCA == false {
			t.Errorf("fullchain.crt should be the server cert then the intermediate; got %d certificates", len(full))
		}
		if len(caChain) != 2 || !caChain[0].IsCA || !bytes.Equal(caChain[1].RawIssuer, caChain[1].RawSubject) {
			t.Errorf("ca_chain.pem should be the intermediate then the self-signed root; got %d certificates", len(caChain))
		}
		if len(full) == 2 && len(caChain) == 2 && !full[1].Equal(caChain[0]) {
			t.Error("fullchain.crt and ca_chain.pem name different intermediates")
		}
	})

	t.Run("modes and owners", func(t *testing.T) {
		owner := v.Owner
		for _, f := range []struct {
			path  string
			mode  os.FileMode
			owner string
		}{
			{filepath.Join(v.AdminDir, "admin.key"), 0o600, ""},
			{filepath.Join(v.AdminDir, "admin.crt"), 0o644, ""},
			{filepath.Join(v.AdminDir, "issuing_ca.pem"), 0o644, ""},
			{filepath.Join(v.ServerDir, "server.key"), 0o600, owner},
			{filepath.Join(v.ServerDir, "server.crt"), 0o644, owner},
			{filepath.Join(v.ServerDir, "fullchain.crt"), 0o644, owner},
			{filepath.Join(v.ServerDir, "ca_chain.pem"), 0o644, owner},
		} {
			checkModeOwner(t, f.path, f.mode, f.owner)
		}
		if os.Geteuid() == 0 && owner != "vaultprod" {
			t.Errorf("running as root, Vault should run as vaultprod, not %q", owner)
		}
		if os.Geteuid() != 0 {
			t.Log("not root: the server files belong to the current user instead of vaultprod")
		}
	})

	t.Run("no private key in output", func(t *testing.T) {
		out := res.stdout + res.stderr
		if strings.Contains(out, "PRIVATE KEY") {
			t.Error("rotplan's output contains a PEM private key header")
		}
		for _, keyFile := range []string{filepath.Join(v.AdminDir, "admin.key"), filepath.Join(v.ServerDir, "server.key")} {
			for _, line := range pemBodyLines(t, keyFile) {
				if strings.Contains(out, line) {
					t.Errorf("rotplan's output contains a line of %s", keyFile)
					break
				}
			}
		}
		if !strings.Contains(res.stderr, "[TRACE]") && !strings.Contains(res.stderr, "[DEBUG]") {
			t.Error("expected trace/debug log lines on stderr: the test must look at every log level")
		}
	})
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	return readCerts(t, path)[0]
}

func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := testvault.ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// pemBodyLines returns the base64 lines of a PEM file, the text that would
// show if a key leaked into output.
func pemBodyLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if len(l) >= 40 && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("%s has no PEM body", path)
	}
	return lines
}
