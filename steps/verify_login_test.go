package steps

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// checkConfig builds a verify step's Config with one check block: the
// block's arguments not in block are null, as hcldec leaves them.
func checkConfig(t *testing.T, top map[string]cty.Value, check string, block map[string]cty.Value) Config {
	t.Helper()
	spec := (&Verify{}).Spec()
	nested := map[string]cty.Value{}
	for name, at := range hcldec.ImpliedType(spec).AttributeType(check).AttributeTypes() {
		nested[name] = cty.NullVal(at)
	}
	for k, v := range block {
		nested[k] = v
	}
	vals := map[string]cty.Value{check: cty.ObjectVal(nested)}
	for k, v := range top {
		vals[k] = v
	}
	return testConfig(t, spec, vals)
}

func stringListVal(ss ...string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	return cty.ListVal(stringValues(ss))
}

func TestVerifyLoginAndAgentValidate(t *testing.T) {
	login := func(more map[string]cty.Value) map[string]cty.Value {
		b := map[string]cty.Value{
			"address": cty.StringVal("127.0.0.1:22400"), "server_name": cty.StringVal("vault.prod.privsec.ch"),
			"ca_file":     cty.StringVal("/home/ncprd1/vault/ca/ca.pem"),
			"client_cert": cty.StringVal("/home/ncprd1/vault/mtls/agent.crt"), "client_key": cty.StringVal("/home/ncprd1/vault/mtls/agent.key"),
			"name": cty.StringVal("agent-ncprd1"), "expect_policies": stringListVal("pki-issue-ncprd1", "marker-cert-auth"),
		}
		for k, v := range more {
			b[k] = v
		}
		return b
	}
	agent := func(more map[string]cty.Value) map[string]cty.Value {
		b := map[string]cty.Value{
			"sink": cty.StringVal("/home/ncprd1/vault/agent-token"), "expect_serial": cty.StringVal("3c:1f:00:aa"),
		}
		for k, v := range more {
			b[k] = v
		}
		return b
	}
	tests := []struct {
		name     string
		top      map[string]cty.Value
		check    string
		block    map[string]cty.Value
		wantPath string // "" for valid
	}{
		{"login", nil, "vault_login", login(nil), ""},
		{"login without policies or name", nil, "vault_login", login(map[string]cty.Value{"expect_policies": cty.NullVal(cty.List(cty.String)), "name": cty.NullVal(cty.String)}), ""},
		{"login, unknown policies", nil, "vault_login", login(map[string]cty.Value{"expect_policies": cty.UnknownVal(cty.List(cty.String))}), ""},
		{"login without client cert", nil, "vault_login", login(map[string]cty.Value{"client_cert": cty.NullVal(cty.String), "client_key": cty.NullVal(cty.String)}), "vault_login.client_cert"},
		{"login, cert without key", nil, "vault_login", login(map[string]cty.Value{"client_key": cty.NullVal(cty.String)}), "vault_login.client_cert"},
		{"login without CA", nil, "vault_login", login(map[string]cty.Value{"ca_file": cty.NullVal(cty.String)}), "vault_login.address"},
		{"login, mount with auth/", nil, "vault_login", login(map[string]cty.Value{"mount": cty.StringVal("auth/cert")}), "vault_login.mount"},
		{"login, empty name", nil, "vault_login", login(map[string]cty.Value{"name": cty.StringVal("")}), "vault_login.name"},
		{"login, no policies listed", nil, "vault_login", login(map[string]cty.Value{"expect_policies": stringListVal()}), "vault_login.expect_policies"},
		{"login, empty policy", nil, "vault_login", login(map[string]cty.Value{"expect_policies": stringListVal("a", "")}), "vault_login.expect_policies"},
		{"agent", nil, "vault_agent", agent(map[string]cty.Value{"cert_name": cty.StringVal("agent-ncprd1")}), ""},
		{"agent, serial not known yet", nil, "vault_agent", agent(map[string]cty.Value{"expect_serial": cty.UnknownVal(cty.String)}), ""},
		{"agent, relative sink", nil, "vault_agent", agent(map[string]cty.Value{"sink": cty.StringVal("agent-token")}), "vault_agent.sink"},
		{"agent, serial not hex", nil, "vault_agent", agent(map[string]cty.Value{"expect_serial": cty.StringVal("serial-42")}), "vault_agent.expect_serial"},
		{"agent, empty cert_name", nil, "vault_agent", agent(map[string]cty.Value{"cert_name": cty.StringVal("")}), "vault_agent.cert_name"},
		{"since", map[string]cty.Value{"since": cty.StringVal("2026-12-06T12:00:01.123456789Z")}, "vault_agent", agent(nil), ""},
		{"since not known yet", map[string]cty.Value{"since": cty.UnknownVal(cty.String)}, "vault_agent", agent(nil), ""},
		{"since not a time", map[string]cty.Value{"since": cty.StringVal("after the reload")}, "vault_agent", agent(nil), "since"},
		{"two checks", map[string]cty.Value{"key_pair": cty.ObjectVal(map[string]cty.Value{"cert_file": cty.StringVal("/a"), "key_file": cty.StringVal("/b")})}, "vault_login", login(nil), "vault_login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Verify{}).Validate(checkConfig(t, tt.top, tt.check, tt.block))
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
			wantAttrErr(t, err, tt.wantPath)
		})
	}
}

