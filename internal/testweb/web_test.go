package testweb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
)

// TestWeb starts a fleet of four nginx hosts: each serves the leaf in its
// own files, from its own address, to the controller; a reload on one
// host (nginx -s reload in its namespace) changes what that host alone
// serves; and the controller reaches Vault through the forwarder with
// Vault's own certificate, end to end.
func TestWeb(t *testing.T) {
	w := Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	serial := func(s *Site) string {
		t.Helper()
		chain, err := w.Served(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Host.Name, err)
		}
		return chain[0].SerialNumber.String()
	}
	fileSerial := func(s *Site) string {
		t.Helper()
		certs, err := testvault.ReadCertificates(s.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		return certs[0].SerialNumber.String()
	}
	seen := map[string]bool{}
	for _, s := range w.Sites {
		got, want := serial(s), fileSerial(s)
		if got != want {
			t.Errorf("%s serves serial %s, its file holds %s", s.Host.Name, got, want)
		}
		seen[got] = true
		if fi, err := os.Stat(s.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file %s: %v, %v", s.Host.Name, s.KeyFile, fi.Mode(), err)
		}
		if pid, err := os.ReadFile(s.PIDFile); err != nil || len(bytes.TrimSpace(pid)) == 0 {
			t.Errorf("%s: pid file %s: %q, %v", s.Host.Name, s.PIDFile, pid, err)
		}
	}
	if len(seen) != len(w.Sites) {
		t.Errorf("the hosts serve %d distinct leaves, want one each (%d)", len(seen), len(w.Sites))
	}

	// A new leaf on h2 and a reload there: h2 serves it, h1 does not change.
	s1, s2 := w.Sites[0], w.Sites[1]
	before1 := serial(s1)
	leaf, err := w.Vault.IssueLeaf(ctx, App)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s2.KeyFile, leaf.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s2.CertFile, leaf.FullChain, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{s2.Args("-t", "-q"), s2.Args("-s", "reload")} {
		if out, err := s2.Host.Command(ctx, w.Nginx, args...).CombinedOutput(); err != nil {
			t.Fatalf("nginx %v on %s: %v\n%s", args, s2.Host.Name, err, out)
		}
	}
	want := leaf.Cert.SerialNumber.String()
	deadline := time.Now().Add(30 * time.Second)
	for serial(s2) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s still serves its old leaf after the reload", s2.Host.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := serial(s1); got != before1 {
		t.Errorf("%s changed (%s to %s) on %s's reload", s1.Host.Name, before1, got, s2.Host.Name)
	}

	// Vault through the forwarder, from the controller: its own
	// certificate, and an answer to the admin's client certificate.
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(w.Vault.RootCAFile)
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("root CA %s: %v", w.Vault.RootCAFile, err)
	}
	admin, err := tls.LoadX509KeyPair(filepath.Join(w.Vault.AdminDir, "admin.crt"), filepath.Join(w.Vault.AdminDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.Fleet.Controller.Dial(ctx, "tcp", w.VaultAddr[len("https://"):])
	if err != nil {
		t.Fatalf("dialing the forwarder from the controller: %v", err)
	}
	defer raw.Close()
	c := tls.Client(raw, &tls.Config{ServerName: w.Vault.ServerName, RootCAs: roots, Certificates: []tls.Certificate{admin}})
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS to Vault through the forwarder: %v", err)
	}
	direct, err := w.Vault.ServedChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(direct[0]) {
		t.Errorf("through the forwarder the server is %s, Vault's listener is %s", got.Subject, direct[0].Subject)
	}
	req, _ := http.NewRequest("GET", "https://"+w.Vault.ServerName+"/v1/sys/health", nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("Vault's answer through the forwarder: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("sys/health through the forwarder: %s, want 200 (active, unsealed)", resp.Status)
	}
}
