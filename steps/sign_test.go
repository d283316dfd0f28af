package steps

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// signRoles creates, through the harness's root client, the roles the sign
// tests use beside vault-server (key_type rsa, key_bits 2048, Vault's
// default): sign-any signs any key for vault.prod.privsec.ch, sign-ec384
// only EC keys of at least 384 bits.
func signRoles(t *testing.T, v *testvault.Vault) {
	t.Helper()
	base := map[string]any{
		"allowed_domains": []string{"vault.prod.privsec.ch"}, "allow_bare_domains": true,
		"allow_ip_sans": true, "allowed_uri_sans": []string{"spiffe://prod/*"}, "max_ttl": "720h",
	}
	for name, key := range map[string]map[string]any{
		"sign-any":   {"key_type": "any", "key_bits": 0},
		"sign-ec384": {"key_type": "ec", "key_bits": 384},
	} {
		settings := map[string]any{}
		for k, val := range base {
			settings[k] = val
		}
		for k, val := range key {
			settings[k] = val
		}
		if _, err := v.Root().Logical().WriteWithContext(context.Background(), "pki-prod/roles/"+name, settings); err != nil {
			t.Fatalf("creating role %s: %v", name, err)
		}
	}
}

// signTraffic records what a Vault client sends to and receives from
// MOUNT/sign/ROLE, as JSON bodies.
type signTraffic struct {
	mu        sync.Mutex
	requests  []string
	responses []string
}

