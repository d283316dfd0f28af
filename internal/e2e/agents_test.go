package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/testvault"
)

// The agents plan (examples/agents.hcl) run by the binary against the test
// bed's apps and their real Vault Agents, and proven from outside: through
// the root back door, the files on disk and a cert login of the test's own.

// agentWait bounds every wait for an agent to log in: generous, since a
// restarted agent needs a moment and the machine is shared.
const agentWait = 2 * time.Minute

// agentsBed starts a Vault with the seed's apps and their real Vault
// Agents. The apps need root (system users, file owners, agents running as
// the app users): the test is skipped otherwise.
func agentsBed(t *testing.T) (*testvault.Vault, []*testvault.App) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the agents plan needs root: the apps are system users, own their files and run their agents")
	}
	v := testvault.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	apps, err := v.AddApps(ctx, testvault.SeedApps()...)
	if err != nil {
		t.Fatal(err)
	}
	return v, apps
}

// agentArgs is a command line for examples/agents.hcl on the bed: the
// command, its state directory (none when ""), the bed's variables, then
// extra arguments, which may override them.
func agentArgs(v *testvault.Vault, command, state string, extra ...string) []string {
	args := []string{command}
	if state != "" {
		args = append(args, "-state-dir", state)
	}
	for k, val := range v.AgentPlanVars(testvault.SeedApps()...) {
		args = append(args, "-var", k+"="+val)
	}
	args = append(args, extra...)
	return append(args, "examples/agents.hcl")
}

