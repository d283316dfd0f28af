package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// adminConnection reaches the harness Vault's production listener as the
// operator does: mTLS with the admin certificate, cert auth login.
func adminConnection(v *testvault.Vault) VaultConnection {
	return VaultConnection{
		Address:       v.Addr,
		CACert:        v.RootCAFile,
		TLSServerName: v.ServerName,
		ClientCert:    filepath.Join(v.AdminDir, "admin.crt"),
		ClientKey:     filepath.Join(v.AdminDir, "admin.key"),
		AuthMethod:    "cert",
		AuthMount:     "cert",
	}
}

func TestIssueAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	env, logged := testEnv(t)
	env = vaultEnv(env.Log, adminConnection(v))

	issue := &Issue{}
	cfg := testConfig(t, issue.Spec(), map[string]cty.Value{
		"mount":       cty.StringVal("pki-prod"),
		"role":        cty.StringVal("vault-server"),
		"common_name": cty.StringVal("vault.prod.privsec.ch"),
		"ip_sans":     cty.ListVal([]cty.Value{cty.StringVal("127.0.0.1")}),
		"ttl":         cty.StringVal("24h"),
	})
	if err := issue.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if err := issue.Prepare(ctx, env, cfg); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	out, err := issue.Apply(ctx, env, cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	str := func(name string) string { return out.GetAttr(name).AsString() }

	pair, err := tls.X509KeyPair([]byte(str("certificate")), []byte(str("private_key")))
	if err != nil {
		t.Fatalf("certificate and private_key do not match: %v", err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.Subject.CommonName != "vault.prod.privsec.ch" || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Errorf("leaf %s with IPs %v", leaf.Subject, leaf.IPAddresses)
	}
	if str("serial_number") != SerialHex(leaf) {
		t.Errorf("serial_number %s, leaf has %s", str("serial_number"), SerialHex(leaf))
	}
	if got := leaf.NotAfter.Sub(time.Now()); got < 23*time.Hour || got > 25*time.Hour {
		t.Errorf("ttl 24h gave a certificate valid for %s", got)
	}
	if exp, err := time.Parse(time.RFC3339, str("expiration")); err != nil || exp.Sub(leaf.NotAfter).Abs() > time.Second {
		t.Errorf("expiration %q vs NotAfter %s", str("expiration"), leaf.NotAfter)
	}
	if str("fullchain") != str("certificate")+str("issuing_ca") {
		t.Error("fullchain is not certificate + issuing_ca")
	}
	chain := out.GetAttr("ca_chain").AsValueSlice()
	if len(chain) != 2 || chain[0].AsString() != str("issuing_ca") {
		t.Fatalf("ca_chain should be [intermediate, root], got %d entries", len(chain))
	}
	block, _ := pem.Decode([]byte(chain[1].AsString()))
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil || root.Subject.String() != root.Issuer.String() {
		t.Errorf("the last ca_chain entry should be the self-signed root")
	}
	if strings.Contains(logged.String(), "PRIVATE KEY") {
		t.Error("the private key was logged")
	}
	if !issue.Outputs()["private_key"].Sensitive {
		t.Error("private_key must be a sensitive output")
	}

	t.Run("name the role does not allow", func(t *testing.T) {
		bad := testConfig(t, issue.Spec(), map[string]cty.Value{
			"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
			"common_name": cty.StringVal("evil.example.com"),
		})
		_, err := issue.Apply(ctx, env, bad)
		if err == nil || !strings.Contains(err.Error(), "pki-prod/issue/vault-server") {
			t.Fatalf("error %v should name the Vault path", err)
		}
	})
}

func TestVaultStatusCheck(t *testing.T) {
	v := testvault.StartT(t)
	spec := (&Verify{}).Spec()
	statusCheck := func(t *testing.T, args map[string]cty.Value) Config {
		nested := map[string]cty.Value{}
		for name, at := range hcldec.ImpliedType(spec).AttributeType("vault_status").AttributeTypes() {
			nested[name] = cty.NullVal(at)
		}
		nested["address"] = cty.StringVal(v.Addr)
		nested["server_name"] = cty.StringVal(v.ServerName)
		nested["ca_file"] = cty.StringVal(v.RootCAFile)
		for k, val := range args {
			nested[k] = val
		}
		return testConfig(t, spec, map[string]cty.Value{
			"timeout": cty.StringVal("1s"), "interval": cty.StringVal("100ms"),
			"vault_status": cty.ObjectVal(nested),
		})
	}
	admin := map[string]cty.Value{
		"client_cert": cty.StringVal(filepath.Join(v.AdminDir, "admin.crt")),
		"client_key":  cty.StringVal(filepath.Join(v.AdminDir, "admin.key")),
	}
	env, _ := testEnv(t)
	out, err := (&Verify{}).Apply(context.Background(), env, statusCheck(t, admin))
	if err != nil {
		t.Fatalf("vault_status with the admin cert: %v", err)
	}
	if out.GetAttr("vault_version").AsString() == "" {
		t.Error("no Vault version reported")
	}
	// The listener requires a client certificate.
	if _, err := (&Verify{}).Apply(context.Background(), env, statusCheck(t, nil)); err == nil {
		t.Error("vault_status without a client certificate passed against an mTLS listener")
	}
	wrongName := map[string]cty.Value{"server_name": cty.StringVal("vault.wrong.example")}
	for k, val := range admin {
		wrongName[k] = val
	}
	if _, err := (&Verify{}).Apply(context.Background(), env, statusCheck(t, wrongName)); err == nil {
		t.Error("vault_status with the wrong TLS server name passed")
	}
}

func TestVaultLoginFailures(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		conn    func() VaultConnection
		wantErr string
	}{
		{"bad token", func() VaultConnection {
			c := adminConnection(v)
			c.AuthMethod, c.Token = "token", "hvs.not-a-real-token-steps-test"
			return c
		}, "checking the token"},
		{"no address", func() VaultConnection { c := adminConnection(v); c.Address = ""; return c }, "VAULT_ADDR"},
		{"no credentials", func() VaultConnection {
			c := adminConnection(v)
			c.ClientCert, c.ClientKey = "", ""
			return c
		}, "VAULT_TOKEN"},
		{"wrong CA", func() VaultConnection {
			c := adminConnection(v)
			c.CACert = filepath.Join(v.AdminDir, "admin.crt")
			return c
		}, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := vaultEnv(nil, tt.conn())
			_, err := env.Vault(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "not-a-real-token") {
				t.Error("the token appears in the error")
			}
		})
	}
}