// watch makes env's Vault session, already open, go through a client that
// records the sign traffic.
func (tr *signTraffic) watch(t *testing.T, env *Env) {
	t.Helper()
	client, err := env.Vault(context.Background())
	if err != nil {
		t.Fatalf("opening the Vault session: %v", err)
	}
	client = client.WithRequestCallbacks(func(r *vaultapi.Request) {
		if !strings.Contains(r.URL.Path, "/sign/") {
			return
		}
		b, err := json.Marshal(r.Obj)
		if err != nil {
			t.Errorf("encoding the request body: %v", err)
		}
		tr.mu.Lock()
		tr.requests = append(tr.requests, string(b))
		tr.mu.Unlock()
	})
	client = client.WithResponseCallbacks(func(r *vaultapi.Response) {
		if r.Request == nil || !strings.Contains(r.Request.URL.Path, "/sign/") {
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the response body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		tr.mu.Lock()
		tr.responses = append(tr.responses, string(b))
		tr.mu.Unlock()
	})
	env.session.client = client
}

func TestSignAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	signRoles(t, v)
	ctx := context.Background()
	sign := &Sign{}
	if !sign.Outputs()["private_key"].Sensitive {
		t.Error("private_key must be a sensitive output")
	}
	if sign.Outputs()["csr"].Sensitive || sign.Outputs()["certificate"].Sensitive {
		t.Error("the CSR and the certificate are public")
	}
	tests := []struct {
		name, role   string
		keyType      cty.Value
		keyBits      cty.Value
		wantType     string
		wantBits     int
		wantPEMBlock string
	}{
		{"ec by default", "sign-any", cty.NilVal, cty.NilVal, "ec", 256, "EC PRIVATE KEY"},
		{"ec 384", "sign-ec384", cty.StringVal("ec"), cty.NumberIntVal(384), "ec", 384, "EC PRIVATE KEY"},
		{"rsa 2048 by default", "vault-server", cty.StringVal("rsa"), cty.NilVal, "rsa", 2048, "RSA PRIVATE KEY"},
		{"rsa 3072", "vault-server", cty.StringVal("rsa"), cty.NumberIntVal(3072), "rsa", 3072, "RSA PRIVATE KEY"},
		{"ed25519", "sign-any", cty.StringVal("ed25519"), cty.NilVal, "ed25519", 0, "PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, logged := testEnv(t)
			env = vaultEnv(env.Log, adminConnection(v))
			cfg := testConfig(t, sign.Spec(), map[string]cty.Value{
				"mount":       cty.StringVal("pki-prod"),
				"role":        cty.StringVal(tt.role),
				"common_name": cty.StringVal("vault.prod.privsec.ch"),
				"ip_sans":     cty.ListVal([]cty.Value{cty.StringVal("127.0.0.1")}),
				"ttl":         cty.StringVal("24h"),
				"key_type":    tt.keyType,
				"key_bits":    tt.keyBits,
			})
			if err := sign.Validate(cfg); err != nil {
				t.Fatal(err)
			}
			if err := sign.Prepare(ctx, env, cfg); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if err := sign.CheckHost(ctx, env, cfg); err != nil {
				t.Fatalf("CheckHost: %v", err)
			}
			var traffic signTraffic
			traffic.watch(t, env)
			out, err := sign.Apply(ctx, env, cfg)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			str := func(name string) string { return out.GetAttr(name).AsString() }

			// The certificate holds the key rotplan generated.
			block, _ := pem.Decode([]byte(str("private_key")))
			if block == nil || block.Type != tt.wantPEMBlock {
				t.Fatalf("private_key is not a %s PEM block", tt.wantPEMBlock)
			}
			key := parsePrivateKeyPEM([]byte(str("private_key")))
			if key == nil {
				t.Fatal("private_key does not parse")
			}
			leaf := parseOne(t, str("certificate"))
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
				t.Error("the certificate's public key is not the generated key's")
			}
			if got := str("private_key_type"); got != tt.wantType {
				t.Errorf("private_key_type %q, want %q", got, tt.wantType)
			}
			switch k := key.(type) {
			case *rsa.PrivateKey:
				if k.N.BitLen() != tt.wantBits {
					t.Errorf("an RSA key of %d bits, want %d", k.N.BitLen(), tt.wantBits)
				}
			case *ecdsa.PrivateKey:
				if k.Curve.Params().BitSize != tt.wantBits {
					t.Errorf("an EC key of %d bits, want %d", k.Curve.Params().BitSize, tt.wantBits)
				}
			}
			csrBlock, _ := pem.Decode([]byte(str("csr")))
			if csrBlock == nil || csrBlock.Type != "CERTIFICATE REQUEST" {
				t.Fatal("csr is not a PEM certificate request")
			}
			csr, err := x509.ParseCertificateRequest(csrBlock.Bytes)
			if err != nil || csr.CheckSignature() != nil {
				t.Fatalf("csr: %v", err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Error("the CSR's public key is not the generated key's")
			}
			if leaf.Subject.CommonName != "vault.prod.privsec.ch" || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
				t.Errorf("leaf %s with IPs %v", leaf.Subject, leaf.IPAddresses)
			}
			if str("serial_number") != SerialHex(leaf) || str("fullchain") != str("certificate")+str("issuing_ca") {
				t.Errorf("serial_number %s (leaf %s), or fullchain is not certificate + issuing_ca", str("serial_number"), SerialHex(leaf))
			}
			if len(out.GetAttr("ca_chain").AsValueSlice()) != 2 {
				t.Error("ca_chain should be [intermediate, root]")
			}

			// Vault never saw the key, nor returned one.
			if len(traffic.requests) != 1 || len(traffic.responses) != 1 {
				t.Fatalf("%d requests and %d responses to MOUNT/sign/ROLE, want one each", len(traffic.requests), len(traffic.responses))
			}
			if strings.Contains(traffic.requests[0], "PRIVATE KEY") || !strings.Contains(traffic.requests[0], "CERTIFICATE REQUEST") {
				t.Errorf("the sign request holds a private key, or no CSR: %s", traffic.requests[0])
			}
			var resp struct {
				Data map[string]any `json:"data"`
			}
			if err := json.Unmarshal([]byte(traffic.responses[0]), &resp); err != nil {
				t.Fatalf("the sign response: %v", err)
			}
			if _, ok := resp.Data["private_key"]; ok || strings.Contains(traffic.responses[0], "PRIVATE KEY") {
				t.Error("Vault's sign response holds a private key")
			}
			if resp.Data["serial_number"] != str("serial_number") {
				t.Errorf("the sign response's serial %v, the output's %s", resp.Data["serial_number"], str("serial_number"))
			}
			if strings.Contains(logged.String(), "PRIVATE KEY") || !strings.Contains(logged.String(), "certificate signed") {
				t.Errorf("the log holds the key or does not say the certificate was signed:\n%s", logged)
			}
		})
	}
}

