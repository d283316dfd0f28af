package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
)

// The seed's whole run (examples/everything.hcl) against the full bed:
// Vault, the apps with their real Vault Agents, the edge proxy's real
// nginx with its own agent. Everything is proven from outside: what Vault
// and nginx serve, the serial an agent's token came from, the files'
// bytes, modes and owners, Vault's mappings and policies read through the
// root back door, seal status over mTLS directly and through the edge.

// everythingPlan is the plan of the whole run.
const everythingPlan = "examples/everything.hcl"

// settleWait bounds the wait, after a run, for what a client sees to be
// what is on disk: rotplan's own checks have waited already.
const settleWait = 2 * time.Minute

// wholeBed is the full bed of the whole run.
type wholeBed struct {
	v    *testvault.Vault
	p    *testvault.Proxy
	apps []*testvault.App
	vars map[string]string
}

// newWholeBed starts the full bed. It needs root (system users, files
// owned by them, agents and nginx's workers running as them) and nginx:
// the test is skipped otherwise.
func newWholeBed(t *testing.T) *wholeBed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the whole run needs root: the apps and the proxy are system users, own their files and run their agents and nginx")
	}
	if _, err := testvault.NginxBinary(); err != nil {
		t.Skipf("the whole run needs nginx: %v", err)
	}
	v := testvault.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	apps, err := v.AddApps(ctx, testvault.SeedApps()...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.StartProxy(ctx, testvault.SeedApps()...)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := v.EverythingPlanVars()
	if err != nil {
		t.Fatal(err)
	}
	return &wholeBed{v: v, p: p, apps: apps, vars: vars}
}

// args is a command line for the whole run on the bed: the command, its
// state directory, the bed's variables, then extra arguments (which may
// override them).
func (b *wholeBed) args(command, state string, extra ...string) []string {
	return b.argsFor(everythingPlan, command, state, extra...)
}

// argsFor is args for another plan with the whole run's variables.
func (b *wholeBed) argsFor(plan, command, state string, extra ...string) []string {
	args := []string{command}
	if state != "" {
		args = append(args, "-state-dir", state)
	}
	names := make([]string, 0, len(b.vars))
	for k := range b.vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-var", k+"="+b.vars[k])
	}
	args = append(args, extra...)
	return append(args, plan)
}

// files lists every file the whole run writes.
func (b *wholeBed) files() []string {
	files := rotatedFiles(b.v)
	for _, a := range append(slices.Clone(b.apps), b.p.Agent) {
		files = append(files, a.KeyFile, a.CertFile, a.CAFile)
	}
	for _, app := range append(slices.Clone(b.p.Apps), "vault") {
		chain, key := b.p.LeafFiles(app)
		files = append(files, chain, key)
	}
	return append(files, b.p.CAChainFile)
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

// vaultConfig reads, through the root back door, what the run changes in
// Vault's configuration: the agents' mappings and the policies.
func (b *wholeBed) vaultConfig(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	c := b.v.Root()
	for _, a := range append(slices.Clone(b.apps), b.p.Agent) {
		path := "auth/cert/certs/" + a.Mapping
		out[path] = fmt.Sprint(testvault.ReadData(t, c, path))
	}
	for _, name := range []string{"marker-cert-auth", "pki-issue-ncprd1", "pki-issue-resume2me", "pki-issue-proxyprod", "pki-ca-read-proxyprod"} {
		policy, err := c.Sys().GetPolicy(name)
		if err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		out["sys/policies/acl/"+name] = policy
	}
	return out
}

// seen reads, from outside, the serial a client sees of every certificate
// of the run; settled waits until each is the one on disk.
func (b *wholeBed) seen(t *testing.T, settled bool) map[string]*big.Int {
	t.Helper()
	certs, err := b.v.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleWait)
	defer cancel()
	out := map[string]*big.Int{}
	for _, c := range certs {
		var s *big.Int
		if settled {
			s, err = c.WaitSeen(ctx)
		} else {
			s, err = c.Seen(ctx)
		}
		if err != nil {
			t.Fatalf("%s (%s): %v", c.Name, c.How, err)
		}
		out[c.Name] = s
	}
	return out
}