// TestVerifyCheckSummaries: the facts the journal keeps of the new
// checks: the mapping, the policies or the token's serial, and how long
// after since the check passed and the agent logged in.
func TestVerifyCheckSummaries(t *testing.T) {
	outputs := func(attrs map[string]cty.Value) cty.Value {
		all := map[string]cty.Value{}
		for name, o := range (*Verify)(nil).Outputs() {
			all[name] = cty.NullVal(o.Type)
		}
		for k, v := range attrs {
			all[k] = v
		}
		return cty.ObjectVal(all)
	}
	tests := []struct {
		name     string
		outputs  cty.Value
		want     []Fact
		wantNote string
	}{
		{"vault_login", outputs(map[string]cty.Value{
			"check": cty.StringVal("vault_login"), "attempts": cty.NumberIntVal(1), "cert_name": cty.StringVal("agent-ncprd1"),
			"policies": stringListVal("default", "marker-cert-auth", "pki-issue-ncprd1"), "passed_after": cty.StringVal("1.5s"),
		}), []Fact{{"check", "vault_login"}, {"cert_name", "agent-ncprd1"}, {"policies", "default,marker-cert-auth,pki-issue-ncprd1"},
			{"attempts", "1"}, {"passed_after", "1.5s"}}, "passed 1.5s after the reload"},
		{"vault_agent", outputs(map[string]cty.Value{
			"check": cty.StringVal("vault_agent"), "attempts": cty.NumberIntVal(4), "cert_name": cty.StringVal("agent-ncprd1"),
			"policies": stringListVal(), "token_serial": cty.StringVal("1a:2b"),
			"passed_after": cty.StringVal("2.9s"), "logged_in_after": cty.StringVal("2.1s"),
		}), []Fact{{"check", "vault_agent"}, {"cert_name", "agent-ncprd1"}, {"token_serial", "1a:2b"},
			{"attempts", "4"}, {"passed_after", "2.9s"}, {"logged_in_after", "2.1s"}}, "passed 2.9s after the reload; the agent logged in 2.1s after it"},
		{"without since", outputs(map[string]cty.Value{
			"check": cty.StringVal("vault_agent"), "token_serial": cty.StringVal("1a:2b"), "passed_after": cty.StringVal(""), "logged_in_after": cty.StringVal(""),
		}), []Fact{{"check", "vault_agent"}, {"token_serial", "1a:2b"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFacts(t, (*Verify)(nil).Summary(tt.outputs), tt.want)
			if note := (*Verify)(nil).Note(tt.outputs); note != tt.wantNote {
				t.Errorf("note %q, want %q", note, tt.wantNote)
			}
		})
	}
}

// TestVerifySince: with since, a check reports how long after it it first
// passed, as an output, a fact and the progress line's note; without,
// none of them.
func TestVerifySince(t *testing.T) {
	ca := newTestCA(t)
	leaf, key := ca.leaf(t, "app1.example")
	dir := t.TempDir()
	crt, keyFile := filepath.Join(dir, "app1.crt"), filepath.Join(dir, "app1.key")
	der, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	v := &Verify{}
	pair := cty.ObjectVal(map[string]cty.Value{"cert_file": cty.StringVal(crt), "key_file": cty.StringVal(keyFile)})
	since := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name  string
		since cty.Value
	}{{"with since", cty.StringVal(since.UTC().Format(time.RFC3339Nano))}, {"without", cty.NullVal(cty.String)}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, v.Spec(), map[string]cty.Value{"since": tc.since, "key_pair": pair})
			wantValid(t, v.Validate(cfg))
			env, _ := testEnv(t)
			out, err := v.Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			wantOutputs(t, v, out)
			after := out.GetAttr("passed_after").AsString()
			var fact string
			for _, f := range v.Summary(out) {
				if f.Name == "passed_after" {
					fact = f.Value
				}
			}
			if tc.since.IsNull() {
				if after != "" || fact != "" || v.Note(out) != "" {
					t.Errorf("without since: passed_after %q, fact %q, note %q", after, fact, v.Note(out))
				}
				return
			}
			d, err := time.ParseDuration(after)
			if err != nil || d < time.Hour {
				t.Errorf("passed_after %q, want a duration of at least the hour since %s", after, tc.since.AsString())
			}
			if fact != after {
				t.Errorf("fact passed_after %q, output %q", fact, after)
			}
			if note := v.Note(out); note != "passed "+after+" after the reload" {
				t.Errorf("note %q", note)
			}
		})
	}
}

