package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/internal/testvault"
)

// crashApp is the one app of the agents crash test: one app keeps the
// number of boundaries, and the test's time, down.
const crashApp = "ncprd1"

// TestAgentsCrashAtEveryBoundary kills rotplan at every journal boundary of
// examples/agents.hcl for one app (just before each record is written and
// just after it is appended, and in the key's and certificate's writes
// between filling the temporary file and renaming it), each time with the
// app's mapping and policy drifted so that the run writes them, then
// resumes. Each resume exits 0 ("nothing to resume" when the kill came
// after the run's end), and the app ends consistent, checked from outside:
// its key matches its new certificate, the files have their modes and
// owner and no temporary file is left, the certificate is not revoked, the
// mapping and policy are as declared and the mapping trusts the
// certificate's issuer, and the agent's sink token (looked up by root) was
// issued for the certificate's serial under the declared policies. Every
// certificate a resume superseded is revoked. No token and no private key
// is in the state directory after any of them.
func TestAgentsCrashAtEveryBoundary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agents run as their app users: needs root")
	}
	v := testvault.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	apps, err := v.AddApps(ctx, crashApp)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	app := apps[0]
	var vars []string
	for k, val := range v.AgentPlanVars(crashApp) {
		vars = append(vars, "-var", k+"="+val)
	}
	args := func(command, state string) []string {
		return append(append([]string{command, "-state-dir", state}, vars...), "examples/agents.hcl")
	}

	start := time.Now()
	state := t.TempDir()
	driftAgentVault(t, v, app)
	if res := runRotplan(t, v.Environ(), args("run", state)...); res.exit != 0 {
		t.Fatalf("uninterrupted run exited %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkAgentConsistent(t, v, app)
	total := len(readJournal(t, state).Records)
	t.Logf("an uninterrupted run: %d records, %s", total, time.Since(start).Round(time.Millisecond))

	failpoints := boundaries(total)
	// And in the key's and the certificate's writes, between filling the
	// temporary file and its durable start (the CA's content is the same
	// each time: that write changes nothing and fills no temporary file).
	for n := 1; n <= 2; n++ {
		failpoints = append(failpoints, fmt.Sprintf("temp:%d", n))
	}
	// And where a resume must issue anew and revoke, whatever order the
	// parallel steps took: once the key's write has durably started.
	failpoints = append(failpoints, `after-start:write.agent_key["ncprd1"]`)
	revoked, mended := 0, 0
	start = time.Now()
	for _, fp := range failpoints {
		t.Run(strings.ReplaceAll(fp, ":", "_"), func(t *testing.T) {
			state := t.TempDir()
			before := readCert(t, app.CertFile).SerialNumber
			driftAgentVault(t, v, app)
			res := runBinary(t, crashBin, append(v.Environ(), "ROTPLAN_FAILPOINT="+fp), args("run", state)...)
			if res.exit != -1 {
				t.Fatalf("rotplan exited %d instead of being killed\n%s%s", res.exit, res.stdout, res.stderr)
			}
			killed, err := engine.LoadRun(state)
			if err != nil {
				t.Fatalf("reading the journal after the kill: %v", err)
			}
			secrets := agentSecrets(t, app)
			// A kill in the key's write leaves its temporary file, holding
			// the new key: owner-only, and gone after the resume (see
			// checkAgentConsistent).
			if keyTemp := filepath.Join(filepath.Dir(app.KeyFile), ".agent.key.rotplan-tmp"); strings.HasPrefix(fp, "temp:") {
				if fi, err := os.Stat(keyTemp); err == nil {
					if fi.Mode().Perm()&0o077 != 0 {
						t.Errorf("%s, holding the new key, has mode %04o", keyTemp, fi.Mode().Perm())
					}
					secrets = append(secrets, pemBodyLines(t, keyTemp)...)
					t.Logf("the kill left %s", keyTemp)
				}
			}
			if inconsistent(t, v, app) {
				mended++
			}

			res = runRotplan(t, v.Environ(), args("resume", state)...)
			checkResumed(t, killed, state, res)
			revoked += checkSupersededRevoked(t, v, state)
			checkAgentConsistent(t, v, app)
			if readCert(t, app.CertFile).SerialNumber.Cmp(before) == 0 {
				t.Errorf("the certificate on disk is still the one from before the run, serial %s", before)
			}

			secrets = append(secrets, agentSecrets(t, app)...)
			for _, s := range append(secrets, "PRIVATE KEY", "hvs.", "hvb.", v.RootToken) {
				if files := grepTree(t, state, s); len(files) > 0 {
					t.Errorf("%v contain a secret (%.12s…)", files, s)
				}
			}
			assertNoSecrets(t, v, []string{state})
		})
	}
	if revoked == 0 {
		t.Error("no kill made resume issue a certificate anew: the revocation of the superseded one went untested")
	}
	if mended == 0 {
		t.Error("no kill left the app inconsistent: the resumes mended nothing")
	}
	t.Logf("%d kills, each resumed, in %s; %d left the app inconsistent (key and certificate, or the agent's login and the certificate on disk); %d superseded certificates revoked",
		len(failpoints), time.Since(start).Round(time.Second), mended, revoked)
}

// agentSecrets returns what must never reach the state directory of the
// app's rotation: the lines of its key file as it is now, and the token in
// its agent's sink.
func agentSecrets(t *testing.T, app *testvault.App) []string {
	t.Helper()
	secrets := pemBodyLines(t, app.KeyFile)
	tok, err := app.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		secrets = append(secrets, tok)
	}
	return secrets
}

