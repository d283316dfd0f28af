package testvault

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// startProxy starts a harness Vault with the edge proxy for the seed's
// apps; it skips when not root or nginx is missing.
func startProxy(t *testing.T) (*Vault, *Proxy) {
	t.Helper()
	skipWithoutProxy(t)
	v := StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	p, err := v.StartProxy(ctx, SeedApps()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("proxy for %v up in %s: %s (master pid %d)", p.Apps, time.Since(start).Round(time.Millisecond), p.HostPort, p.PID())
	return v, p
}

// skipWithoutProxy skips when a Vault binary is set but the proxy cannot
// run: not root, or no nginx (without a binary StartT skips).
func skipWithoutProxy(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvBinary) != "" {
		if os.Geteuid() != 0 {
			t.Skip("testvault: the edge proxy's nginx drops its workers to user proxyprod: this test needs root")
		}
		if _, err := NginxBinary(); err != nil {
			t.Skipf("testvault: skipping the edge proxy test: %v", err)
		}
	}
}

// edgeHealthy checks that the Vault edge answers seal-status (unsealed)
// through the proxy for the admin certificate.
func edgeHealthy(ctx context.Context, v *Vault, p *Proxy) error {
	st, err := p.SealStatus(ctx, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
	if err != nil {
		return err
	}
	if st.Sealed || !st.Initialized {
		return fmt.Errorf("seal-status through the proxy: sealed=%t initialized=%t", st.Sealed, st.Initialized)
	}
	return nil
}

func TestProxy(t *testing.T) {
	v, p := startProxy(t)
	ctx := context.Background()
	root := readCerts(t, v.RootCAFile)[0]
	inter := readCerts(t, filepath.Join(v.ServerDir, "ca_chain.pem"))[0]

	t.Run("master as root, workers as proxyprod", func(t *testing.T) {
		if p.User != ProxyUser {
			t.Errorf("user %s, want %s", p.User, ProxyUser)
		}
		if uid := procUID(t, p.PID()); uid != 0 {
			t.Errorf("master %d runs as uid %d, want root", p.PID(), uid)
		}
		workers := p.WorkerPIDs()
		if len(workers) == 0 {
			t.Fatal("no workers")
		}
		for _, w := range workers {
			if uid := procUID(t, w); uid != p.UID {
				t.Errorf("worker %d runs as uid %d, want %d (%s)", w, uid, p.UID, p.User)
			}
		}
	})

	t.Run("each app's SNI serves its leaf", func(t *testing.T) {
		for _, app := range p.Apps {
			chain, err := p.ServedChain(ctx, LeafName(app))
			if err != nil {
				t.Fatal(err)
			}
			leaf := chain[0]
			if !slices.Equal(leaf.DNSNames, []string{app + ".prod.privsec.ch"}) {
				t.Errorf("%s: served names %v", app, leaf.DNSNames)
			}
			verify(t, leaf, chain[1:], root, x509.ExtKeyUsageServerAuth, LeafName(app))
			fullchain, _ := p.LeafFiles(app)
			onDisk := readCerts(t, fullchain)
			if len(onDisk) != 2 || !onDisk[0].Equal(leaf) || !onDisk[1].Equal(inter) {
				t.Errorf("%s: the fullchain file is not the served leaf plus the intermediate", app)
			}
		}
		if _, err := p.ServedChain(ctx, "other.prod.privsec.ch"); err == nil {
			t.Error("a name the proxy does not serve got a certificate")
		}
	})

	t.Run("vault edge", func(t *testing.T) {
		if err := edgeHealthy(ctx, v, p); err != nil {
			t.Fatal(err)
		}
		chain, err := p.ServedChain(ctx, v.ServerName)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, chain[0], chain[1:], root, x509.ExtKeyUsageServerAuth, v.ServerName)
		// The edge asks its clients for a certificate, as Vault does.
		if _, err := p.SealStatus(ctx, "", ""); err == nil {
			t.Error("seal-status through the edge without a client certificate passed")
		}
		// nginx routes by Host: addressed as 127.0.0.1 the edge refuses.
		admin, adminKey := filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")
		if _, err := v.sealStatusAt(ctx, "https://"+p.HostPort, "", admin, adminKey); err == nil || !strings.Contains(err.Error(), "421") {
			t.Errorf("seal-status through the edge with Host 127.0.0.1: %v, want a 421", err)
		}
		// Cert logins through the edge would log in with the proxy's
		// certificate: refused.
		c, err := vaultapi.NewClient(&vaultapi.Config{Address: p.Addr, HttpClient: edgeHTTPClient(t, v, p)})
		if err != nil {
			t.Fatal(err)
		}
		c.ClearToken()
		if _, err := c.Logical().WriteWithContext(ctx, "auth/cert/login", nil); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("cert login through the edge: %v, want a 403", err)
		}
	})

	t.Run("role refuses names outside the app's domain", func(t *testing.T) {
		app := p.Apps[0]
		for _, cn := range []string{
			LeafName(p.Apps[1]), "*." + LeafName(app), "www." + LeafName(app), "prod.privsec.ch", "localhost",
		} {
			if _, err := v.Root().Logical().WriteWithContext(ctx, "pki-prod/issue/"+LeafRole(app), map[string]any{"common_name": cn}); err == nil {
				t.Errorf("role %s issued for %q", LeafRole(app), cn)
			}
		}
		s, err := v.Root().Logical().ReadWithContext(ctx, "pki-prod/roles/"+LeafRole(app))
		if err != nil || s == nil {
			t.Fatalf("role %s: %v", LeafRole(app), err)
		}
		for k, want := range map[string]any{
			"allow_bare_domains": true, "allow_subdomains": false, "allow_wildcard_certificates": false,
			"allow_glob_domains": false, "enforce_hostnames": true, "server_flag": true, "client_flag": false,
		} {
			if got := s.Data[k]; got != want {
				t.Errorf("role %s: %s = %v, want %v", LeafRole(app), k, got, want)
			}
		}
	})

	t.Run("stale chain breaks the edge after a reload", func(t *testing.T) {
		good, err := os.ReadFile(p.CAChainFile)
		if err != nil {
			t.Fatal(err)
		}
		// A certificate that signed nothing of the harness.
		other := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfSigned(t, "rotplan test stale CA").Certificate[0]})
		if err := writeFileOwned(p.CAChainFile, other, 0o644, p.UID, p.GID); err != nil {
			t.Fatal(err)
		}
		// Not before nginx reads it again.
		if err := edgeHealthy(ctx, v, p); err != nil {
			t.Fatalf("before the reload: %v", err)
		}
		if err := p.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		err = edgeHealthy(ctx, v, p)
		if err == nil || !strings.Contains(err.Error(), "502") {
			t.Errorf("with a wrong current-ca-chain.pem: %v, want a 502", err)
		}
		if b, _ := os.ReadFile(p.ErrorLog); !strings.Contains(string(b), "upstream SSL certificate verify error") {
			t.Errorf("%s does not say that the upstream certificate did not verify", p.ErrorLog)
		}
		if err := writeFileOwned(p.CAChainFile, good, 0o644, p.UID, p.GID); err != nil {
			t.Fatal(err)
		}
		if err := p.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if err := edgeHealthy(ctx, v, p); err != nil {
			t.Errorf("with the right chain again: %v", err)
		}
	})

	t.Run("reload serves a new leaf", func(t *testing.T) {
		app := p.Apps[1]
		workers := p.WorkerPIDs()
		master := p.PID()
		leaf, err := p.ReplaceLeaf(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := p.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("reload: new workers serve after %s", time.Since(start).Round(time.Millisecond))
		chain, err := p.ServedChain(ctx, LeafName(app))
		if err != nil {
			t.Fatal(err)
		}
		if chain[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Errorf("served serial %x, want the new %x", chain[0].SerialNumber, leaf.SerialNumber)
		}
		if p.PID() != master {
			t.Errorf("reload changed the master pid %d to %d", master, p.PID())
		}
		for _, w := range p.WorkerPIDs() {
			if slices.Contains(workers, w) {
				t.Errorf("worker %d survived the reload", w)
			}
		}
	})

	t.Run("restart gives a new master", func(t *testing.T) {
		old := p.PID()
		start := time.Now()
		pid, err := p.Restart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restart: new master accepts TLS after %s", time.Since(start).Round(time.Millisecond))
		if pid == old || pid != p.PID() || pid == 0 {
			t.Errorf("restart: pid %d, old %d, PID() %d", pid, old, p.PID())
		}
		if b, err := os.ReadFile(p.PIDFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
			t.Errorf("pid file %s: %q, %v; want %d", p.PIDFile, b, err, pid)
		}
		if err := edgeHealthy(ctx, v, p); err != nil {
			t.Error(err)
		}
	})

	t.Run("restart command", func(t *testing.T) {
		old := p.PID()
		if out, err := exec.Command(p.RestartCommand, "reload").CombinedOutput(); err != nil {
			t.Fatalf("%s reload: %v: %s", p.RestartCommand, err, out)
		}
		if p.PID() != old {
			t.Errorf("reload through the command changed the master pid")
		}
		if out, err := exec.Command(p.RestartCommand).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", p.RestartCommand, err, out)
		}
		if p.PID() == old || p.PID() == 0 {
			t.Errorf("restart through the command: pid %d, old %d", p.PID(), old)
		}
		if _, err := p.ServedChain(ctx, LeafName(p.Apps[0])); err != nil {
			t.Error(err)
		}
	})

	t.Run("broken config is not reloaded", func(t *testing.T) {
		_, key := p.LeafFiles(p.Apps[0])
		good, err := os.ReadFile(key)
		if err != nil {
			t.Fatal(err)
		}
		_, other := p.LeafFiles("vault")
		otherKey, err := os.ReadFile(other)
		if err != nil {
			t.Fatal(err)
		}
		// A key file that holds no key: nginx -t fails. (A key that does
		// not match the certificate passes nginx -t here: nginx 1.22 with
		// OpenSSL 3 fails only the handshakes then.)
		if err := writeFileOwned(key, otherKey[:len(otherKey)/2], 0o600, p.UID, p.GID); err != nil {
			t.Fatal(err)
		}
		err = p.Reload(ctx)
		if err == nil || !strings.Contains(err.Error(), "nginx -t") {
			t.Errorf("reload with a key that is no key: %v", err)
		}
		if err := writeFileOwned(key, good, 0o600, p.UID, p.GID); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ServedChain(ctx, LeafName(p.Apps[0])); err != nil {
			t.Error(err)
		}
	})

	t.Run("stop leaves no nginx", func(t *testing.T) {
		master := p.PID()
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command("pgrep", "-f", "-a", "nginx -c "+p.ConfigFile).CombinedOutput()
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("nginx processes left after Stop: %s", s)
		}
		if kids := children(master); len(kids) != 0 {
			t.Errorf("workers of master %d left: %v", master, kids)
		}
		if _, err := os.Stat(p.PIDFile); err == nil {
			t.Errorf("pid file %s left", p.PIDFile)
		}
	})
}

// procUID returns the real uid process pid runs as.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, err := strconv.Atoi(strings.Fields(rest)[0])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}

// edgeHTTPClient returns an HTTP client for the Vault edge: connecting to
// the proxy's port, admin certificate, root CA alone.
func edgeHTTPClient(t *testing.T, v *Vault, p *Proxy) *http.Client {
	t.Helper()
	conf, err := v.prodTLSConfig(filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	return pinnedHTTPClient(conf, p.HostPort)
}