// parseOne parses the one PEM certificate in text.
func parseOne(t *testing.T, text string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSignRoleRefusals: what the role refuses (a name outside its domains,
// a key of another type or too small) is a problem of the preview and an
// error of CheckHost, pointing at the argument; Vault refuses it too.
// CheckHost reads the role only once the session is open.
func TestSignRoleRefusals(t *testing.T) {
	v := testvault.StartT(t)
	signRoles(t, v)
	ctx := context.Background()
	sign := &Sign{}
	request := func(role, cn string, keyType string, keyBits int64) Config {
		vals := map[string]cty.Value{
			"mount": cty.StringVal("pki-prod"), "role": cty.StringVal(role),
			"common_name": cty.StringVal(cn), "ttl": cty.StringVal("1h"),
		}
		if keyType != "" {
			vals["key_type"] = cty.StringVal(keyType)
		}
		if keyBits != 0 {
			vals["key_bits"] = cty.NumberIntVal(keyBits)
		}
		return testConfig(t, sign.Spec(), vals)
	}

	env := vaultEnv(nil, adminConnection(v))
	if err := sign.CheckHost(ctx, env, request("vault-server", "evil.example.com", "", 0)); err != ErrUnknown {
		t.Fatalf("CheckHost before any login: %v, want ErrUnknown (checked again before Apply)", err)
	}
	if _, open := env.VaultIfOpen(); open {
		t.Fatal("CheckHost logged in to Vault")
	}
	if err := sign.Prepare(ctx, env, request("vault-server", "vault.prod.privsec.ch", "rsa", 0)); err != nil {
		t.Fatalf("Prepare: %v", err)
	}

	tests := []struct {
		name          string
		cfg           Config
		path, message string // "" when the role allows the request
	}{
		{"allowed", request("vault-server", "vault.prod.privsec.ch", "rsa", 0), "", ""},
		{"name outside the domains", request("sign-any", "evil.example.com", "", 0), "common_name", `does not allow common name "evil.example.com"`},
		{"ec key for an rsa role", request("vault-server", "vault.prod.privsec.ch", "", 0), "key_type", "requires keys of type rsa"},
		{"ed25519 key for an ec role", request("sign-ec384", "vault.prod.privsec.ch", "ed25519", 0), "key_type", "requires keys of type ec"},
		{"ec key too small", request("sign-ec384", "vault.prod.privsec.ch", "ec", 256), "key_bits", "at least 384 bits"},
		{"larger key than the role asks", request("sign-ec384", "vault.prod.privsec.ch", "ec", 521), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pv, err := sign.Plan(ctx, env, tt.cfg)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if !anyContains(factValues(pv.Now), "generated by rotplan") {
				t.Errorf("the preview does not say rotplan generates the key: %v", pv.Now)
			}
			checkErr := sign.CheckHost(ctx, env, tt.cfg)
			_, applyErr := sign.Apply(ctx, env, tt.cfg)
			if tt.path == "" {
				if len(pv.Problems) > 0 || checkErr != nil || applyErr != nil {
					t.Fatalf("problems %q, CheckHost %v, Apply %v; want none", errorStrings(pv.Problems), checkErr, applyErr)
				}
				return
			}
			if len(pv.Problems) != 1 {
				t.Fatalf("preview problems %q, want one on %s", errorStrings(pv.Problems), tt.path)
			}
			if msg := wantAttrErr(t, pv.Problems[0], tt.path); !strings.Contains(msg, tt.message) {
				t.Errorf("preview problem %q does not say %q", msg, tt.message)
			}
			if msg := wantAttrErr(t, checkErr, tt.path); !strings.Contains(msg, tt.message) {
				t.Errorf("CheckHost error %q does not say %q", msg, tt.message)
			}
			if applyErr == nil || !strings.Contains(applyErr.Error(), "pki-prod/sign/") {
				t.Errorf("Vault signed what the check refuses (Apply error %v)", applyErr)
			}
		})
	}
}

func factValues(facts []Fact) []string {
	out := make([]string, len(facts))
	for i, f := range facts {
		out[i] = f.Name + ": " + f.Value
	}
	return out
}

// TestCheckRoleSignKeysAgainstVault: for every key rotplan generates and
// roles of every key type, checkRole refuses exactly the keys Vault
// refuses to sign.
func TestCheckRoleSignKeysAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	root := v.Root()
	keys := []keySpec{{"ec", 256}, {"ec", 384}, {"ec", 521}, {"rsa", 2048}, {"rsa", 3072}, {"ed25519", 0}}
	roles := []map[string]any{
		{"key_type": "ec", "key_bits": 256}, {"key_type": "ec", "key_bits": 384}, {"key_type": "ec", "key_bits": 521},
		{"key_type": "rsa", "key_bits": 2048}, {"key_type": "rsa", "key_bits": 3072}, {"key_type": "rsa", "key_bits": 4096},
		{"key_type": "ed25519"}, {"key_type": "any", "key_bits": 0},
	}
	csrs := map[keySpec]string{}
	for _, k := range keys {
		key, _, err := k.generate()
		if err != nil {
			t.Fatal(err)
		}
		req := certRequest{commonName: "a.example.com"}
		if csrs[k], err = req.csr(key); err != nil {
			t.Fatal(err)
		}
	}
	agreed, refused := 0, 0
	for i, settings := range roles {
		name := fmt.Sprintf("signkeys-%d", i)
		settings["allowed_domains"] = []string{"example.com"}
		settings["allow_subdomains"] = true
		path := "pki-prod/roles/" + name
		if _, err := root.Logical().WriteWithContext(ctx, path, settings); err != nil {
			t.Fatalf("creating %s: %v", path, err)
		}
		secret, err := root.Logical().ReadWithContext(ctx, path)
		if err != nil || secret == nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		roleName := fmt.Sprintf("role %v %v", settings["key_type"], settings["key_bits"])
		for _, k := range keys {
			t.Run(roleName+"/"+k.String(), func(t *testing.T) {
				k := k
				req := certRequest{mount: "pki-prod", role: name, commonName: "a.example.com", ttl: "1h", key: &k}
				problems, _ := checkRole(secret.Data, req)
				args := req.arguments()
				args["csr"] = csrs[k]
				_, err := root.Logical().WriteWithContext(ctx, "pki-prod/sign/"+name, args)
				if (len(problems) == 0) != (err == nil) {
					t.Fatalf("checkRole and Vault disagree: Vault error %v; problems %q", err, errorStrings(problems))
				}
				if err != nil {
					refused++
				}
				if err != nil && !anyContains(problemPaths(problems), "key_") {
					t.Errorf("Vault refused (%v); the problems point at %q, not the key", err, problemPaths(problems))
				}
				agreed++
			})
		}
	}
	t.Logf("checkRole agreed with Vault on %d keys, %d of them refused", agreed, refused)
}

func TestSignRollbackAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	signRoles(t, v)
	ctx := context.Background()
	sign := &Sign{}
	env, logs := testEnv(t)
	env = vaultEnv(env.Log, adminConnection(v))
	cfg := testConfig(t, sign.Spec(), map[string]cty.Value{
		"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("sign-any"),
		"common_name": cty.StringVal("vault.prod.privsec.ch"), "ttl": cty.StringVal("24h"),
	})
	snap, err := sign.Snapshot(ctx, env, cfg)
	if err != nil || snap["mount"] != "pki-prod" || snap["common_name"] != "vault.prod.privsec.ch" || snap["started"] == "" {
		t.Fatalf("Snapshot = %v, %v; want the mount, the common name and when it started", snap, err)
	}
	out, err := sign.Apply(ctx, env, cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	serial := out.GetAttr("serial_number").AsString()
	for i := range 2 {
		if err := sign.Rollback(ctx, env, cfg, journaled(out), snap); err != nil {
			t.Fatalf("Rollback (call %d): %v", i+1, err)
		}
	}
	if revokedAt(t, v, serial) == 0 {
		t.Error("the rollback did not revoke the signed certificate")
	}
	if !strings.Contains(logs.String(), "certificate revoked") || !strings.Contains(logs.String(), serial) {
		t.Errorf("the log does not say the certificate %s was revoked:\n%s", serial, logs)
	}
	wantNoKey(t, "the log", logs.String())

	// A step killed before its serial was journaled: the error names the
	// kind and says how to find the certificate.
	lost := cty.UnknownVal(OutputType(sign))
	err = sign.Rollback(ctx, env, cfg, lost, snap)
	wantErrContains(t, err, "sign: rolling back", "vault list", snap["started"])
	if _, err := sign.Supersede(ctx, env, cfg, lost); err == nil || !strings.Contains(err.Error(), "was killed before its serial was journaled") {
		t.Errorf("Supersede of a lost certificate: %v", err)
	}
}