// appLogins is what the tests of the cert login and agent checks need of
// the harness Vault: a client-certificate role, two policies and a cert
// auth mapping for an app, agent-checks (CN agent-checks.prod.privsec.ch),
// set up through the root back door as the operator would have.
type appLogins struct {
	v   *testvault.Vault
	dir string
}

const (
	appMapping = "agent-checks"
	appCN      = "agent-checks.prod.privsec.ch"
)

func newAppLogins(t *testing.T) *appLogins {
	t.Helper()
	v := testvault.StartT(t)
	ctx := context.Background()
	root := v.Root()
	if _, err := root.Logical().WriteWithContext(ctx, "pki-prod/roles/checks-client", map[string]any{
		"allow_any_name": true, "enforce_hostnames": false,
		"client_flag": true, "server_flag": false,
		"key_type": "ec", "key_bits": 256, "max_ttl": "24h",
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pki-issue-checks", "marker-cert-auth"} {
		if err := root.Sys().PutPolicyWithContext(ctx, p, `path "pki-prod/issue/checks-client" { capabilities = ["update"] }`); err != nil {
			t.Fatal(err)
		}
	}
	chain, err := os.ReadFile(filepath.Join(v.ServerDir, "ca_chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/cert/certs/"+appMapping, map[string]any{
		"certificate":          string(chain),
		"allowed_common_names": []string{appCN},
		"token_policies":       []string{"pki-issue-checks", "marker-cert-auth"},
		"token_ttl":            "1h",
	}); err != nil {
		t.Fatal(err)
	}
	return &appLogins{v: v, dir: t.TempDir()}
}

// issue issues a client certificate for cn from the checks-client role
// and writes it and its key under the test's directory.
func (a *appLogins) issue(t *testing.T, cn string) (cert *x509.Certificate, certFile, keyFile string) {
	t.Helper()
	s, err := a.v.Root().Logical().WriteWithContext(context.Background(), "pki-prod/issue/checks-client", map[string]any{"common_name": cn, "ttl": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := s.Data["certificate"].(string), s.Data["private_key"].(string)
	certs, err := testvault.ParseCertificates([]byte(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(a.dir, strings.ReplaceAll(SerialHex(certs[0]), ":", ""))
	certFile, keyFile = base+".crt", base+".key"
	if err := os.WriteFile(certFile, []byte(certPEM+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(keyPEM+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return certs[0], certFile, keyFile
}

// tokenAccessors lists the accessors of every token Vault holds, through
// the root back door.
func (a *appLogins) tokenAccessors(t *testing.T) []string {
	t.Helper()
	s, err := a.v.Root().Logical().ListWithContext(context.Background(), "auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range s.Data["keys"].([]any) {
		out = append(out, k.(string))
	}
	slices.Sort(out)
	return out
}

// tokensBack lists the accessors of Vault's tokens until they are the
// ones in want again, for at most 10 s: a revoked token's lease is
// revoked by Vault's expiration manager, which may take its accessor away
// a moment after revoke-self has answered (CI once listed it on a loaded
// machine). A token that is never revoked still shows.
func (a *appLogins) tokensBack(t *testing.T, want []string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := a.tokenAccessors(t)
		if slices.Equal(got, want) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantNoToken fails the test if text holds a Vault service token.
func wantNoToken(t *testing.T, what, text string) {
	t.Helper()
	if strings.Contains(text, "hvs.") {
		t.Errorf("%s holds a Vault token", what)
	}
}

func TestVerifyLoginAgainstVault(t *testing.T) {
	a := newAppLogins(t)
	v := a.v
	_, appCrt, appKey := a.issue(t, appCN)
	_, strangerCrt, strangerKey := a.issue(t, "agent-stranger.prod.privsec.ch")
	admin := map[string]cty.Value{
		"client_cert": cty.StringVal(filepath.Join(v.AdminDir, "admin.crt")),
		"client_key":  cty.StringVal(filepath.Join(v.AdminDir, "admin.key")),
		"name":        cty.StringVal("admin"),
	}
	app := map[string]cty.Value{
		"client_cert": cty.StringVal(appCrt), "client_key": cty.StringVal(appKey),
		"name": cty.StringVal(appMapping),
	}
	with := func(base map[string]cty.Value, more map[string]cty.Value) map[string]cty.Value {
		out := map[string]cty.Value{
			"address": cty.StringVal(v.HostPort), "server_name": cty.StringVal(v.ServerName),
			"ca_file": cty.StringVal(v.RootCAFile),
		}
		for k, val := range base {
			out[k] = val
		}
		for k, val := range more {
			out[k] = val
		}
		return out
	}
	otherCA := newTestCA(t)
	tests := []struct {
		name         string
		block        map[string]cty.Value
		wantErr      []string // nil: passes
		wantPolicies []string
		wantCertName string
	}{
		{"admin, expected policy", with(admin, map[string]cty.Value{"expect_policies": stringListVal("rotplan-admin")}), nil,
			[]string{"default", "rotplan-admin"}, "admin"},
		{"admin, a policy it lacks", with(admin, map[string]cty.Value{"expect_policies": stringListVal("rotplan-admin", "pki-issue-ncprd1")}),
			[]string{"without pki-issue-ncprd1", "default, rotplan-admin"}, nil, ""},
		{"app, both policies", with(app, map[string]cty.Value{"expect_policies": stringListVal("pki-issue-checks", "marker-cert-auth")}), nil,
			[]string{"default", "marker-cert-auth", "pki-issue-checks"}, appMapping},
		{"app, URL address, mount given", with(app, map[string]cty.Value{"address": cty.StringVal(v.Addr), "mount": cty.StringVal("cert")}), nil,
			[]string{"default", "marker-cert-auth", "pki-issue-checks"}, appMapping},
		{"a CN the mapping does not allow", with(app, map[string]cty.Value{"client_cert": cty.StringVal(strangerCrt), "client_key": cty.StringVal(strangerKey)}),
			[]string{"cert login", "auth/cert/login", strangerCrt}, nil, ""},
		{"the wrong CA file", with(app, map[string]cty.Value{"ca_file": cty.StringVal(otherCA.rootFile)}),
			[]string{"certificate signed by unknown authority"}, nil, ""},
	}
	before := a.tokenAccessors(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ve := &Verify{}
			cfg := checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal("2s"), "interval": cty.StringVal("200ms")}, "vault_login", tt.block)
			wantValid(t, ve.Validate(cfg))
			env, logged := testEnv(t)
			out, err := ve.Apply(context.Background(), env, cfg)
			wantNoToken(t, "the log", logged.String())
			if tt.wantErr != nil {
				wantErrContains(t, err, tt.wantErr...)
				wantNoToken(t, "the error", err.Error())
				t.Logf("the check failed as it should: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			wantOutputs(t, ve, out)
			got, _ := outputStrings(out, "policies")
			if !slices.Equal(got, tt.wantPolicies) {
				t.Errorf("policies %v, want %v", got, tt.wantPolicies)
			}
			if name := out.GetAttr("cert_name").AsString(); name != tt.wantCertName {
				t.Errorf("cert_name %q, want %q", name, tt.wantCertName)
			}
			wantNoToken(t, "the outputs", out.GoString())
			for _, f := range ve.Summary(out) {
				wantNoToken(t, "the facts", f.Value)
			}
		})
	}
	// Every login made a token, and revoked it at once: Vault holds the
	// same tokens as before.
	if after := a.tokensBack(t, before); !slices.Equal(before, after) {
		t.Errorf("tokens before the checks %d, after %d: a login's token was not revoked", len(before), len(after))
	}

	t.Run("preview", func(t *testing.T) {
		cfg := checkConfig(t, nil, "vault_login", with(app, map[string]cty.Value{"expect_policies": stringListVal("not-on-it")}))
		env, _ := testEnv(t)
		pv, err := (&Verify{}).Plan(context.Background(), env, cfg)
		if err != nil || len(pv.Problems) != 0 {
			t.Fatalf("Plan: %v, problems %v", err, pv.Problems)
		}
		if len(pv.Now) != 1 || !strings.Contains(pv.Now[0].Value, "logs in with "+appMapping+", policies default, marker-cert-auth, pki-issue-checks") {
			t.Errorf("preview facts %#v", pv.Now)
		}
	})
	if after := a.tokensBack(t, before); !slices.Equal(before, after) {
		t.Errorf("the preview's login token was not revoked")
	}
}
