package testvault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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

// startApps starts a harness Vault with the named apps and their agents.
func startApps(t *testing.T, names ...string) (*Vault, []*App) {
	t.Helper()
	if os.Getenv(EnvBinary) != "" && os.Geteuid() != 0 {
		t.Skip("testvault: the apps' agents run as their own system users: this test needs root")
	}
	v := StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	apps, err := v.AddApps(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("apps %v set up, agents logged in, in %s", names, time.Since(start).Round(time.Millisecond))
	return v, apps
}

func TestApps(t *testing.T) {
	v, apps := startApps(t, SeedApps()...)
	ctx := context.Background()

	t.Run("users and files", func(t *testing.T) {
		for _, a := range apps {
			if a.User != a.Name || a.Group != a.Name {
				t.Errorf("%s: user:group %s:%s", a.Name, a.User, a.Group)
			}
			for _, f := range []struct {
				path string
				mode os.FileMode
			}{
				{a.KeyFile, 0o600},
				{a.CertFile, 0o644},
				{a.CAFile, 0o644},
			} {
				fi, err := os.Lstat(f.path)
				if err != nil {
					t.Fatal(err)
				}
				if !fi.Mode().IsRegular() || fi.Mode().Perm() != f.mode {
					t.Errorf("%s: mode %v, want regular %v", f.path, fi.Mode(), f.mode)
				}
				st := statT(t, f.path)
				if int(st.Uid) != a.UID || int(st.Gid) != a.GID {
					t.Errorf("%s: owner %d:%d, want %d:%d (%s)", f.path, st.Uid, st.Gid, a.UID, a.GID, a.User)
				}
			}
			if rel, err := filepath.Rel(v.Dir, a.Home); err != nil || rel != filepath.Join("home", a.Name) {
				t.Errorf("%s: home %s is not Dir/home/%s", a.Name, a.Home, a.Name)
			}
			if got, want := a.KeyFile, filepath.Join(a.Home, "vault/mtls/agent.key"); got != want {
				t.Errorf("KeyFile %s, want %s", got, want)
			}
			if got, want := a.CertFile, filepath.Join(a.Home, "vault/mtls/agent.crt"); got != want {
				t.Errorf("CertFile %s, want %s", got, want)
			}
			if got, want := a.CAFile, filepath.Join(a.Home, "vault/ca/ca.pem"); got != want {
				t.Errorf("CAFile %s, want %s", got, want)
			}

			leaf := readCerts(t, a.CertFile)
			if len(leaf) != 1 {
				t.Fatalf("%s: %d certificates, want the leaf only", a.CertFile, len(leaf))
			}
			c := leaf[0]
			if c.Subject.CommonName != "agent-"+a.Name+".prod.privsec.ch" || c.Subject.CommonName != a.CommonName {
				t.Errorf("%s: CN %q", a.CertFile, c.Subject.CommonName)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("%s: extended key usage %v, want client auth only", a.CertFile, c.ExtKeyUsage)
			}
			if d := c.NotAfter.Sub(c.NotBefore); d < 29*24*time.Hour || d > 31*24*time.Hour {
				t.Errorf("%s: valid for %s, want about 30 days", a.CertFile, d)
			}
			root := readCerts(t, v.RootCAFile)[0]
			inter := readCerts(t, filepath.Join(v.ServerDir, "ca_chain.pem"))[0]
			verify(t, c, []*x509.Certificate{inter}, root, x509.ExtKeyUsageClientAuth, "")
			if ca := readCerts(t, a.CAFile); len(ca) != 1 || !ca[0].Equal(root) {
				t.Errorf("%s is not the root CA", a.CAFile)
			}
			if _, err := tlsPair(a); err != nil {
				t.Errorf("%s: key does not match the certificate: %v", a.Name, err)
			}
		}
	})

	t.Run("role", func(t *testing.T) {
		for _, a := range apps {
			s, err := v.Root().Logical().ReadWithContext(ctx, "pki-prod/roles/"+a.Role)
			if err != nil || s == nil {
				t.Fatalf("role %s: %v", a.Role, err)
			}
			for k, want := range map[string]any{
				"allow_bare_domains": true, "allow_subdomains": false, "enforce_hostnames": true,
				"client_flag": true, "server_flag": false, "allow_localhost": false, "allow_ip_sans": false,
			} {
				if got := s.Data[k]; got != want {
					t.Errorf("role %s: %s = %v, want %v", a.Role, k, got, want)
				}
			}
			if got := strings.Join(stringsOf(s.Data["allowed_domains"]), ","); got != a.CommonName {
				t.Errorf("role %s: allowed_domains %s", a.Role, got)
			}
			// The role issues for the agent's name only.
			for _, cn := range []string{"other.prod.privsec.ch", "x." + a.CommonName, "localhost"} {
				if _, err := v.Root().Logical().WriteWithContext(ctx, "pki-prod/issue/"+a.Role, map[string]any{"common_name": cn, "ttl": "1h"}); err == nil {
					t.Errorf("role %s issued a certificate for %s", a.Role, cn)
				}
			}
		}
	})

	t.Run("policies and mapping", func(t *testing.T) {
		marker, err := v.Root().Sys().GetPolicyWithContext(ctx, MarkerPolicy)
		if err != nil || marker == "" {
			t.Fatalf("policy %s: %q, %v", MarkerPolicy, marker, err)
		}
		for _, a := range apps {
			pol, err := v.Root().Sys().GetPolicyWithContext(ctx, a.Policy)
			if err != nil || !strings.Contains(pol, `path "pki-prod/issue/`+a.Role+`"`) {
				t.Errorf("policy %s: %v\n%s", a.Policy, err, pol)
			}
			s, err := v.Root().Logical().ReadWithContext(ctx, "auth/cert/certs/"+a.Mapping)
			if err != nil || s == nil {
				t.Fatalf("mapping %s: %v", a.Mapping, err)
			}
			if got := stringsOf(s.Data["allowed_common_names"]); !slices.Equal(got, []string{a.CommonName}) {
				t.Errorf("mapping %s: allowed_common_names %v", a.Mapping, got)
			}
			if got := stringsOf(s.Data["token_policies"]); !slices.Equal(got, []string{a.Policy, MarkerPolicy}) {
				t.Errorf("mapping %s: token_policies %v", a.Mapping, got)
			}
			pem, _ := s.Data["certificate"].(string)
			ca, err := ParseCertificates([]byte(pem))
			inter := readCerts(t, filepath.Join(v.ServerDir, "ca_chain.pem"))[0]
			if err != nil || len(ca) != 1 || !ca[0].Equal(inter) {
				t.Errorf("mapping %s: certificate is not the intermediate (pki-prod) alone", a.Mapping)
			}
		}
	})

	t.Run("agents logged in", func(t *testing.T) {
		for _, a := range apps {
			pid := a.PID()
			if pid == 0 {
				t.Fatalf("%s: no agent runs", a.Name)
			}
			if uids := procIDs(t, pid, "Uid:"); uids[0] != a.UID || uids[1] != a.UID {
				t.Errorf("%s: agent uids %v, want %d", a.Name, uids, a.UID)
			}
			if gids := procIDs(t, pid, "Gid:"); gids[0] != a.GID {
				t.Errorf("%s: agent gids %v, want %d", a.Name, gids, a.GID)
			}
			b, err := os.ReadFile(a.PIDFile)
			if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
				t.Errorf("%s: pid file %q (%v), want %d", a.PIDFile, b, err, pid)
			}
			st := statT(t, a.SinkFile)
			if int(st.Uid) != a.UID || st.Mode&0o077&^0o040 != 0 {
				t.Errorf("%s: sink owner %d mode %o, want %d and readable by the app only", a.SinkFile, st.Uid, st.Mode&0o777, a.UID)
			}
			checkAgentLogin(t, v, a, "")
		}
	})

	t.Run("admin identity", func(t *testing.T) {
		c := adminClient(t, v)
		a := apps[0]
		info, err := c.Auth().Token().LookupWithContext(ctx, token(t, a))
		if err != nil {
			t.Fatalf("admin: looking up the agent's token: %v", redact(err.Error(), token(t, a)))
		}
		if meta, _ := info.TokenMetadata(); meta["cert_name"] != a.Mapping {
			t.Errorf("admin: the agent's token meta %v", meta)
		}
		allowed := []struct{ op, path string }{
			{"read", "sys/auth"},
			{"read", "auth/cert/certs/" + a.Mapping},
			{"read", "sys/policies/acl/" + a.Policy},
			{"read", "sys/policies/acl/" + MarkerPolicy},
			{"write", "sys/policies/acl/pki-issue-" + a.Name},
			{"write", "auth/cert/certs/" + a.Mapping},
		}
		denied := []struct{ op, path string }{
			{"write", "auth/cert/certs/admin"}, // its own mapping
			{"write", "sys/policies/acl/rotplan-admin"},
			{"write", "sys/policies/acl/other"},
			{"write", "sys/auth/other"},
		}
		pol, err := v.Root().Sys().GetPolicyWithContext(ctx, a.Policy)
		if err != nil {
			t.Fatal(err)
		}
		mapping, err := v.Root().Logical().ReadWithContext(ctx, "auth/cert/certs/"+a.Mapping)
		if err != nil {
			t.Fatal(err)
		}
		body := map[string]any{"policy": pol}
		do := func(op, path string) error {
			if op == "read" {
				_, err := c.Logical().ReadWithContext(ctx, path)
				return err
			}
			data := body
			if strings.HasPrefix(path, "auth/cert/certs/") {
				data = mapping.Data // writes back what is there
			} else if strings.HasPrefix(path, "sys/auth/") {
				data = map[string]any{"type": "cert"}
			}
			_, err := c.Logical().WriteWithContext(ctx, path, data)
			return err
		}
		for _, x := range allowed {
			if err := do(x.op, x.path); err != nil {
				t.Errorf("admin: %s %s: %v", x.op, x.path, err)
			}
		}
		for _, x := range denied {
			if err := do(x.op, x.path); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("admin: %s %s: %v, want permission denied", x.op, x.path, err)
			}
		}
		checkAgentLogin(t, v, a, "")
	})

	t.Run("restart command", func(t *testing.T) {
		a := apps[0]
		oldPID := a.PID()
		oldTok := token(t, a)
		start := time.Now()
		runRestart(t, a)
		newPID := a.PID()
		if newPID == 0 || newPID == oldPID {
			t.Fatalf("restart: pid %d -> %d, want a new running process", oldPID, newPID)
		}
		if alive(oldPID) {
			t.Errorf("the old agent (pid %d) still runs", oldPID)
		}
		tok, err := a.WaitToken(ctx, oldTok)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: restart command to new token in the sink: %s", a.Name, time.Since(start).Round(time.Millisecond))
		checkAgentLogin(t, v, a, tok)
	})

	t.Run("restart in process", func(t *testing.T) {
		a := apps[len(apps)-1]
		oldPID := a.PID()
		oldTok := token(t, a)
		newPID, err := a.Restart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if newPID == oldPID || a.PID() != newPID {
			t.Fatalf("restart: pid %d -> %d (PID() %d)", oldPID, newPID, a.PID())
		}
		tok, err := a.WaitToken(ctx, oldTok)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentLogin(t, v, a, tok)
	})

	t.Run("new cert", func(t *testing.T) {
		for _, a := range apps {
			oldSerial, err := a.CertSerial()
			if err != nil {
				t.Fatal(err)
			}
			oldTok := token(t, a)
			c, err := a.ReplaceCert(ctx)
			if err != nil {
				t.Fatal(err)
			}
			newSerial, err := a.CertSerial()
			if err != nil {
				t.Fatal(err)
			}
			if newSerial.Cmp(c.SerialNumber) != 0 || newSerial.Cmp(oldSerial) == 0 {
				t.Fatalf("%s: serial on disk %s, issued %s, old %s", a.Name, newSerial, c.SerialNumber, oldSerial)
			}
			// Until it restarts, the agent keeps the login of the old certificate.
			if info := lookup(t, v, oldTok); info.Meta["serial_number"] != oldSerial.String() {
				t.Errorf("%s: the old token names serial %s, want the old %s", a.Name, info.Meta["serial_number"], oldSerial)
			}
			runRestart(t, a)
			tok, err := a.WaitToken(ctx, oldTok)
			if err != nil {
				t.Fatal(err)
			}
			info := checkAgentLogin(t, v, a, tok)
			if info.Meta["serial_number"] == oldSerial.String() {
				t.Errorf("%s: the new token is still for the old certificate", a.Name)
			}
		}
	})

	t.Run("restart timing", func(t *testing.T) {
		a := apps[0]
		var times []string
		for range 3 {
			oldTok := token(t, a)
			start := time.Now()
			runRestart(t, a)
			restarted := time.Since(start)
			if _, err := a.WaitToken(ctx, oldTok); err != nil {
				t.Fatal(err)
			}
			times = append(times, restarted.Round(time.Millisecond).String()+" / "+time.Since(start).Round(time.Millisecond).String())
		}
		t.Logf("%s: restart command returned / new token in the sink: %s", a.Name, strings.Join(times, ", "))

		// Both agents at once, as a plan restarts them in parallel.
		times = times[:0]
		for range 3 {
			start := time.Now()
			errs := make(chan error, len(apps))
			for _, a := range apps {
				oldTok := token(t, a)
				go func() {
					out, err := exec.Command(a.RestartCommand).CombinedOutput()
					if err != nil {
						errs <- errors.New(err.Error() + ": " + string(out))
						return
					}
					_, err = a.WaitToken(ctx, oldTok)
					errs <- err
				}()
			}
			for range apps {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			times = append(times, time.Since(start).Round(time.Millisecond).String())
		}
		t.Logf("%d agents restarted at once, until every sink holds a new token: %s", len(apps), strings.Join(times, ", "))
	})

	t.Run("concurrent restarts", func(t *testing.T) {
		a := apps[0]
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				out, err := exec.Command(a.RestartCommand).CombinedOutput()
				if err != nil {
					err = errors.New(err.Error() + ": " + string(out))
				}
				errs <- err
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if got, want := agentProcesses(t, a), strconv.Itoa(a.PID()); got != want {
			t.Errorf("after concurrent restarts: agent processes %q, want exactly %s", got, want)
		}
		if _, err := a.WaitToken(ctx, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("restart command errors", func(t *testing.T) {
		a := apps[0]
		out, err := exec.Command(a.RestartCommand, "reload").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "usage") {
			t.Errorf("restart command with a bad action: %v: %s", err, out)
		}
		if err := a.Start(ctx); err == nil || !strings.Contains(err.Error(), "runs already") {
			t.Errorf("Start of a running agent: %v", err)
		}
	})

	t.Run("stop and start", func(t *testing.T) {
		a := apps[0]
		if out, err := exec.Command(a.RestartCommand, "stop").CombinedOutput(); err != nil {
			t.Fatalf("%s stop: %v: %s", a.RestartCommand, err, out)
		}
		if a.PID() != 0 || agentProcesses(t, a) != "" {
			t.Fatalf("agent %s still runs after stop: %s", a.Name, agentProcesses(t, a))
		}
		if _, err := os.Stat(a.PIDFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid file after stop: %v", err)
		}
		oldTok := token(t, a)
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		tok, err := a.WaitToken(ctx, oldTok)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentLogin(t, v, a, tok)
	})

	// Last: stops everything.
	t.Run("vault stop leaves no agent", func(t *testing.T) {
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, a := range apps {
			if p := agentProcesses(t, a); p != "" {
				t.Errorf("agent %s still runs after Vault.Stop: pids %s", a.Name, p)
			}
			if _, err := os.Stat(a.agent.ctlPath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("restart FIFO after Stop: %v", err)
			}
			out, err := exec.Command(a.RestartCommand).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "not running") {
				t.Errorf("restart command after Stop: %v: %s", err, out)
			}
			if err := a.Stop(); err != nil {
				t.Errorf("App.Stop after Vault.Stop: %v", err)
			}
			if err := a.Start(ctx); err == nil {
				t.Errorf("App.Start after Vault.Stop succeeded")
			}
		}
	})
}

// TestAppsOne sets up a single app, as tests that need only one agent do.
func TestAppsOne(t *testing.T) {
	v, apps := startApps(t, "resume2me")
	if len(apps) != 1 || v.App("resume2me") != apps[0] || v.App("ncprd1") != nil {
		t.Fatalf("apps %v", apps)
	}
	checkAgentLogin(t, v, apps[0], "")
	if _, err := v.AddApps(context.Background(), "resume2me"); err == nil {
		t.Errorf("AddApps of an app set up already succeeded")
	}
	if _, err := v.AddApps(context.Background(), "Bad/Name"); err == nil {
		t.Errorf("AddApps of a bad name succeeded")
	}
}

// checkAgentLogin checks that tok (the sink's token when "") is a cert-auth
// token of a's mapping, for the certificate now in a.CertFile, with both
// policies.
func checkAgentLogin(t *testing.T, v *Vault, a *App, tok string) *TokenInfo {
	t.Helper()
	if tok == "" {
		tok = token(t, a)
	}
	serial, err := a.CertSerial()
	if err != nil {
		t.Fatal(err)
	}
	info := lookup(t, v, tok)
	want := map[string]string{
		"cert_name":     a.Mapping,
		"common_name":   a.CommonName,
		"serial_number": serial.String(),
	}
	for k, w := range want {
		if got := info.Meta[k]; got != w {
			t.Errorf("%s: token meta %s = %q, want %q", a.Name, k, got, w)
		}
	}
	for _, k := range []string{"subject_key_id", "authority_key_id"} {
		if info.Meta[k] == "" {
			t.Errorf("%s: token meta lacks %s: %v", a.Name, k, info.Meta)
		}
	}
	for _, p := range slices.Concat([]string{a.Policy, MarkerPolicy}, a.Policies) {
		if !slices.Contains(info.Policies, p) {
			t.Errorf("%s: token policies %v lack %s", a.Name, info.Policies, p)
		}
	}
	if info.Path != "auth/cert/login" {
		t.Errorf("%s: token path %q", a.Name, info.Path)
	}
	return info
}

func token(t *testing.T, a *App) string {
	t.Helper()
	tok, err := a.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok == "" {
		t.Fatalf("%s: the sink %s holds no token", a.Name, a.SinkFile)
	}
	return tok
}

func lookup(t *testing.T, v *Vault, tok string) *TokenInfo {
	t.Helper()
	info, err := v.LookupToken(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// runRestart runs the app's restart command as a plan would.
func runRestart(t *testing.T, a *App) {
	t.Helper()
	out, err := exec.Command(a.RestartCommand).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", a.RestartCommand, err, out)
	}
}

// agentProcesses returns the pids (pgrep) of processes running a's agent
// configuration, "" when none.
func agentProcesses(t *testing.T, a *App) string {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "--", "-config="+a.AgentConfig).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return ""
	}
	if err != nil {
		t.Fatalf("pgrep: %v", err)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

// alive reports whether pid names a process that is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func stringsOf(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, e := range raw {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// tlsPair loads a's key and certificate as a TLS client would.
func tlsPair(a *App) (tls.Certificate, error) {
	return tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
}

// adminLogin logs in with the admin certificate through the production
// listener, as rotplan does, and returns a client without a token and the
// login's answer.
func adminLogin(t *testing.T, v *Vault) (*vaultapi.Client, *vaultapi.Secret) {
	t.Helper()
	conf, err := v.prodTLSConfig(filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr, HttpClient: loopbackHTTPClient(conf)})
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	c.ClearNamespace()
	s, err := c.Logical().WriteWithContext(context.Background(), "auth/cert/login", map[string]any{"name": "admin"})
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// adminClient returns a client with the admin identity's token.
func adminClient(t *testing.T, v *Vault) *vaultapi.Client {
	t.Helper()
	c, s := adminLogin(t, v)
	if s == nil || s.Auth == nil {
		t.Fatal("admin cert login returned no token")
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}