// checkHealthy is the healthcheck from outside: Vault answers seal status
// over mTLS with the admin identity on disk, unsealed, directly and
// through the Vault edge, trusting the root alone.
func (b *wholeBed) checkHealthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	crt, key := filepath.Join(b.v.AdminDir, "admin.crt"), filepath.Join(b.v.AdminDir, "admin.key")
	if st, err := b.v.SealStatus(ctx, crt, key); err != nil || st.Sealed {
		t.Errorf("vault status directly at %s: %v (sealed: %v)", b.v.HostPort, err, st != nil && st.Sealed)
	}
	// nginx may still be reconnecting to a Vault that restarted a moment
	// ago: the edge gets the same bounded patience as rotplan's gate.
	var last error
	for {
		st, err := b.p.SealStatus(ctx, crt, key)
		if err == nil && !st.Sealed {
			return
		}
		last = err
		if ctx.Err() != nil {
			t.Errorf("vault status through the edge %s: %v", b.p.Addr, last)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// everythingSecrets are what no output or journal of the whole run may
// hold: every private key in place (its PEM body lines), Vault tokens.
func (b *wholeBed) secrets(t *testing.T) []string {
	t.Helper()
	out := []string{"PRIVATE KEY", "hvs.", "hvb.", b.v.RootToken}
	for _, f := range b.files() {
		if strings.HasSuffix(f, ".key") {
			out = append(out, pemBodyLines(t, f)...)
		}
	}
	return out
}

// assertClean checks outputs and every journal in states for secrets.
func (b *wholeBed) assertClean(t *testing.T, states []string, results ...result) {
	t.Helper()
	secrets := b.secrets(t)
	var texts []string
	for _, r := range results {
		texts = append(texts, r.stdout+r.stderr)
	}
	for _, state := range states {
		files, _ := filepath.Glob(filepath.Join(state, "runs", "*.journal"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			texts = append(texts, string(data))
		}
	}
	for i, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("output or journal %d contains a secret (%.12s…)", i, s)
			}
		}
	}
}