func TestNewVaultConnectionDefaults(t *testing.T) {
	env := map[string]string{
		"VAULT_ADDR": "https://127.0.0.1:22400", "VAULT_CACERT": "/ca.pem",
		"VAULT_TLS_SERVER_NAME": "vault.prod.privsec.ch",
		"VAULT_CLIENT_CERT":     "/admin.crt", "VAULT_CLIENT_KEY": "/admin.key",
	}
	getenv := func(k string) string { return env[k] }
	block := testConfig(t, VaultSpec(), map[string]cty.Value{"address": cty.StringVal("https://127.0.0.1:8200")})
	c, err := NewVaultConnection(block, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := VaultConnection{
		Address: "https://127.0.0.1:8200", CACert: "/ca.pem", TLSServerName: "vault.prod.privsec.ch",
		ClientCert: "/admin.crt", ClientKey: "/admin.key", AuthMethod: "cert", AuthMount: "cert",
	}
	if c != want {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	env["VAULT_TOKEN"] = "t"
	if c, _ := NewVaultConnection(block, getenv); c.AuthMethod != "token" {
		t.Errorf("with VAULT_TOKEN the method should be token, got %q", c.AuthMethod)
	}
	bad := testConfig(t, VaultSpec(), map[string]cty.Value{"auth": cty.ObjectVal(map[string]cty.Value{
		"method": cty.StringVal("ldap"), "mount": cty.NullVal(cty.String), "role": cty.NullVal(cty.String),
	})})
	var attrErr *AttrError
	if _, err := NewVaultConnection(bad, getenv); !errors.As(err, &attrErr) || attrErr.Path != "auth.method" {
		t.Errorf("an unsupported auth method should be an error on auth.method, got %v", err)
	}
}

// journaled returns an issue step's outputs as the journal keeps them: the
// sensitive private key null.
func journaled(out cty.Value) cty.Value {
	attrs := out.AsValueMap()
	attrs["private_key"] = cty.NullVal(cty.String)
	return cty.ObjectVal(attrs)
}

// revokedAt reads, through the harness's root client, when Vault revoked a
// certificate of pki-prod: 0 when it has not.
func revokedAt(t *testing.T, v *testvault.Vault, serial string) int64 {
	t.Helper()
	secret, err := v.Root().Logical().ReadWithContext(context.Background(), "pki-prod/cert/"+serial)
	if err != nil {
		t.Fatalf("reading pki-prod/cert/%s: %v", serial, err)
	}
	if secret == nil {
		t.Fatalf("pki-prod/cert/%s: no such certificate", serial)
	}
	n, err := strconv.ParseInt(fmt.Sprint(secret.Data["revocation_time"]), 10, 64)
	if err != nil {
		t.Fatalf("pki-prod/cert/%s: revocation_time %v: %v", serial, secret.Data["revocation_time"], err)
	}
	return n
}

func TestIssueSupersedeAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	env, _ := testEnv(t)
	env = vaultEnv(env.Log, adminConnection(v))
	client, err := env.Vault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token := client.Token()
	issue := &Issue{}
	config := func(t *testing.T, revoke cty.Value, ttl string) Config {
		t.Helper()
		return testConfig(t, issue.Spec(), map[string]cty.Value{
			"mount":             cty.StringVal("pki-prod"),
			"role":              cty.StringVal("vault-server"),
			"common_name":       cty.StringVal("vault.prod.privsec.ch"),
			"ttl":               cty.StringVal(ttl),
			"revoke_superseded": revoke,
		})
	}

	tests := []struct {
		name        string
		revoke      cty.Value
		ttl         string
		times       int
		wantNote    string
		wantRevoked bool
	}{
		{"revoke", cty.True, "24h", 1, "revoked in pki-prod", true},
		{"revoke again", cty.True, "24h", 2, "revoked in pki-prod", true},
		{"keep", cty.False, "24h", 1, "not revoked (revoke_superseded is false); it stays valid until ", false},
		{"keep by default", cty.NullVal(cty.Bool), "24h", 1, "not revoked (revoke_superseded is false)", false},
		// Vault declines to revoke a certificate that expires within two
		// seconds, so a one-second certificate is already "expired".
		{"revoke expired", cty.True, "1s", 1, "not revoked in pki-prod: it has already expired", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t, tt.revoke, tt.ttl)
			if err := issue.Validate(cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			out, err := issue.Apply(ctx, env, cfg)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			serial := out.GetAttr("serial_number").AsString()
			var note string
			for i := range tt.times {
				if note, err = issue.Supersede(ctx, env, cfg, journaled(out)); err != nil {
					t.Fatalf("Supersede (call %d): %v", i+1, err)
				}
			}
			want := "superseded certificate serial " + serial + " " + tt.wantNote
			if !strings.HasPrefix(note, want) {
				t.Errorf("note %q, want it to start with %q", note, want)
			}
			if got := revokedAt(t, v, serial) != 0; got != tt.wantRevoked {
				t.Errorf("revoked in Vault: %v, want %v", got, tt.wantRevoked)
			}
		})
	}

	t.Run("serial Vault never issued", func(t *testing.T) {
		previous := cty.ObjectVal(map[string]cty.Value{"serial_number": cty.StringVal("01:02:03")})
		_, err := issue.Supersede(ctx, env, config(t, cty.True, "24h"), previous)
		wantErrContains(t, err, "01:02:03", "pki-prod/revoke", "not found")
		if strings.Contains(err.Error(), token) {
			t.Error("the Vault token appears in the error")
		}
	})
}