// agentsOperatorDir copies examples/agents.hcl into a directory of its own
// with a variable file for the bed's apps (agents.vars.hcl) that leaves
// vault_addr and server_name out: an operator's checkout, where Vault is
// found through the exported VAULT_* variables.
func agentsOperatorDir(t *testing.T, v *testvault.Vault) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join(repoRoot(t), "examples", "agents.hcl"), filepath.Join(dir, "agents.hcl"), 0o644)
	vars := v.AgentPlanVars(testvault.SeedApps()...)
	var b strings.Builder
	for _, name := range []string{"apps", "agent_restart"} { // HCL expressions
		fmt.Fprintf(&b, "%s = %s\n", name, vars[name])
	}
	for _, name := range []string{"home_dir", "renew_before"} {
		fmt.Fprintf(&b, "%s = %q\n", name, vars[name])
	}
	if err := os.WriteFile(filepath.Join(dir, "agents.vars.hcl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentFiles reads an app's key, certificate and CA files.
func agentFiles(t *testing.T, a *testvault.App) map[string]fileState {
	t.Helper()
	return readFiles(t, []string{a.KeyFile, a.CertFile, a.CAFile})
}

// agentBefore is what the test knows of an app's agent before a run.
type agentBefore struct {
	serial *big.Int // of agent.crt
	pid    int
	token  string // in the sink; never printed
}

// agentsBefore notes, per app, the agent's certificate serial, pid and token.
func agentsBefore(t *testing.T, apps []*testvault.App) map[string]agentBefore {
	t.Helper()
	was := map[string]agentBefore{}
	for _, a := range apps {
		tok, err := a.Token()
		if err != nil {
			t.Fatal(err)
		}
		was[a.Name] = agentBefore{certSerial(t, a), a.PID(), tok}
	}
	return was
}

// certSerial is the serial of the app's certificate on disk.
func certSerial(t *testing.T, a *testvault.App) *big.Int {
	t.Helper()
	s, err := a.CertSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitAgentSerial waits until the token in the app's sink, looked up by
// root, was issued for the certificate with serial, and is not stale (the
// token of an earlier login, which a restarted agent that cannot log in
// leaves in its sink); it says how the last look-up ended when that never
// happens.
func waitAgentSerial(t *testing.T, v *testvault.Vault, a *testvault.App, serial *big.Int, stale string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), agentWait)
	defer cancel()
	var last string
	for {
		tok, err := a.Token()
		switch {
		case err != nil:
			last = err.Error()
		case tok == "":
			last = "the sink holds no token"
		case tok == stale:
			last = "the sink holds the token from before the run"
		default:
			info, err := v.LookupToken(ctx, tok)
			if err == nil && info.Meta["serial_number"] == serial.String() && info.Meta["cert_name"] == a.Mapping {
				return
			}
			if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("token of cert %q serial %s", info.Meta["cert_name"], info.Meta["serial_number"])
			}
		}
		select {
		case <-ctx.Done():
			t.Errorf("%s: the agent's token was never issued for serial %s within %s; last: %s", a.Name, serial, agentWait, last)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// certLogin logs in at the production listener with cert auth, with the
// app's own files and mapping, as the seed's manual `vault login
// -method=cert` does, and returns the token's policies; the token is
// revoked at once.
func certLogin(t *testing.T, v *testvault.Vault, a *testvault.App) []string {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{
		CACert: a.CAFile, ClientCert: a.CertFile, ClientKey: a.KeyFile, TLSServerName: v.ServerName,
	}); err != nil {
		t.Fatal(err)
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().Write("auth/cert/login", map[string]any{"name": a.Mapping})
	if err != nil || s == nil || s.Auth == nil {
		t.Errorf("%s: cert login with the app's files: %v", a.Name, err)
		return nil
	}
	c.SetToken(s.Auth.ClientToken)
	if err := c.Auth().Token().RevokeSelf(""); err != nil {
		t.Errorf("%s: revoking the login's token: %v", a.Name, err)
	}
	return s.Auth.TokenPolicies
}

// agentTimings are the facts the run prints for each app's checks: how
// long after the restart the checks passed and the agent logged in.
var agentTimings = regexp.MustCompile(`(?m)^verify\.(login|agent)\["([^"]+)"\] +ok .*passed (\S+) after the reload(?:; the agent logged in (\S+) after it)?$`)

func TestAgentsRotated(t *testing.T) {
	v, apps := agentsBed(t)
	root := v.Root()
	was := agentsBefore(t, apps)

	res := runRotplan(t, v.Environ(), agentArgs(v, "plan", "")...)
	if res.exit != 0 {
		t.Fatalf("plan: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for _, a := range apps {
		for _, want := range []string{
			fmt.Sprintf("vault_write.mapping[%q]: replace", a.Name),
			fmt.Sprintf("= allowed_common_names: [%q]", a.CommonName),
			fmt.Sprintf("= token_policies: [%q, %q]", a.Policy, testvault.MarkerPolicy),
			fmt.Sprintf("~ certificate: (certificate %q serial ", "rotplan test prod intermediate CA"),
			fmt.Sprintf("? verify.login[%q]: check, vault_login %s (SNI %s)", a.Name, v.Addr, v.ServerName),
			fmt.Sprintf("? verify.agent[%q]: check, vault_agent %s", a.Name, a.SinkFile),
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("plan lacks %q:\n%s", want, res.stdout)
			}
		}
	}

	// The run as an operator makes it: from the plan's directory, with a
	// variable file, relative paths and the default state directory.
	dir := agentsOperatorDir(t, v)
	state := filepath.Join(dir, ".rotplan")
	start := time.Now()
	res = runIn(t, dir, v.Environ(), "run", "-var-file", "agents.vars.hcl", "agents.hcl")
	wall := time.Since(start)
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	t.Logf("the run of both agents took %s (wall, binary started to exit)", wall.Round(time.Millisecond))
	for _, m := range agentTimings.FindAllStringSubmatch(res.stdout, -1) {
		if m[4] != "" {
			t.Logf("%s: verify.%s passed %s after the restart; the agent logged in %s after it", m[2], m[1], m[3], m[4])
		} else {
			t.Logf("%s: verify.%s passed %s after the restart", m[2], m[1], m[3])
		}
	}

	// The journal keeps the same facts: status shows them.
	status := runIn(t, dir, nil, "status", "agents.hcl")
	t.Logf("status:\n%s%s", status.stdout, status.stderr)
	if status.exit != 0 || !regexp.MustCompile(`logged_in_after[=: ]+\d\S*s`).MatchString(status.stdout) {
		t.Errorf("status: exit %d, want the agent checks' logged_in_after among the facts\n%s%s", status.exit, status.stdout, status.stderr)
	}
	res.stdout += status.stdout

	var keyLines []string
	for _, a := range apps {
		serial := certSerial(t, a)
		if serial.Cmp(was[a.Name].serial) == 0 {
			t.Errorf("%s: agent.crt still has serial %s", a.Name, serial)
		}
		waitAgentSerial(t, v, a, serial, was[a.Name].token)
		if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
			t.Errorf("%s: key and certificate do not match: %v", a.Name, err)
		}
		files := agentFiles(t, a)
		for path, mode := range map[string]os.FileMode{a.KeyFile: 0o600, a.CertFile: 0o644, a.CAFile: 0o644} {
			f := files[path]
			if f.mode.Perm() != mode || f.uid != uint32(a.UID) || f.gid != uint32(a.GID) {
				t.Errorf("%s: mode %04o owner %d:%d, want %04o %d:%d", path, f.mode, f.uid, f.gid, mode, a.UID, a.GID)
			}
		}
		mapping := testvault.ReadData(t, root, "auth/cert/certs/"+a.Mapping)
		if got, want := mapping["token_policies"], []any{a.Policy, testvault.MarkerPolicy}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: mapping's token_policies %v, want %v", a.Name, got, want)
		}
		if got, want := mapping["allowed_common_names"], []any{a.CommonName}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: mapping's allowed_common_names %v, want %v", a.Name, got, want)
		}
		if pols := certLogin(t, v, a); !slices.Contains(pols, a.Policy) || !slices.Contains(pols, testvault.MarkerPolicy) {
			t.Errorf("%s: the login's token has policies %v, want %s and %s", a.Name, pols, a.Policy, testvault.MarkerPolicy)
		}
		if pid := a.PID(); pid == 0 || pid == was[a.Name].pid {
			t.Errorf("%s: agent pid %d after the run, %d before: not restarted", a.Name, pid, was[a.Name].pid)
		}
		keyLines = append(keyLines, pemBodyLines(t, a.KeyFile)...)
	}
	leaks := append([]string{"hvs.", "PRIVATE KEY"}, keyLines...)
	for _, bad := range leaks {
		if strings.Contains(res.stdout+res.stderr, bad) {
			t.Errorf("the run's output holds a secret (%.12s…)", bad)
		}
		if files := grepTree(t, state, bad); len(files) > 0 {
			t.Errorf("%v hold a secret (%.12s…)", files, bad)
		}
	}

	// Nothing is due an hour ahead: the second run changes nothing and
	// restarts no agent.
	pids := map[string]int{}
	for _, a := range apps {
		pids[a.Name] = a.PID()
	}
	res = runRotplan(t, v.Environ(), agentArgs(v, "plan", "", "-detailed-exitcode", "-var", "renew_before=1h")...)
	if res.exit != 0 {
		t.Errorf("plan with renew_before 1h: exit %d, want 0 (nothing would change)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	res = runRotplan(t, v.Environ(), agentArgs(v, "run", t.TempDir(), "-detailed-exitcode", "-var", "renew_before=1h")...)
	t.Logf("second run:\n%s", res.stdout)
	if res.exit != 0 {
		t.Errorf("second run with renew_before 1h: exit %d, want 0 (nothing changed)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for _, a := range apps {
		if pid := a.PID(); pid != pids[a.Name] {
			t.Errorf("%s: the second run restarted the agent (pid %d, was %d)", a.Name, pid, pids[a.Name])
		}
	}

	// A drifted mapping on a day with no certificate due: the seed's agent
	// that "looks healthy but cannot authenticate or renew". The preview
	// shows the drift and the run puts the mapping back.
	drifted := apps[0]
	mappingPath := "auth/cert/certs/" + drifted.Mapping
	if _, err := root.Logical().Write(mappingPath, map[string]any{"token_policies": drifted.Policy}); err != nil {
		t.Fatal(err)
	}
	res = runRotplan(t, v.Environ(), agentArgs(v, "plan", "", "-var", "renew_before=1h")...)
	if want := fmt.Sprintf("~ token_policies: [%q] -> [%q, %q]", drifted.Policy, drifted.Policy, testvault.MarkerPolicy); res.exit != 0 || !strings.Contains(res.stdout, want) {
		t.Errorf("plan of a drifted mapping, nothing due: exit %d, want it to show %q\n%s%s", res.exit, want, res.stdout, res.stderr)
	}
	res = runRotplan(t, v.Environ(), agentArgs(v, "run", t.TempDir(), "-detailed-exitcode", "-var", "renew_before=1h")...)
	if res.exit != 2 {
		t.Errorf("run on a drifted mapping, nothing due: exit %d, want 2 (changed)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if got, want := testvault.ReadData(t, root, mappingPath)["token_policies"], []any{drifted.Policy, testvault.MarkerPolicy}; !reflect.DeepEqual(got, want) {
		t.Errorf("%s: token_policies %v after the run, want %v", mappingPath, got, want)
	}
}

func TestAgentsRolledBack(t *testing.T) {
	v, apps := agentsBed(t)
	root := v.Root()
	// Vault not quite as the plan declares it, so that the run changes the
	// mapping and the policies and the rollback has something to restore.
	if _, err := root.Logical().Write("auth/cert/certs/"+apps[0].Mapping, map[string]any{
		"token_policies": apps[0].Policy, "token_ttl": "30m",
	}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicy(testvault.MarkerPolicy, "# an older text\npath \"auth/token/lookup-self\" {\n  capabilities = [\"read\"]\n}\n"); err != nil {
		t.Fatal(err)
	}
	was := agentsBefore(t, apps)
	files := map[string]map[string]fileState{}
	mappings := map[string]map[string]any{}
	policies := map[string]string{}
	for _, a := range apps {
		files[a.Name] = agentFiles(t, a)
		mappings[a.Name] = testvault.ReadData(t, root, "auth/cert/certs/"+a.Mapping)
		for _, p := range []string{a.Policy, testvault.MarkerPolicy} {
			text, err := root.Sys().GetPolicy(p)
			if err != nil {
				t.Fatal(err)
			}
			policies[p] = text
		}
	}

	issuedBefore := issuedSerials(t, v)
	state := t.TempDir()
	res := runRotplan(t, v.Environ(), agentArgs(v, "run", state, "-var", "allowed_cn=agent-%s.wrong.privsec.ch")...)
	t.Logf("run:\n%s%s", res.stdout, res.stderr)
	if res.exit != exitRolledBack {
		t.Fatalf("exit %d, want %d (rolled back)", res.exit, exitRolledBack)
	}
	for _, a := range apps {
		for _, check := range []string{"login", "agent"} {
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^verify\.%s\[%q\] +failed`, check, a.Name)).MatchString(res.stdout) {
				t.Errorf("%s: verify.%s did not fail", a.Name, check)
			}
		}
	}

	// The certificates the run issued, one per app, are revoked.
	var issued []string
	for _, s := range issuedSerials(t, v) {
		if !slices.Contains(issuedBefore, s) {
			issued = append(issued, s)
		}
	}
	if len(issued) != len(apps) {
		t.Errorf("the run issued %d certificates, want one per app (%d)", len(issued), len(apps))
	}
	for _, s := range issued {
		if !isRevoked(t, v, s) {
			t.Errorf("the run's certificate %s is not revoked", s)
		}
	}
	for p, text := range policies {
		if got, _ := root.Sys().GetPolicy(p); got != text {
			t.Errorf("policy %s after rollback differs from before", p)
		}
	}
	for _, a := range apps {
		b := was[a.Name]
		after := agentFiles(t, a)
		for path, f := range files[a.Name] {
			g := after[path]
			if !bytes.Equal(g.data, f.data) || g.mode != f.mode || g.uid != f.uid || g.gid != f.gid {
				t.Errorf("%s not restored: mode %v owner %d:%d, same content %v; before: mode %v owner %d:%d", path, g.mode, g.uid, g.gid, bytes.Equal(g.data, f.data), f.mode, f.uid, f.gid)
			}
		}
		if got := testvault.ReadData(t, root, "auth/cert/certs/"+a.Mapping); !reflect.DeepEqual(got, mappings[a.Name]) {
			t.Errorf("%s: mapping after rollback:\n%#v\nwant as before:\n%#v", a.Name, got, mappings[a.Name])
		}
		// Restarted by the rollback, the agent logged in anew with the old
		// certificate.
		if pid := a.PID(); pid == 0 || pid == b.pid {
			t.Errorf("%s: agent pid %d after the rollback, %d before the run: not restarted", a.Name, pid, b.pid)
		}
		waitAgentSerial(t, v, a, b.serial, b.token)
	}
}