// operatorDir copies the whole run's plan into a directory of its own
// with a variable file for the bed (everything.vars.hcl) that leaves the
// Vault address and name out: an operator's checkout, where Vault is
// found through the exported VAULT_* variables.
func (b *wholeBed) operatorDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join(repoRoot(t), everythingPlan), filepath.Join(dir, "everything.hcl"), 0o644)
	names := make([]string, 0, len(b.vars))
	for k := range b.vars {
		if k != "vault_addr" && k != "server_name" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var vars strings.Builder
	for _, k := range names {
		v := b.vars[k]
		if strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{") { // lists and maps: HCL expressions
			fmt.Fprintf(&vars, "%s = %s\n", k, v)
		} else {
			fmt.Fprintf(&vars, "%s = %q\n", k, v)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "everything.vars.hcl"), []byte(vars.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// statusFacts runs `rotplan status -json everything.hcl` in dir, with the
// default state directory, and returns each step's facts.
func (b *wholeBed) statusFacts(t *testing.T, dir string) map[string]map[string]string {
	t.Helper()
	res := runIn(t, dir, b.v.Environ(), "status", "-json", "everything.hcl")
	if res.exit != 0 {
		t.Fatalf("status exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	var doc struct {
		Steps []struct {
			Step  string            `json:"step"`
			Facts map[string]string `json:"facts"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("status -json: %v\n%s", err, res.stdout)
	}
	out := map[string]map[string]string{}
	for _, s := range doc.Steps {
		out[s.Step] = s.Facts
	}
	return out
}

// readySteps are the checks after the restarts, each of which reports how
// long after its restart it first passed: nginx's readiness, then the
// final healthcheck after Vault's.
var readySteps = []string{
	`verify.proxy_ready["ncprd1"]`, `verify.proxy_ready["resume2me"]`,
	"verify.health_status", "verify.health_sni", "verify.health_edge_status", "verify.health_edge_sni",
}

// TestEverythingRotated runs the whole run as an operator does (from the
// plan's directory, a variable file, the default state directory) and
// proves it from outside:
// every certificate a client sees changed and is the one on disk; Vault
// and nginx are new processes; the files have their modes and owners; the
// proxy's chain and mapping are in place; the healthcheck passes directly
// and through the proxy; `rotplan status` shows each check's time to ready
// after the restart. Nothing secret is printed or journaled.
func TestEverythingRotated(t *testing.T) {
	b := newWholeBed(t)
	before := b.seen(t, false)
	vaultPID, nginxPID := b.v.PID(), b.p.PID()

	// As an operator runs it: from the plan's directory, with a variable
	// file, relative paths and the default state directory.
	dir := b.operatorDir(t)
	state := filepath.Join(dir, ".rotplan")
	preview := runIn(t, dir, b.v.Environ(), "plan", "-var-file", "everything.vars.hcl", "everything.hcl")
	if preview.exit != 0 {
		t.Fatalf("plan exited %d\n%s%s", preview.exit, preview.stdout, preview.stderr)
	}
	t0 := time.Now()
	res := runIn(t, dir, b.v.Environ(), "run", "-var-file", "everything.vars.hcl", "everything.hcl")
	took := time.Since(t0)
	if res.exit != 0 {
		t.Fatalf("run exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	t.Logf("the whole run took %s", took.Round(time.Millisecond))

	after := b.seen(t, true)
	for name, was := range before {
		if after[name].Cmp(was) == 0 {
			t.Errorf("%s: a client still sees serial %x", name, was)
		}
	}
	if b.v.PID() == vaultPID {
		t.Errorf("Vault was not restarted (pid %d)", vaultPID)
	}
	if b.p.PID() == nginxPID {
		t.Errorf("nginx was not restarted (master pid %d)", nginxPID)
	}
	b.checkHealthy(t)

	for _, a := range append(slices.Clone(b.apps), b.p.Agent) {
		checkModeOwner(t, a.KeyFile, 0o600, a.User)
		checkModeOwner(t, a.CertFile, 0o644, a.User)
		checkModeOwner(t, a.CAFile, 0o644, a.User)
	}
	for _, app := range append(slices.Clone(b.p.Apps), "vault") {
		chain, key := b.p.LeafFiles(app)
		checkModeOwner(t, chain, 0o644, testvault.ProxyUser)
		checkModeOwner(t, key, 0o600, testvault.ProxyUser)
	}
	checkModeOwner(t, b.p.CAChainFile, 0o644, testvault.ProxyUser)
	chain, err := os.ReadFile(b.p.CAChainFile)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(filepath.Join(b.v.ServerDir, "ca_chain.pem")); !bytes.Equal(chain, want) {
		t.Errorf("%s is not the chain of Vault's new listener certificate", b.p.CAChainFile)
	}
	mapping := testvault.ReadData(t, b.v.Root(), "auth/cert/certs/agent-proxyprod")
	var policies []string
	for _, p := range mapping["token_policies"].([]any) {
		policies = append(policies, fmt.Sprint(p))
	}
	sort.Strings(policies)
	if got := strings.Join(policies, " "); got != "marker-cert-auth pki-ca-read-proxyprod pki-issue-proxyprod" {
		t.Errorf("agent-proxyprod's policies: %s", got)
	}

	facts := b.statusFacts(t, dir)
	for _, step := range readySteps {
		after := facts[step]["passed_after"]
		if after == "" {
			t.Errorf("status shows no time to ready for %s: %v", step, facts[step])
			continue
		}
		t.Logf("%s passed %s after its restart (attempts: %s)", step, after, facts[step]["attempts"])
	}
	for _, step := range []string{"verify.leaf_served[\"ncprd1\"]", "verify.agent_token[\"ncprd1\"]", "verify.proxy_agent_token"} {
		t.Logf("%s passed %s after its reload or restart", step, facts[step]["passed_after"])
	}
	b.assertClean(t, []string{state}, preview, res)
}

// foreignCA writes a CA certificate that has nothing to do with the bed's
// PKI: a proxy chain made of it cannot verify Vault.
func foreignCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Some Other Root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkAsBefore is the state after a rollback, from outside: every file's
// bytes, mode and owner as before the run; Vault's mappings and policies
// as before; every certificate a client sees is the one from before; every
// certificate the run issued is revoked; the healthcheck passes on the old
// state.
func (b *wholeBed) checkAsBefore(t *testing.T, state string, files map[string]fileState, config map[string]string, seen map[string]*big.Int) {
	t.Helper()
	for p, was := range files {
		now := readFiles(t, []string{p})[p]
		if !bytes.Equal(now.data, was.data) {
			t.Errorf("%s: content differs from before the run", p)
		}
		if now.mode != was.mode || now.uid != was.uid || now.gid != was.gid {
			t.Errorf("%s: mode %v owner %d:%d, before %v %d:%d", p, now.mode, now.uid, now.gid, was.mode, was.uid, was.gid)
		}
	}
	for path, was := range b.vaultConfig(t) {
		if config[path] != was {
			t.Errorf("%s differs from before the run:\n now  %s\n was  %s", path, was, config[path])
		}
	}
	for name, s := range b.seen(t, true) {
		if s.Cmp(seen[name]) != 0 {
			t.Errorf("%s: a client sees serial %x, before the run %x", name, s, seen[name])
		}
	}
	b.checkHealthy(t)
	issued := checkIssuedRevoked(t, b.v, state)
	t.Logf("%d certificates the run issued are revoked", issued)
}

// TestEverythingWrongProxyChain points the proxy's chain at a CA that does
// not verify Vault: nginx restarts with it, the edge cannot reach Vault,
// the healthcheck through the proxy fails, and the whole run is rolled
// back: exit 3, every file, mapping and policy as before, every
// certificate the run issued revoked, Vault, nginx and the agents serving
// and using the old certificates, the healthcheck passing on the old
// state.
func TestEverythingWrongProxyChain(t *testing.T) {
	b := newWholeBed(t)
	files := readFiles(t, b.files())
	config := b.vaultConfig(t)
	seen := b.seen(t, false)

	state := t.TempDir()
	res := runRotplan(t, b.v.Environ(), b.args("run", state, "-var", "health_timeout=20s", "-var", "proxy_ca_chain_source="+foreignCA(t))...)
	if res.exit != 3 {
		t.Fatalf("run exited %d, want 3 (failed, rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout+res.stderr, "health_edge_status") {
		t.Errorf("the failure should name the healthcheck through the proxy:\n%s%s", res.stdout, res.stderr)
	}
	t.Logf("run:\n%s%s", res.stdout, res.stderr)
	b.checkAsBefore(t, state, files, config, seen)
	b.assertClean(t, []string{state}, res)
}

// TestEverythingLeafOutsideDomain asks for an app leaf whose name role
// nginx-<app> does not allow: `rotplan plan` reports it, and a run refuses
// before any step runs (exit 1, "nothing was changed"): no file, no certificate, no mapping.
func TestEverythingLeafOutsideDomain(t *testing.T) {
	b := newWholeBed(t)
	files := readFiles(t, b.files())
	config := b.vaultConfig(t)
	issuedBefore := issuedSerials(t, b.v)
	bad := []string{"-var", "leaf_name=%s.example.org"}

	preview := runRotplan(t, b.v.Environ(), b.args("plan", "", bad...)...)
	if preview.exit == 0 || !strings.Contains(preview.stdout+preview.stderr, "ncprd1.example.org") ||
		!strings.Contains(preview.stdout+preview.stderr, "nginx-ncprd1") {
		t.Errorf("plan: exit %d, want non-zero naming ncprd1.example.org and role nginx-ncprd1\n%s%s", preview.exit, preview.stdout, preview.stderr)
	}
	state := t.TempDir()
	res := runRotplan(t, b.v.Environ(), b.args("run", state, bad...)...)
	if res.exit != 1 || !strings.Contains(res.stdout+res.stderr, "nothing was changed") || !strings.Contains(res.stdout+res.stderr, "nginx-ncprd1") {
		t.Errorf("run: exit %d, want 1 (stopped before any step ran, nothing changed) naming role nginx-ncprd1\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for p, was := range files {
		if now := readFiles(t, []string{p})[p]; !bytes.Equal(now.data, was.data) || now.mode != was.mode || now.uid != was.uid {
			t.Errorf("%s changed", p)
		}
	}
	for path, now := range b.vaultConfig(t) {
		if config[path] != now {
			t.Errorf("%s changed", path)
		}
	}
	if after := issuedSerials(t, b.v); strings.Join(after, " ") != strings.Join(issuedBefore, " ") {
		t.Errorf("pki-prod issued %d certificates during a refused run", len(after)-len(issuedBefore))
	}
}

// TestEverythingNginxTestFails: nginx's configuration is broken when the
// run gets to its configuration test (`nginx -t`, real nginx): the run
// stops before the reload, shows nginx's message, and rolls back; nginx's
// workers were never reloaded and serve the old leaves.
func TestEverythingNginxTestFails(t *testing.T) {
	b := newWholeBed(t)
	files := readFiles(t, b.files())
	config := b.vaultConfig(t)
	seen := b.seen(t, false)
	workers := b.p.WorkerPIDs()

	good, err := os.ReadFile(b.p.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	broken := append(bytes.Clone(good), []byte("\nthis_is_not_a_directive on;\n")...)
	if err := os.WriteFile(b.p.ConfigFile, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(b.p.ConfigFile, good, 0o644) })

	state := t.TempDir()
	res := runRotplan(t, b.v.Environ(), b.args("run", state)...)
	if res.exit != 3 {
		t.Fatalf("run exited %d, want 3\n%s%s", res.exit, res.stdout, res.stderr)
	}
	out := res.stdout + res.stderr
	if !strings.Contains(out, "this_is_not_a_directive") || !strings.Contains(out, "nginx_config_leaves") {
		t.Errorf("the failure should name the configuration test and show nginx's message:\n%s", out)
	}
	steps := stepRecords(t, state)
	if _, ran := steps["reload.proxy_leaves"]; ran {
		t.Errorf("the proxy was reloaded after its configuration test failed: %v", steps["reload.proxy_leaves"])
	}
	if err := os.WriteFile(b.p.ConfigFile, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if now := b.p.WorkerPIDs(); fmt.Sprint(now) != fmt.Sprint(workers) {
		t.Errorf("nginx's workers changed from %v to %v: it was reloaded", workers, now)
	}
	b.checkAsBefore(t, state, files, config, seen)
	b.assertClean(t, []string{state}, res)
}

// TestEverythingMismatchedLeafKey writes, by a plan's mistake, another key
// next to an app's new leaf: `nginx -t` would not notice (it does not check
// that a key matches its certificate), the bundle check does, before nginx
// is reloaded; the run is rolled back and nginx never reloads.
func TestEverythingMismatchedLeafKey(t *testing.T) {
	b := newWholeBed(t)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), everythingPlan))
	if err != nil {
		t.Fatal(err)
	}
	const right, wrong = "content     = issue.leaf[each.key].private_key", "content     = issue.agent[each.key].private_key"
	if strings.Count(string(src), right) != 1 {
		t.Fatalf("%s changed shape: %q should appear once", everythingPlan, right)
	}
	plan := filepath.Join(t.TempDir(), "everything.hcl")
	if err := os.WriteFile(plan, []byte(strings.Replace(string(src), right, wrong, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	files := readFiles(t, b.files())
	config := b.vaultConfig(t)
	seen := b.seen(t, false)
	workers := b.p.WorkerPIDs()

	state := t.TempDir()
	res := runRotplan(t, b.v.Environ(), b.argsFor(plan, "run", state)...)
	if res.exit != 3 {
		t.Fatalf("run exited %d, want 3\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if out := res.stdout + res.stderr; !strings.Contains(out, "leaf_bundle") || !strings.Contains(out, "not a key pair") {
		t.Errorf("the failure should be the bundle check's, saying the key does not belong to the leaf:\n%s", out)
	}
	if steps := stepRecords(t, state); len(steps["reload.proxy_leaves"]) > 0 {
		t.Errorf("the proxy was reloaded with a key that does not match: %v", steps["reload.proxy_leaves"])
	}
	if now := b.p.WorkerPIDs(); fmt.Sprint(now) != fmt.Sprint(workers) {
		t.Errorf("nginx's workers changed from %v to %v: it was reloaded", workers, now)
	}
	b.checkAsBefore(t, state, files, config, seen)
	b.assertClean(t, []string{state}, res)
}