func TestIssueSupersedePrevious(t *testing.T) {
	serialOutputs := func(serial cty.Value) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"serial_number": serial, "private_key": cty.NullVal(cty.String)})
	}
	tests := []struct {
		name     string
		previous cty.Value
		wantNote string // "" when an error is expected
		wantErr  string
	}{
		{"colon hex", serialOutputs(cty.StringVal("1a:2b:3c")), "serial 1a:2b:3c not revoked", ""},
		{"upper case", serialOutputs(cty.StringVal("1A:2B")), "serial 1a:2b not revoked", ""},
		{"marked", serialOutputs(cty.StringVal("1a").Mark("sensitive")), "serial 1a not revoked", ""},
		{"no outputs", cty.NilVal, "", "outputs are missing"},
		{"null outputs", cty.NullVal(OutputType(&Issue{})), "", "outputs are missing"},
		// Unknown is how the engine gives a result lost with a killed run.
		{"unknown outputs", cty.DynamicVal, "", `a certificate for "vault.prod.privsec.ch" may have been issued in pki-prod`},
		{"not an object", cty.StringVal("1a:2b"), "", "no serial_number"},
		{"no serial_number", cty.EmptyObjectVal, "", "no serial_number"},
		{"null serial", serialOutputs(cty.NullVal(cty.String)), "", "null, unknown"},
		{"unknown serial", serialOutputs(cty.UnknownVal(cty.String)), "", "vault list pki-prod/certs"},
		{"number serial", serialOutputs(cty.NumberIntVal(12)), "", "not a string"},
		{"empty serial", serialOutputs(cty.StringVal("")), "", "not a serial number"},
		{"without colons", serialOutputs(cty.StringVal("1a2b")), "", "not a serial number"},
		{"odd digits", serialOutputs(cty.StringVal("1a:2")), "", "not a serial number"},
		{"path", serialOutputs(cty.StringVal("1a/../../sys/seal")), "", "not a serial number"},
		{"too long", serialOutputs(cty.StringVal(strings.Repeat("ab:", 64) + "ab")), "", "not a serial number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (&Issue{}).Spec(), map[string]cty.Value{
				"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
				"common_name": cty.StringVal("vault.prod.privsec.ch"), "revoke_superseded": cty.False,
			})
			// No Vault: revoke_superseded is false, and a bad serial must be
			// refused before Vault is asked anything.
			env, _ := testEnv(t)
			note, err := (&Issue{}).Supersede(context.Background(), env, cfg, tt.previous)
			if tt.wantErr != "" {
				wantErrContains(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Supersede: %v", err)
			}
			if !strings.Contains(note, tt.wantNote) {
				t.Errorf("note %q does not say %q", note, tt.wantNote)
			}
		})
	}
}

