package testvault

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProxyAgent(t *testing.T) {
	skipWithoutProxy(t)
	v := StartT(t)
	ctx := context.Background()

	// Before the proxy: the name is the proxy's.
	if _, err := v.AddApps(ctx, ProxyUser); err == nil || !strings.Contains(err.Error(), "StartProxy") {
		t.Fatalf("AddApps(%s) before StartProxy: %v", ProxyUser, err)
	}
	if v.App(ProxyUser) != nil {
		t.Fatalf("AddApps(%s) left an app behind", ProxyUser)
	}
	p, err := v.StartProxy(ctx, SeedApps()...)
	if err != nil {
		t.Fatal(err)
	}
	a := p.Agent
	if a == nil {
		t.Fatal("Proxy.Agent is nil")
	}
	wantPolicies := []string{"pki-issue-proxyprod", "pki-ca-read-proxyprod", MarkerPolicy}

	t.Run("layout", func(t *testing.T) {
		if v.App(ProxyUser) != a {
			t.Errorf("Vault.App(%s) is not Proxy.Agent", ProxyUser)
		}
		for _, c := range []struct{ name, got, want string }{
			{"Name", a.Name, ProxyUser},
			{"User", a.User, p.User},
			{"CommonName", a.CommonName, "agent-proxyprod.prod.privsec.ch"},
			{"Role", a.Role, "agent-mtls-proxyprod"},
			{"ClientRole", p.ClientRole, a.Role},
			{"Mapping", a.Mapping, "agent-proxyprod"},
			{"Policy", a.Policy, "pki-issue-proxyprod"},
			{"CAReadPolicy", p.CAReadPolicy, "pki-ca-read-proxyprod"},
			{"CertFile", a.CertFile, p.ClientCertFile},
			{"KeyFile", a.KeyFile, p.ClientKeyFile},
			{"CAFile", a.CAFile, p.RootCAFile},
			{"SinkFile", a.SinkFile, filepath.Join(p.Home, "vault", "agent", "token")},
			{"RestartCommand", a.RestartCommand, filepath.Join(v.Dir, "bin", "restart-agent-proxyprod")},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
			}
		}
		if !slices.Equal(a.Policies, wantPolicies) {
			t.Errorf("Policies = %v, want %v", a.Policies, wantPolicies)
		}
		if uid := procUID(t, a.PID()); uid != p.UID {
			t.Errorf("agent %d runs as uid %d, want %d (%s)", a.PID(), uid, p.UID, p.User)
		}
		// nginx presents the agent's certificate towards Vault.
		if err := edgeHealthy(ctx, v, p); err != nil {
			t.Error(err)
		}
	})

	t.Run("mapping holds exactly the three policies", func(t *testing.T) {
		s, err := v.Root().Logical().ReadWithContext(ctx, "auth/cert/certs/"+a.Mapping)
		if err != nil || s == nil {
			t.Fatalf("mapping %s: %v", a.Mapping, err)
		}
		if got := stringsOf(s.Data["token_policies"]); !slices.Equal(got, wantPolicies) {
			t.Errorf("mapping %s: token_policies %v, want %v", a.Mapping, got, wantPolicies)
		}
		if got := stringsOf(s.Data["allowed_common_names"]); !slices.Equal(got, []string{a.CommonName}) {
			t.Errorf("mapping %s: allowed_common_names %v", a.Mapping, got)
		}
	})

	t.Run("agent logs in", func(t *testing.T) {
		info := checkAgentLogin(t, v, a, "")
		if info.Meta["cert_name"] != "agent-proxyprod" {
			t.Errorf("cert_name %q", info.Meta["cert_name"])
		}
		for _, pol := range wantPolicies {
			if !slices.Contains(info.Policies, pol) {
				t.Errorf("token policies %v lack %s", info.Policies, pol)
			}
		}
	})

	t.Run("the token's policies", func(t *testing.T) {
		c := v.Root()
		c.SetToken(token(t, a))
		for _, path := range []string{"pki-prod/cert/ca_chain", "pki-prod/ca_chain"} {
			if _, err := c.Logical().ReadRawWithContext(ctx, path); err != nil {
				t.Errorf("agent token: read %s: %v", path, err)
			}
		}
		if _, err := c.Logical().WriteWithContext(ctx, "pki-prod/issue/"+a.Role, map[string]any{"common_name": a.CommonName, "ttl": "1h"}); err != nil {
			t.Errorf("agent token: issue on %s: %v", a.Role, err)
		}
		for _, path := range []string{"pki-prod/issue/agent-mtls-ncprd1", "pki-prod/issue/vault-server"} {
			_, err := c.Logical().WriteWithContext(ctx, path, map[string]any{"common_name": a.CommonName})
			if err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("agent token: write %s: %v, want permission denied", path, err)
			}
		}
	})

	t.Run("admin may write the CA-read policy", func(t *testing.T) {
		pol, err := v.Root().Sys().GetPolicyWithContext(ctx, p.CAReadPolicy)
		if err != nil || pol == "" {
			t.Fatalf("policy %s: %q, %v", p.CAReadPolicy, pol, err)
		}
		c := adminClient(t, v)
		if err := c.Sys().PutPolicyWithContext(ctx, p.CAReadPolicy, pol); err != nil {
			t.Errorf("admin: writing %s: %v", p.CAReadPolicy, err)
		}
		if err := c.Sys().PutPolicyWithContext(ctx, "pki-ca-write-proxyprod", pol); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("admin: writing pki-ca-write-proxyprod: %v, want permission denied", err)
		}
	})

	t.Run("restart command gives a new agent and token", func(t *testing.T) {
		old, oldTok := a.PID(), token(t, a)
		runRestart(t, a)
		if pid := a.PID(); pid == old || pid == 0 || alive(old) {
			t.Fatalf("restart: pid %d, old %d (alive %t)", pid, old, alive(old))
		}
		tok, err := a.WaitToken(ctx, oldTok)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentLogin(t, v, a, tok)
	})

	t.Run("no second proxyprod", func(t *testing.T) {
		pid := a.PID()
		if _, err := v.AddApps(ctx, ProxyUser); err == nil || !strings.Contains(err.Error(), "StartProxy") {
			t.Errorf("AddApps(%s) after StartProxy: %v", ProxyUser, err)
		}
		if _, err := v.StartProxy(ctx, SeedApps()...); err == nil {
			t.Error("a second StartProxy succeeded")
		}
		if v.App(ProxyUser) != a || v.Proxy() != p || a.PID() != pid {
			t.Error("a refused set-up changed the proxy's agent")
		}
	})

	t.Run("edge and agent after a vault restart", func(t *testing.T) {
		if out, err := exec.Command(v.RestartCommand).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", v.RestartCommand, err, out)
		}
		pollUntil(t, "the edge after restart-vault", func(ctx context.Context) error {
			return edgeHealthy(ctx, v, p)
		})
		oldTok := token(t, a)
		runRestart(t, a)
		tok, err := a.WaitToken(ctx, oldTok)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentLogin(t, v, a, tok)
	})

	// Last: stops everything.
	t.Run("stop leaves no agent", func(t *testing.T) {
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		if pids := agentProcesses(t, a); pids != "" {
			t.Errorf("the proxy's agent still runs after Vault.Stop: pids %s", pids)
		}
		if _, err := os.Stat(a.agent.ctlPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("restart FIFO after Stop: %v", err)
		}
		if out, err := exec.Command(a.RestartCommand).CombinedOutput(); err == nil || !strings.Contains(string(out), "not running") {
			t.Errorf("restart command after Stop: %v: %s", err, out)
		}
	})
}