// checkAgentConsistent checks an app's rotation from outside: key and
// certificate match, the files have their modes and owner, the
// certificate on disk is valid in Vault, the mapping trusts its issuer,
// admits its name and gives the declared policies, and the agent logged in
// with it: within a minute, the sink's token carries its serial.
func checkAgentConsistent(t *testing.T, v *testvault.Vault, app *testvault.App) {
	t.Helper()
	if _, err := tls.LoadX509KeyPair(app.CertFile, app.KeyFile); err != nil {
		t.Errorf("%s and %s do not match: %v", app.CertFile, app.KeyFile, err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{app.KeyFile, 0o600}, {app.CertFile, 0o644}, {app.CAFile, 0o644}} {
		checkModeOwner(t, f.path, f.mode, app.User)
	}
	for dir, want := range map[string]string{
		filepath.Dir(app.KeyFile): "agent.crt agent.key",
		filepath.Dir(app.CAFile):  "ca.pem",
	} {
		if got := strings.Join(dirNames(t, dir), " "); got != want {
			t.Errorf("%s holds %s, want %s", dir, got, want)
		}
	}
	crt := readCert(t, app.CertFile)
	if isRevoked(t, v, colonHex(crt)) {
		t.Errorf("the certificate on disk, %s, is revoked", colonHex(crt))
	}

	mapping := testvault.ReadData(t, v.Root(), "auth/cert/certs/"+app.Mapping)
	if !reflect.DeepEqual(mapping["token_policies"], []any{app.Policy, testvault.MarkerPolicy}) ||
		!reflect.DeepEqual(mapping["allowed_common_names"], []any{app.CommonName}) {
		t.Errorf("mapping %s: token_policies %v, allowed_common_names %v", app.Mapping, mapping["token_policies"], mapping["allowed_common_names"])
	}
	if mapping["token_ttl"] != json.Number("3600") {
		t.Errorf("mapping %s: token_ttl %v, want 3600", app.Mapping, mapping["token_ttl"])
	}
	if p, _ := v.Root().Sys().GetPolicy(app.Policy); !strings.Contains(p, `["create", "update"]`) {
		t.Errorf("policy %s: %q", app.Policy, p)
	}
	if cas, err := testvault.ParseCertificates([]byte(fmt.Sprint(mapping["certificate"]))); err != nil || !signedByOneOf(crt, cas) {
		t.Errorf("mapping %s does not trust the issuer of %s (%v)", app.Mapping, app.CertFile, err)
	}

	want := crt.SerialNumber.String()
	var got *testvault.TokenInfo
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// An error: the agent may be replacing a token just revoked.
		if info, err := agentToken(v, app); err == nil {
			if got = info; got.Meta["serial_number"] == want {
				break
			}
		}
	}
	switch {
	case got == nil || got.Meta["serial_number"] != want:
		var serial string
		if got != nil {
			serial = got.Meta["serial_number"]
		}
		t.Errorf("the agent's token was issued for serial %q, the certificate on disk has %s (see %s)", serial, want, app.LogFile)
	case !slices.Contains(got.Policies, app.Policy) || !slices.Contains(got.Policies, testvault.MarkerPolicy):
		t.Errorf("the agent's token has the policies %v: it logged in before the mapping was as declared", got.Policies)
	}
}

// agentToken looks up, as root, the token in the app's sink.
func agentToken(v *testvault.Vault, app *testvault.App) (*testvault.TokenInfo, error) {
	tok, err := app.Token()
	if err != nil || tok == "" {
		return nil, fmt.Errorf("no token in the sink (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return v.LookupToken(ctx, tok)
}

// driftAgentVault makes the app's mapping and policy differ from what the
// plan declares, as drift would, so that every run writes them: the
// mapping without the marker policy and with another TTL, the policy
// granting read only.
func driftAgentVault(t *testing.T, v *testvault.Vault, app *testvault.App) {
	t.Helper()
	root := v.Root()
	if _, err := root.Logical().Write("auth/cert/certs/"+app.Mapping, map[string]any{
		"token_policies": []string{app.Policy}, "token_ttl": "30m",
	}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicy(app.Policy, `path "pki-prod/issue/`+app.Role+`" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
}

// inconsistent tells whether the app's key and certificate do not match,
// or its agent is not logged in with the certificate on disk: what a kill
// may leave, and a resume must mend.
func inconsistent(t *testing.T, v *testvault.Vault, app *testvault.App) bool {
	t.Helper()
	if _, err := tls.LoadX509KeyPair(app.CertFile, app.KeyFile); err != nil {
		return true
	}
	info, err := agentToken(v, app)
	return err != nil || info.Meta["serial_number"] != readCert(t, app.CertFile).SerialNumber.String()
}

// signedByOneOf tells whether one of cas signed c.
func signedByOneOf(c *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if c.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}