func TestIssueValidateRevokeSuperseded(t *testing.T) {
	tests := []struct {
		name   string
		revoke cty.Value
		want   error
	}{
		{"true", cty.True, nil},
		{"unset", cty.NullVal(cty.Bool), nil},
		{"unknown", cty.UnknownVal(cty.Bool), ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (&Issue{}).Spec(), map[string]cty.Value{
				"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
				"common_name": cty.StringVal("vault.prod.privsec.ch"), "revoke_superseded": tt.revoke,
			})
			if err := (&Issue{}).Validate(cfg); err != tt.want {
				t.Errorf("Validate: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIssueSummary(t *testing.T) {
	ty := OutputType(&Issue{})
	outputs := func(serial, expiration cty.Value) cty.Value {
		attrs := map[string]cty.Value{}
		for name, at := range ty.AttributeTypes() {
			attrs[name] = cty.NullVal(at)
		}
		attrs["private_key"] = cty.StringVal(testKey).Mark("sensitive")
		attrs["serial_number"] = serial
		attrs["expiration"] = expiration
		return cty.ObjectVal(attrs)
	}
	tests := []struct {
		name    string
		outputs cty.Value
		want    []Fact
	}{
		{"serial and expiry", outputs(cty.StringVal("1a:2b"), cty.StringVal("2030-01-02T03:04:05Z")),
			[]Fact{{"serial", "1a:2b"}, {"expires", "2030-01-02T03:04:05Z"}}},
		{"null serial", outputs(cty.NullVal(cty.String), cty.StringVal("2030-01-02T03:04:05Z")),
			[]Fact{{"expires", "2030-01-02T03:04:05Z"}}},
		{"unknown expiry", outputs(cty.StringVal("1a:2b"), cty.UnknownVal(cty.String)),
			[]Fact{{"serial", "1a:2b"}}},
		{"null outputs", cty.NullVal(ty), nil},
		{"outputs marked as a whole", outputs(cty.StringVal("1a:2b"), cty.StringVal("x")).Mark("sensitive"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := (&Issue{}).Summary(tt.outputs)
			wantFacts(t, got, tt.want)
			for _, f := range got {
				if strings.Contains(f.Value, testKeyBody) {
					t.Errorf("fact %q holds the private key", f.Name)
				}
			}
		})
	}
}

func TestIssueRollbackAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	issue := &Issue{}
	tests := []struct {
		name        string
		revoke      cty.Value
		ttl         string
		wantRevoked bool
		wantLog     string
	}{
		{"revoked by default", cty.NullVal(cty.Bool), "24h", true, "certificate revoked"},
		{"revoked", cty.True, "24h", true, "certificate revoked"},
		{"kept", cty.False, "24h", false, "certificate not revoked (revoke_on_rollback is false)"},
		// Vault declines to revoke a certificate that expires within two
		// seconds; that is no reason for a rollback to fail.
		{"already expired", cty.True, "1s", false, "certificate already expired; not revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, logs := testEnv(t)
			env = vaultEnv(env.Log, adminConnection(v))
			cfg := testConfig(t, issue.Spec(), map[string]cty.Value{
				"mount":              cty.StringVal("pki-prod"),
				"role":               cty.StringVal("vault-server"),
				"common_name":        cty.StringVal("vault.prod.privsec.ch"),
				"ttl":                cty.StringVal(tt.ttl),
				"revoke_on_rollback": tt.revoke,
			})
			if err := issue.Validate(cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			snap, err := issue.Snapshot(ctx, env, cfg)
			if err != nil || snap["mount"] != "pki-prod" || snap["common_name"] != "vault.prod.privsec.ch" || snap["started"] == "" {
				t.Fatalf("Snapshot = %v, %v; want the mount, the common name and when it started", snap, err)
			}
			out, err := issue.Apply(ctx, env, cfg)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			serial := out.GetAttr("serial_number").AsString()
			// Twice, with the outputs as the journal gives them back: a
			// second revocation is answered like the first.
			for i := range 2 {
				if err := issue.Rollback(ctx, env, cfg, journaled(out), snap); err != nil {
					t.Fatalf("Rollback (call %d): %v", i+1, err)
				}
			}
			if got := revokedAt(t, v, serial) != 0; got != tt.wantRevoked {
				t.Errorf("revoked in Vault: %v, want %v", got, tt.wantRevoked)
			}
			if !strings.Contains(logs.String(), tt.wantLog) || !strings.Contains(logs.String(), serial) {
				t.Errorf("the log does not say %q with serial %s:\n%s", tt.wantLog, serial, logs)
			}
			wantNoKey(t, "the log", logs.String())
		})
	}

	t.Run("serial Vault never issued", func(t *testing.T) {
		env := vaultEnv(nil, adminConnection(v))
		cfg := testConfig(t, issue.Spec(), map[string]cty.Value{
			"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
			"common_name": cty.StringVal("vault.prod.privsec.ch"),
		})
		outputs := cty.ObjectVal(map[string]cty.Value{"serial_number": cty.StringVal("01:02:03")})
		err := issue.Rollback(ctx, env, cfg, outputs, map[string]string{})
		wantErrContains(t, err, "issue: rolling back", "pki-prod/revoke", "not found",
			"revoke it by hand: vault write pki-prod/revoke serial_number=01:02:03")
	})
}

// TestIssueRollbackOutputs needs no Vault: with revoke_on_rollback false
// nothing is asked of it, and a serial that cannot be trusted is refused
// before anything is.
func TestIssueRollbackOutputs(t *testing.T) {
	serialOutputs := func(serial cty.Value) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"serial_number": serial, "private_key": cty.NullVal(cty.String)})
	}
	tests := []struct {
		name    string
		revoke  cty.Value
		outputs cty.Value
		wantErr []string // nil: no error
	}{
		{"kept, no outputs", cty.False, cty.NilVal, nil},
		{"kept", cty.False, serialOutputs(cty.StringVal("1a:2b")), nil},
		{"no outputs", cty.True, cty.NilVal, []string{"outputs are missing", "revoke it by hand: vault write pki-prod/revoke serial_number=SERIAL"}},
		// Unknown is how the engine gives a result lost with a killed run.
		{"unknown serial", cty.NullVal(cty.Bool), serialOutputs(cty.UnknownVal(cty.String)), []string{`a certificate for "vault.prod.privsec.ch" may have been issued in pki-prod`, "vault list pki-prod/certs", "revoke it by hand: vault write pki-prod/revoke serial_number=SERIAL"}},
		{"path as serial", cty.True, serialOutputs(cty.StringVal("1a/../../sys/seal")), []string{"not a serial number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (&Issue{}).Spec(), map[string]cty.Value{
				"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
				"common_name": cty.StringVal("vault.prod.privsec.ch"), "revoke_on_rollback": tt.revoke,
			})
			env, _ := testEnv(t) // no Vault connection
			err := (&Issue{}).Rollback(context.Background(), env, cfg, tt.outputs, map[string]string{})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Rollback: %v", err)
				}
				return
			}
			wantErrContains(t, err, tt.wantErr...)
		})
	}
}