// TestSignValidate needs no Vault: bad arguments are errors on the
// argument, and the key's defaults are ec 256 and rsa 2048.
func TestSignValidate(t *testing.T) {
	sign := &Sign{}
	base := func(extra map[string]cty.Value) Config {
		vals := map[string]cty.Value{
			"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("web"),
			"common_name": cty.StringVal("web.example.com"),
		}
		for k, v := range extra {
			vals[k] = v
		}
		return testConfig(t, sign.Spec(), vals)
	}
	tests := []struct {
		name    string
		extra   map[string]cty.Value
		path    string // "" for valid
		message string
		want    keySpec
	}{
		{"defaults", nil, "", "", keySpec{"ec", 256}},
		{"rsa default", map[string]cty.Value{"key_type": cty.StringVal("rsa")}, "", "", keySpec{"rsa", 2048}},
		{"rsa 4096", map[string]cty.Value{"key_type": cty.StringVal("rsa"), "key_bits": cty.NumberIntVal(4096)}, "", "", keySpec{"rsa", 4096}},
		{"ec 521", map[string]cty.Value{"key_bits": cty.NumberIntVal(521)}, "", "", keySpec{"ec", 521}},
		{"ed25519", map[string]cty.Value{"key_type": cty.StringVal("ed25519")}, "", "", keySpec{"ed25519", 0}},
		{"unknown key type", map[string]cty.Value{"key_type": cty.StringVal("dsa")}, "key_type", `not "dsa"`, keySpec{}},
		{"upper-case key type", map[string]cty.Value{"key_type": cty.StringVal("RSA")}, "key_type", `must be "ec", "rsa" or "ed25519"`, keySpec{}},
		{"rsa too small", map[string]cty.Value{"key_type": cty.StringVal("rsa"), "key_bits": cty.NumberIntVal(1024)}, "key_bits", "2048, 3072 or 4096", keySpec{}},
		{"ec size for rsa", map[string]cty.Value{"key_type": cty.StringVal("rsa"), "key_bits": cty.NumberIntVal(256)}, "key_bits", "rsa key of 256 bits", keySpec{}},
		{"rsa size for ec", map[string]cty.Value{"key_bits": cty.NumberIntVal(2048)}, "key_bits", "256, 384 or 521", keySpec{}},
		{"ed25519 with bits", map[string]cty.Value{"key_type": cty.StringVal("ed25519"), "key_bits": cty.NumberIntVal(256)}, "key_bits", "fixed size", keySpec{}},
		{"fraction", map[string]cty.Value{"key_bits": cty.NumberFloatVal(256.5)}, "key_bits", "not a whole number", keySpec{}},
		{"shared argument", map[string]cty.Value{"ip_sans": cty.ListVal([]cty.Value{cty.StringVal("nope")})}, "ip_sans", "not an IP address", keySpec{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base(tt.extra)
			err := sign.Validate(cfg)
			if tt.path == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				req, _ := parseSign(cfg)
				if *req.key != tt.want {
					t.Errorf("key %v, want %v", *req.key, tt.want)
				}
				return
			}
			if msg := wantAttrErr(t, err, tt.path); !strings.Contains(msg, tt.message) {
				t.Errorf("error %q does not say %q", msg, tt.message)
			}
		})
	}

	t.Run("unknown key type", func(t *testing.T) {
		cfg := base(map[string]cty.Value{"key_type": cty.UnknownVal(cty.String)})
		if err := sign.Validate(cfg); !errors.Is(err, ErrUnknown) {
			t.Errorf("Validate: %v, want ErrUnknown", err)
		}
		req, _ := parseSign(cfg)
		if problems, _ := checkRole(map[string]any{"key_type": "rsa", "key_bits": json.Number("2048"), "allow_any_name": true}, req); len(problems) > 0 {
			t.Errorf("a key not known yet was refused: %q", errorStrings(problems))
		}
	})
}
