package testvault

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
)

func TestHarness(t *testing.T) {
	v := StartT(t)
	ctx := context.Background()

	isRoot := os.Geteuid() == 0
	if !isRoot {
		t.Log("not running as root: Vault runs as the current user; checks for user vaultprod are skipped")
	}

	rootCerts := readCerts(t, v.RootCAFile)
	if len(rootCerts) != 1 {
		t.Fatalf("%s: %d certificates, want exactly the root CA", v.RootCAFile, len(rootCerts))
	}
	rootCA := rootCerts[0]
	if rootCA.Subject.CommonName != rootCA.Issuer.CommonName || !rootCA.IsCA {
		t.Fatalf("%s is not a self-signed CA: subject %q issuer %q", v.RootCAFile, rootCA.Subject, rootCA.Issuer)
	}
	caChain := readCerts(t, filepath.Join(v.ServerDir, "ca_chain.pem"))
	if len(caChain) != 2 || !caChain[1].Equal(rootCA) {
		t.Fatalf("ca_chain.pem: want [intermediate, root], got %d certificates", len(caChain))
	}
	intermediate := caChain[0]
	if err := intermediate.CheckSignatureFrom(rootCA); err != nil {
		t.Fatalf("intermediate is not signed by the root: %v", err)
	}

	ownerUID, ownerGID := lookupOwner(t, v)
	if isRoot {
		if v.Owner != "vaultprod" || v.Group != "vaultprod" {
			t.Errorf("Owner:Group = %s:%s, want vaultprod:vaultprod", v.Owner, v.Group)
		}
	}

	t.Run("files", func(t *testing.T) {
		me, mg := os.Geteuid(), os.Getegid()
		checks := []struct {
			path     string
			mode     os.FileMode
			uid, gid int
			pems     int // number of CERTIFICATE/KEY blocks, 0 = not PEM
		}{
			{v.AdminDir, os.ModeDir | 0o700, me, mg, 0},
			{filepath.Join(v.AdminDir, "admin.key"), 0o600, me, mg, 1},
			{filepath.Join(v.AdminDir, "admin.crt"), 0o644, me, mg, 1},
			{filepath.Join(v.AdminDir, "issuing_ca.pem"), 0o644, me, mg, 1},
			{v.ServerDir, os.ModeDir | 0o750, ownerUID, ownerGID, 0},
			{filepath.Join(v.ServerDir, "server.key"), 0o600, ownerUID, ownerGID, 1},
			{filepath.Join(v.ServerDir, "server.crt"), 0o644, ownerUID, ownerGID, 1},
			{filepath.Join(v.ServerDir, "fullchain.crt"), 0o644, ownerUID, ownerGID, 2},
			{filepath.Join(v.ServerDir, "ca_chain.pem"), 0o644, ownerUID, ownerGID, 2},
			{v.RootCAFile, 0o644, me, mg, 1},
			{v.EnvFile, 0o644, me, mg, 0},
		}
		for _, c := range checks {
			fi, err := os.Stat(c.path)
			if err != nil {
				t.Error(err)
				continue
			}
			if fi.Mode() != c.mode {
				t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != c.uid || int(st.Gid) != c.gid {
				t.Errorf("%s: owner %d:%d, want %d:%d", c.path, st.Uid, st.Gid, c.uid, c.gid)
			}
			if c.pems == 0 {
				continue
			}
			b, err := os.ReadFile(c.path)
			if err != nil {
				t.Error(err)
				continue
			}
			s := string(b)
			if !strings.HasSuffix(s, "-----\n") || strings.Contains(s, "\n\n") || strings.HasPrefix(s, "\n") {
				t.Errorf("%s: PEM blocks not joined by single newlines / no trailing newline", c.path)
			}
			if n := strings.Count(s, "-----BEGIN "); n != c.pems {
				t.Errorf("%s: %d PEM blocks, want %d", c.path, n, c.pems)
			}
		}
		if dir := filepath.Dir(v.ServerDir); isRoot {
			st := statT(t, dir)
			if int(st.Uid) != ownerUID {
				t.Errorf("%s: owner uid %d, want %d", dir, st.Uid, ownerUID)
			}
		}
		// issuing_ca.pem is the intermediate; the admin cert chains to the root.
		ica := readCerts(t, filepath.Join(v.AdminDir, "issuing_ca.pem"))
		if !ica[0].Equal(intermediate) {
			t.Errorf("issuing_ca.pem is not the intermediate")
		}
		admin := readCerts(t, filepath.Join(v.AdminDir, "admin.crt"))[0]
		if admin.Subject.CommonName != "vault-admin-prod" {
			t.Errorf("admin CN = %q", admin.Subject.CommonName)
		}
		if !slices.Equal(admin.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("admin cert ExtKeyUsage = %v, want client auth only", admin.ExtKeyUsage)
		}
		verify(t, admin, []*x509.Certificate{intermediate}, rootCA, x509.ExtKeyUsageClientAuth, "")
		full := readCerts(t, filepath.Join(v.ServerDir, "fullchain.crt"))
		leaf := readCerts(t, filepath.Join(v.ServerDir, "server.crt"))[0]
		if !full[0].Equal(leaf) || !full[1].Equal(intermediate) {
			t.Errorf("fullchain.crt is not [server.crt, intermediate]")
		}
	})

	t.Run("env", func(t *testing.T) {
		env := v.Environ()
		want := []string{
			"VAULT_ADDR=" + v.Addr,
			"VAULT_CACERT=" + v.RootCAFile,
			"VAULT_TLS_SERVER_NAME=vault.prod.privsec.ch",
			"VAULT_CLIENT_CERT=" + filepath.Join(v.AdminDir, "admin.crt"),
			"VAULT_CLIENT_KEY=" + filepath.Join(v.AdminDir, "admin.key"),
		}
		if !slices.Equal(env, want) {
			t.Errorf("Environ() = %q, want %q", env, want)
		}
		b, err := os.ReadFile(v.EnvFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range want {
			if !strings.Contains(string(b), "export "+kv+"\n") {
				t.Errorf("%s lacks %q", v.EnvFile, "export "+kv)
			}
		}
		if strings.Contains(string(b), "TOKEN") || strings.Contains(string(b), v.RootToken) {
			t.Errorf("%s mentions a token", v.EnvFile)
		}
		if !strings.HasPrefix(v.Addr, "https://127.0.0.1:") || v.Addr != "https://"+v.HostPort {
			t.Errorf("Addr %q / HostPort %q", v.Addr, v.HostPort)
		}
		if !strings.HasPrefix(v.BootstrapAddr, "http://127.0.0.1:") {
			t.Errorf("BootstrapAddr %q", v.BootstrapAddr)
		}

		vars := v.PlanVars()
		wantVars := map[string]string{
			"admin_dir": v.AdminDir, "server_dir": v.ServerDir, "vault_addr": v.Addr,
			"server_name": "vault.prod.privsec.ch", "vault_pid_file": v.PIDFile,
			"owner": v.Owner, "group": v.Group, "renew_before": "720h",
			"server_dir_owner": v.Owner,
		}
		if len(vars) != len(wantVars) {
			t.Errorf("PlanVars() has %d entries, want %d", len(vars), len(wantVars))
		}
		for k, w := range wantVars {
			if vars[k] != w {
				t.Errorf("PlanVars()[%s] = %q, want %q", k, vars[k], w)
			}
		}
		path := filepath.Join(t.TempDir(), "prod.vars.hcl")
		if err := v.WriteVarFile(path); err != nil {
			t.Fatal(err)
		}
		got := parseVarFile(t, path)
		if len(got) != len(wantVars) {
			t.Errorf("var file has %d attributes, want %d", len(got), len(wantVars))
		}
		for k, w := range wantVars {
			if got[k] != w {
				t.Errorf("var file %s = %q, want %q", k, got[k], w)
			}
		}
	})

	t.Run("served chain", func(t *testing.T) {
		chain, err := v.ServedChain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(chain) != 2 {
			t.Fatalf("served chain has %d certificates, want leaf + intermediate", len(chain))
		}
		leaf := chain[0]
		if !chain[1].Equal(intermediate) {
			t.Errorf("served chain[1] is %q, want the intermediate", chain[1].Subject)
		}
		verify(t, leaf, chain[1:], rootCA, x509.ExtKeyUsageServerAuth, "vault.prod.privsec.ch")
		// Without the intermediate the root alone must not suffice.
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(rootCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("leaf verifies against the root without the intermediate")
		}
		if leaf.Subject.CommonName != "vault.prod.privsec.ch" || !slices.Contains(leaf.DNSNames, "vault.prod.privsec.ch") {
			t.Errorf("leaf CN %q DNS %v", leaf.Subject.CommonName, leaf.DNSNames)
		}
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("leaf IP SANs %v, want [127.0.0.1]", leaf.IPAddresses)
		}
		if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			t.Errorf("server leaf has client auth EKU")
		}
		file := readCerts(t, filepath.Join(v.ServerDir, "server.crt"))[0]
		if leaf.SerialNumber.Cmp(file.SerialNumber) != 0 {
			t.Errorf("served serial %s != server.crt serial %s", leaf.SerialNumber.Text(16), file.SerialNumber.Text(16))
		}
	})

	t.Run("seal status", func(t *testing.T) {
		st, err := v.SealStatus(ctx, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Sealed || !st.Initialized {
			t.Errorf("seal status: sealed=%t initialized=%t", st.Sealed, st.Initialized)
		}
	})

	t.Run("mtls required", func(t *testing.T) {
		conf, err := v.prodTLSConfig("", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := getSealStatus(ctx, v.Addr, conf); err == nil {
			t.Errorf("GET seal-status without a client certificate succeeded")
		} else {
			t.Logf("without client certificate: %v", err)
		}
		// A client certificate from an unrelated CA is refused as well.
		conf.Certificates = []tls.Certificate{selfSigned(t, "vault-admin-prod")}
		if err := getSealStatus(ctx, v.Addr, conf); err == nil {
			t.Errorf("GET seal-status with a foreign client certificate succeeded")
		}
		// The wrong server name is refused by the client.
		conf, _ = v.prodTLSConfig(filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
		conf.ServerName = "vault.example.org"
		if err := getSealStatus(ctx, v.Addr, conf); err == nil {
			t.Errorf("GET seal-status with a wrong server name succeeded")
		}
	})

	t.Run("process", func(t *testing.T) {
		pid := v.PID()
		b, err := os.ReadFile(v.PIDFile)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := strconv.Atoi(strings.TrimSpace(string(b))); got != pid {
			t.Errorf("pid file says %d, PID() = %d", got, pid)
		}
		uids := procIDs(t, pid, "Uid:")
		gids := procIDs(t, pid, "Gid:")
		for _, u := range uids {
			if u != ownerUID {
				t.Errorf("vault process uids %v, want all %d (%s)", uids, ownerUID, v.Owner)
				break
			}
		}
		for _, g := range gids {
			if g != ownerGID {
				t.Errorf("vault process gids %v, want all %d (%s)", gids, ownerGID, v.Group)
				break
			}
		}
		if isRoot {
			u, err := user.LookupId(strconv.Itoa(uids[0]))
			if err != nil || u.Username != "vaultprod" {
				t.Errorf("vault process runs as uid %d (%v), want vaultprod", uids[0], err)
			}
		} else {
			t.Log("not root: skipping the check that Vault runs as vaultprod")
		}
	})

	t.Run("issue ca_chain", func(t *testing.T) {
		s, err := v.Root().Logical().WriteWithContext(ctx, "pki-prod/issue/vault-server", map[string]any{
			"common_name": "vault.prod.privsec.ch", "ttl": "1h",
		})
		if err != nil {
			t.Fatal(err)
		}
		chain, _ := s.Data["ca_chain"].([]any)
		if len(chain) != 2 {
			t.Fatalf("ca_chain has %d entries, want [intermediate, root]", len(chain))
		}
		if c := parsePEM(t, chain[0].(string)); !c[0].Equal(intermediate) {
			t.Errorf("ca_chain[0] is not the intermediate")
		}
		if c := parsePEM(t, chain[1].(string)); !c[0].Equal(rootCA) {
			t.Errorf("ca_chain[1] is not the root")
		}
		if c := parsePEM(t, s.Data["issuing_ca"].(string)); !c[0].Equal(intermediate) {
			t.Errorf("issuing_ca is not the intermediate")
		}
		// A server certificate for another name is refused by the role.
		if _, err := v.Root().Logical().WriteWithContext(ctx, "pki-prod/issue/vault-server", map[string]any{
			"common_name": "other.prod.privsec.ch", "ttl": "1h",
		}); err == nil {
			t.Errorf("role vault-server issued a certificate for other.prod.privsec.ch")
		}
	})

	t.Run("cert auth", func(t *testing.T) {
		c, s := adminLogin(t, v)
		if s.Auth == nil || s.Auth.ClientToken == "" {
			t.Fatal("cert login returned no token")
		}
		if !slices.Contains(s.Auth.TokenPolicies, "rotplan-admin") {
			t.Errorf("token policies %v lack rotplan-admin", s.Auth.TokenPolicies)
		}
		if s.Auth.LeaseDuration != 3600 {
			t.Errorf("token ttl %ds, want 3600", s.Auth.LeaseDuration)
		}
		c.SetToken(s.Auth.ClientToken)
		if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err != nil {
			t.Errorf("lookup-self: %v", err)
		}
		if _, err := c.Logical().ReadWithContext(ctx, "pki-prod/roles/vault-server"); err != nil {
			t.Errorf("read role: %v", err)
		}
		if _, err := c.Logical().ListWithContext(ctx, "pki-prod/roles"); err != nil {
			t.Errorf("list roles: %v", err)
		}
		if _, err := c.Logical().ListWithContext(ctx, "pki-prod/certs"); err != nil {
			t.Errorf("list certs: %v", err)
		}
		if _, err := c.Sys().ListMountsWithContext(ctx); err != nil {
			t.Errorf("read sys/mounts: %v", err)
		}
		is, err := c.Logical().WriteWithContext(ctx, "pki-prod/issue/vault-server", map[string]any{
			"common_name": "vault.prod.privsec.ch", "ip_sans": "127.0.0.1", "ttl": "1h",
		})
		if err != nil {
			t.Fatalf("issue with rotplan-admin token: %v", err)
		}
		serial, _ := is.Data["serial_number"].(string)
		if _, err := c.Logical().ReadWithContext(ctx, "pki-prod/cert/"+serial); err != nil {
			t.Errorf("read cert: %v", err)
		}
		if _, err := c.Logical().WriteWithContext(ctx, "pki-prod/revoke", map[string]any{"serial_number": serial}); err != nil {
			t.Errorf("revoke: %v", err)
		}
		// Not allowed: the root mount and sys/policies.
		if _, err := c.Logical().WriteWithContext(ctx, "pki/root/sign-self-issued", map[string]any{}); err == nil {
			t.Errorf("rotplan-admin token can write to pki/")
		}
		if _, err := c.Sys().ListPoliciesWithContext(ctx); err == nil {
			t.Errorf("rotplan-admin token can list policies")
		}
	})

	// Last: changes the served certificate.
	t.Run("sighup reload", func(t *testing.T) {
		before, err := v.ServedChain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		newLeaf := replaceServerCert(t, v)
		if newLeaf.SerialNumber.Cmp(before[0].SerialNumber) == 0 {
			t.Fatal("new certificate has the old serial")
		}
		// Without SIGHUP Vault keeps serving the old certificate.
		time.Sleep(200 * time.Millisecond)
		if still, err := v.ServedChain(ctx); err != nil {
			t.Fatal(err)
		} else if still[0].SerialNumber.Cmp(before[0].SerialNumber) != 0 {
			t.Fatalf("listener changed its certificate without SIGHUP")
		}
		b, err := os.ReadFile(v.PIDFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		var served *big.Int
		for time.Since(start) < 10*time.Second {
			chain, err := v.ServedChain(ctx)
			if err == nil {
				served = chain[0].SerialNumber
				if served.Cmp(newLeaf.SerialNumber) == 0 {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if served == nil || served.Cmp(newLeaf.SerialNumber) != 0 {
			t.Fatalf("after SIGHUP the listener does not serve the new certificate within 10s")
		}
		t.Logf("new certificate served %s after SIGHUP", time.Since(start).Round(time.Millisecond))
		if v.PID() != pid {
			t.Errorf("PID() = %d, pid file %d", v.PID(), pid)
		}
		if _, err := v.SealStatus(ctx, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")); err != nil {
			t.Errorf("seal status after reload: %v", err)
		}
	})
}

func TestHCL2Quote(t *testing.T) {
	values := []string{
		"", "plain", `with "quotes"`, `back\slash`, "new\nline\ttab\r", "${not.a.template}",
		"%{ if x }", "$$literal", "trailing$", "ünïcödé", "ctrl\x01\x7f",
	}
	dir := t.TempDir()
	for i, val := range values {
		q, err := hcl2Quote(val)
		if err != nil {
			t.Fatalf("%q: %v", val, err)
		}
		path := filepath.Join(dir, "v"+strconv.Itoa(i)+".hcl")
		if err := os.WriteFile(path, []byte("x = "+q+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := parseVarFile(t, path)["x"]; got != val {
			t.Errorf("round trip of %q: got %q (quoted %s)", val, got, q)
		}
	}
	if _, err := hcl2Quote("bad\xff"); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
}

func TestStartTSkipsWithoutBinary(t *testing.T) {
	if os.Getenv(EnvBinary) != "" || os.Getenv("CI") != "" {
		t.Skip("only meaningful without " + EnvBinary + " and CI")
	}
	// StartT must skip (not fail) without the binary; run it in a subtest.
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		StartT(t)
	})
	if !skipped {
		t.Error("StartT did not skip")
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(ctx, Options{Dir: t.TempDir()}); err == nil {
		t.Error("Start without Binary succeeded")
	}
	if _, err := Start(ctx, Options{Binary: "/nonexistent/vault", Dir: t.TempDir()}); err == nil {
		t.Error("Start with a missing binary succeeded")
	}
	// A binary that is not Vault fails with a clear error and leaves nothing running.
	dir, err := os.MkdirTemp("", "rotplan-vault-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Start(ctx, Options{Binary: "/bin/false", Dir: dir})
	if err == nil {
		t.Fatal("Start with /bin/false succeeded")
	}
	t.Logf("Start(/bin/false) failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// helpers

func getSealStatus(ctx context.Context, addr string, conf *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/seal-status", nil)
	if err != nil {
		return err
	}
	resp, err := loopbackHTTPClient(conf).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func lookupOwner(t *testing.T, v *Vault) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(v.Owner)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	g, err := user.LookupGroup(v.Group)
	if err != nil {
		// Non-root: Group may be a numeric gid without a name.
		gid, err = strconv.Atoi(v.Group)
		if err != nil {
			t.Fatalf("group %q: %v", v.Group, err)
		}
		return uid, gid
	}
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

func statT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func procIDs(t *testing.T, pid int, field string) []int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field)
		if !ok {
			continue
		}
		var ids []int
		for _, s := range strings.Fields(rest) {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %v", pid, field, err)
			}
			ids = append(ids, n)
		}
		return ids
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return nil
}

func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func parsePEM(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	certs, err := ParseCertificates([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func verify(t *testing.T, leaf *x509.Certificate, intermediates []*x509.Certificate, root *x509.Certificate, eku x509.ExtKeyUsage, dnsName string) {
	t.Helper()
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool(root),
		Intermediates: pool(intermediates...),
		KeyUsages:     []x509.ExtKeyUsage{eku},
		DNSName:       dnsName,
	})
	if err != nil {
		t.Errorf("verifying %q against the root only: %v", leaf.Subject.CommonName, err)
		return
	}
	for _, ch := range chains {
		if !ch[len(ch)-1].Equal(root) {
			t.Errorf("chain of %q ends in %q, not the root", leaf.Subject.CommonName, ch[len(ch)-1].Subject)
		}
	}
}

func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func parseVarFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("parsing %s: %s", path, diags.Error())
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	out := map[string]string{}
	for name, a := range attrs {
		val, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: %s: %s", path, name, diags.Error())
		}
		out[name] = val.AsString()
	}
	return out
}