func TestIssueValidateRevokeOnRollback(t *testing.T) {
	tests := []struct {
		name   string
		revoke cty.Value
		want   error
	}{
		{"true", cty.True, nil},
		{"false", cty.False, nil},
		{"unset", cty.NullVal(cty.Bool), nil},
		{"unknown", cty.UnknownVal(cty.Bool), ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (&Issue{}).Spec(), map[string]cty.Value{
				"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
				"common_name": cty.StringVal("vault.prod.privsec.ch"), "revoke_on_rollback": tt.revoke,
			})
			if err := (&Issue{}).Validate(cfg); err != tt.want {
				t.Errorf("Validate: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestIssueRequestArguments: what Apply sends to MOUNT/issue/ROLE (and what
// TestCheckRoleAgainstVault sends to compare checkRole with Vault): lists
// joined by commas, as Vault's API takes them, and only the arguments the
// step gives, so that Vault applies its own defaults to the rest.
func TestIssueRequestArguments(t *testing.T) {
	tests := []struct {
		name string
		req  certRequest
		want map[string]any
	}{
		{"common name only", certRequest{mount: "pki", role: "r", commonName: "a.test"},
			map[string]any{"common_name": "a.test", "format": "pem"}},
		{"no common name", certRequest{altNames: []string{"x.test"}},
			map[string]any{"common_name": "", "format": "pem", "alt_names": "x.test"}},
		{"every argument", certRequest{mount: "pki", role: "r", commonName: "a.test", altNames: []string{"b.test", "c.test"},
			ipSANs: []string{"127.0.0.1", "::1"}, uris: []string{"spiffe://x/y", "https://z"}, ttl: "24h", revokeSuperseded: true, renewBefore: time.Hour, current: "/tmp/x.crt"},
			map[string]any{"common_name": "a.test", "format": "pem", "alt_names": "b.test,c.test", "ip_sans": "127.0.0.1,::1",
				"uri_sans": "spiffe://x/y,https://z", "ttl": "24h"}},
		{"empty lists", certRequest{commonName: "a.test", altNames: []string{}, ipSANs: []string{}, uris: []string{}},
			map[string]any{"common_name": "a.test", "format": "pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req.arguments(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("arguments() = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestIssueCheckHostLeavesTheLoginToPrepare: a killed run can leave the
// new admin key beside the old certificate, the identity rotplan logs in
// with, until the resume writes the certificate. The resume's preflight
// comes before that: CheckHost must not log in with the pair that does not
// match, or the failed login is the session's for good and every later
// Vault step fails. Once Prepare has logged in, CheckHost reads the role
// and refuses what it does not allow.
func TestIssueCheckHostLeavesTheLoginToPrepare(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	conn := adminConnection(v)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	copyTo := func(src, dst string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(conn.ClientCert, crt)
	_, other := makeCert(t, "another key", nil, nil, false, nil)
	der, err := x509.MarshalECPrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	origKey := conn.ClientKey
	conn.ClientCert, conn.ClientKey = crt, key
	env := vaultEnv(nil, conn)

	issue := &Issue{}
	request := func(name string) Config {
		return testConfig(t, issue.Spec(), map[string]cty.Value{
			"mount":       cty.StringVal("pki-prod"),
			"role":        cty.StringVal("vault-server"),
			"common_name": cty.StringVal(name),
			"ttl":         cty.StringVal("24h"),
		})
	}
	// Before the login, the check is left for later (ErrUnknown: the
	// engine asks again just before the step runs).
	if err := issue.CheckHost(ctx, env, request("vault.prod.privsec.ch")); err != nil && err != ErrUnknown {
		t.Fatalf("CheckHost before any login: %v", err)
	}
	copyTo(origKey, key) // the resume's write of the certificate, in effect
	if err := issue.Prepare(ctx, env, request("vault.prod.privsec.ch")); err != nil {
		t.Fatalf("Prepare once the key pair matches: %v", err)
	}
	if err := issue.CheckHost(ctx, env, request("vault.prod.privsec.ch")); err != nil {
		t.Errorf("CheckHost of a request the role allows: %v", err)
	}
	if err := issue.CheckHost(ctx, env, request("elsewhere.example.org")); err == nil {
		t.Error("CheckHost after the login: a name outside the role's domains was not refused")
	}
}
