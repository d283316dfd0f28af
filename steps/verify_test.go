package steps

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/testchild"
	"github.com/zclconf/go-cty/cty"
)

func tlsCheck(t *testing.T, tls map[string]cty.Value) Config {
	t.Helper()
	spec := (&Verify{}).Spec()
	nested := map[string]cty.Value{}
	for name, at := range hcldec.ImpliedType(spec).AttributeType("tls").AttributeTypes() {
		nested[name] = cty.NullVal(at)
	}
	for k, v := range tls {
		nested[k] = v
	}
	return testConfig(t, spec, map[string]cty.Value{
		"timeout":  cty.StringVal("400ms"),
		"interval": cty.StringVal("50ms"),
		"tls":      cty.ObjectVal(nested),
	})
}

func TestVerifyTLS(t *testing.T) {
	ca := newTestCA(t)
	leaf, key := ca.leaf(t, "vault.prod.privsec.ch", "127.0.0.1")
	full := serveTLS(t, key, leaf, ca.inter)
	leafOnly := serveTLS(t, key, leaf)

	tests := []struct {
		name    string
		args    map[string]cty.Value
		wantErr string
	}{
		{"full chain, right name", map[string]cty.Value{"address": cty.StringVal(full), "server_name": cty.StringVal("vault.prod.privsec.ch")}, ""},
		{"URL address", map[string]cty.Value{"address": cty.StringVal("https://" + full), "server_name": cty.StringVal("vault.prod.privsec.ch")}, ""},
		{"expected serial", map[string]cty.Value{"address": cty.StringVal(full), "server_name": cty.StringVal("vault.prod.privsec.ch"), "expect_serial": cty.StringVal(SerialHex(leaf))}, ""},
		{"expected serial without colons, upper case", map[string]cty.Value{"address": cty.StringVal(full), "server_name": cty.StringVal("vault.prod.privsec.ch"), "expect_serial": cty.StringVal(strings.ToUpper(strings.ReplaceAll(SerialHex(leaf), ":", "")))}, ""},
		{"wrong serial", map[string]cty.Value{"address": cty.StringVal(full), "server_name": cty.StringVal("vault.prod.privsec.ch"), "expect_serial": cty.StringVal("01:02")}, "expected 01:02"},
		{"wrong fingerprint", map[string]cty.Value{"address": cty.StringVal(full), "server_name": cty.StringVal("vault.prod.privsec.ch"), "expect_fingerprint": cty.StringVal(strings.Repeat("ab", 32))}, "serves fingerprint"},
		{"SNI mismatch", map[string]cty.Value{"address": cty.StringVal(full), "server_name": cty.StringVal("vault.other.example")}, "certificate is valid for"},
		{"incomplete chain", map[string]cty.Value{"address": cty.StringVal(leafOnly), "server_name": cty.StringVal("vault.prod.privsec.ch")}, "unknown authority"},
		{"nothing listening", map[string]cty.Value{"address": cty.StringVal("127.0.0.1:1"), "server_name": cty.StringVal("vault.prod.privsec.ch")}, "refused"},
	}
	for _, tt := range tests {
		// In a bubble, the check's timeout and interval run on the
		// bubble's clock, which stands still while a dial or a handshake
		// is under way: however slow the machine, every attempt ends with
		// what the endpoint did, never with the deadline.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				args := map[string]cty.Value{"ca_file": cty.StringVal(ca.rootFile)}
				for k, v := range tt.args {
					args[k] = v
				}
				cfg := tlsCheck(t, args)
				if err := (&Verify{}).Validate(cfg); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				env, _ := testEnv(t)
				out, err := (&Verify{}).Apply(context.Background(), env, cfg)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("Apply: %v", err)
					}
					if got := out.GetAttr("served_serial").AsString(); got != SerialHex(leaf) {
						t.Errorf("served_serial %s, want %s", got, SerialHex(leaf))
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "attempts") {
					t.Errorf("a failing check should retry until its timeout: %v", err)
				}
			})
		})
	}
}

func TestVerifyValidate(t *testing.T) {
	spec := (&Verify{}).Spec()
	tests := []struct {
		name     string
		cfg      func(t *testing.T) Config
		wantPath string
	}{
		{"no check", func(t *testing.T) Config { return testConfig(t, spec, nil) }, "tls"},
		{"no CA", func(t *testing.T) Config {
			return tlsCheck(t, map[string]cty.Value{"address": cty.StringVal("127.0.0.1:1")})
		}, "tls.address"},
		{"empty CA file", func(t *testing.T) Config {
			return tlsCheck(t, map[string]cty.Value{"address": cty.StringVal("127.0.0.1:1"), "ca_file": cty.StringVal("")})
		}, "tls.ca_file"},
		{"bad serial", func(t *testing.T) Config {
			return tlsCheck(t, map[string]cty.Value{"address": cty.StringVal("127.0.0.1:1"), "ca_file": cty.StringVal("/x"), "expect_serial": cty.StringVal("zz")})
		}, "tls.expect_serial"},
		{"cert without key", func(t *testing.T) Config {
			return tlsCheck(t, map[string]cty.Value{"address": cty.StringVal("127.0.0.1:1"), "ca_file": cty.StringVal("/x"), "client_cert": cty.StringVal("/c")})
		}, "tls.client_cert"},
		{"bad timeout", func(t *testing.T) Config {
			return testConfig(t, spec, map[string]cty.Value{"timeout": cty.StringVal("soon")})
		}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Verify{}).Validate(tt.cfg(t))
			var attrErr *AttrError
			if !errors.As(err, &attrErr) || attrErr.Path != tt.wantPath {
				t.Errorf("Validate error %v, want one on %q", err, tt.wantPath)
			}
		})
	}
	// Unknown values are not errors before the run.
	cfg := tlsCheck(t, map[string]cty.Value{"address": cty.StringVal("127.0.0.1:1"), "ca_file": cty.StringVal("/x"), "expect_serial": cty.UnknownVal(cty.String)})
	if err := (&Verify{}).Validate(cfg); err != nil && err != ErrUnknown {
		t.Errorf("an unknown expect_serial must validate: %v", err)
	}
}

func TestVerifyInterrupted(t *testing.T) {
	ca := newTestCA(t)
	cfg := tlsCheck(t, map[string]cty.Value{
		"address": cty.StringVal("127.0.0.1:1"), "ca_file": cty.StringVal(ca.rootFile),
		"server_name": cty.StringVal("x"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	env, _ := testEnv(t)
	_, err := (&Verify{}).Apply(ctx, env, cfg)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("error %v should say the check was interrupted", err)
	}
}

func TestVerifySummary(t *testing.T) {
	outputs := func(check, serial, version string, attempts cty.Value) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{
			"check": cty.StringVal(check), "attempts": attempts,
			"served_serial": cty.StringVal(serial), "served_fingerprint": cty.StringVal(strings.Repeat("ab", 32)),
			"vault_version": cty.StringVal(version),
		})
	}
	tests := []struct {
		name    string
		outputs cty.Value
		want    []Fact
	}{
		{"tls", outputs("tls", "1a:2b", "", cty.NumberIntVal(3)),
			[]Fact{{"check", "tls"}, {"served_serial", "1a:2b"}, {"attempts", "3"}}},
		{"vault_status", outputs("vault_status", "", "1.21.0", cty.NumberIntVal(1)),
			[]Fact{{"check", "vault_status"}, {"vault_version", "1.21.0"}, {"attempts", "1"}}},
		{"null attempts", outputs("tls", "", "", cty.NullVal(cty.Number)),
			[]Fact{{"check", "tls"}}},
		{"null outputs", cty.NullVal(OutputType((*Verify)(nil))), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFacts(t, (*Verify)(nil).Summary(tt.outputs), tt.want)
		})
	}
}

func TestVerifyKeyPair(t *testing.T) {
	ca := newTestCA(t)
	leaf, key := ca.leaf(t, "app1.example")
	_, otherKey := ca.leaf(t, "app2.example")
	dir := t.TempDir()
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crt := writePEM("app1.crt", "CERTIFICATE", leaf.Raw)
	der, _ := x509.MarshalECPrivateKey(key)
	good := writePEM("app1.key", "EC PRIVATE KEY", der)
	der, _ = x509.MarshalECPrivateKey(otherKey)
	bad := writePEM("other.key", "EC PRIVATE KEY", der)

	v := &Verify{}
	// check runs in a bubble, so that its timeout runs on the bubble's
	// clock, which stands still while the files are read: however slow
	// the machine, the check gets to try.
	check := func(keyFile string) (out cty.Value, err error) {
		synctest.Test(t, func(t *testing.T) {
			cfg := testConfig(t, v.Spec(), map[string]cty.Value{
				"timeout":  cty.StringVal("300ms"),
				"interval": cty.StringVal("100ms"),
				"key_pair": cty.ObjectVal(map[string]cty.Value{"cert_file": cty.StringVal(crt), "key_file": cty.StringVal(keyFile)}),
			})
			if err := v.Validate(cfg); err != nil {
				t.Fatal(err)
			}
			env, _ := testEnv(t)
			out, err = v.Apply(context.Background(), env, cfg)
		})
		return out, err
	}
	out, err := check(good)
	if err != nil {
		t.Fatalf("matching pair: %v", err)
	}
	if got := out.GetAttr("served_serial").AsString(); got != SerialHex(leaf) {
		t.Errorf("serial %s, want %s", got, SerialHex(leaf))
	}
	_, err = check(bad)
	wantErrContains(t, err, "are not a key pair")
	if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("the error quotes a key: %v", err)
	}
}

// TestPreviewReadsDoNotBlockOnAPipe: a current certificate, or a file a
// preview describes, that is a named pipe by mistake must give an error,
// not hang the preview.
func TestPreviewReadsDoNotBlockOnAPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "current.crt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	// Were it to block, the test binary's -timeout would end it with every
	// goroutine's stack, this one's in the open of the pipe.
	_, err := renewalDue(certRequest{renewBefore: time.Hour, current: fifo}, "current", time.Now())
	wantErrContains(t, err, "current", "not a regular file")
}

// TestVerifyInputErrorsFailAtOnce: a CA file that is missing or holds no
// certificate, or a client certificate that cannot be loaded, fails the
// check on its first attempt instead of retrying until the timeout (1h
// here: a retry would hang the test), and the preview reports it as a
// problem of the argument, unless an earlier step writes that file.
func TestVerifyInputErrorsFailAtOnce(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	ca := newTestCA(t)
	cases := []struct {
		name, block string
		attrs       map[string]cty.Value
		arg         string
		want        string
	}{
		{"tls, missing CA file", "tls", map[string]cty.Value{"ca_file": cty.StringVal(missing)}, "tls.ca_file", "no such file"},
		{"tls, CA file not PEM", "tls", map[string]cty.Value{"ca_file": cty.StringVal(notPEM)}, "tls.ca_file", "holds no PEM certificate"},
		{"tls, ca_pem not PEM", "tls", map[string]cty.Value{"ca_pem": cty.StringVal("nope")}, "tls.ca_pem", "holds no PEM certificate"},
		{"vault_status, missing CA file", "vault_status", map[string]cty.Value{"ca_file": cty.StringVal(missing)}, "vault_status.ca_file", "no such file"},
		{"vault_status, client cert not PEM", "vault_status", map[string]cty.Value{
			"ca_file": cty.StringVal(ca.rootFile), "client_cert": cty.StringVal(notPEM), "client_key": cty.StringVal(notPEM),
		}, "vault_status.client_cert", "are not a key pair"},
		{"tls, client key missing", "tls", map[string]cty.Value{
			"ca_file": cty.StringVal(ca.rootFile), "client_cert": cty.StringVal(notPEM), "client_key": cty.StringVal(missing),
		}, "tls.client_key", "no such file"},
	}
	v := &Verify{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			block := map[string]cty.Value{}
			for name, at := range hcldec.ImpliedType(v.Spec()).AttributeType(tc.block).AttributeTypes() {
				block[name] = cty.NullVal(at)
			}
			block["address"] = cty.StringVal("127.0.0.1:1")
			for k, val := range tc.attrs {
				block[k] = val
			}
			cfg := testConfig(t, v.Spec(), map[string]cty.Value{
				"timeout": cty.StringVal("1h"), "interval": cty.StringVal("1h"),
				tc.block: cty.ObjectVal(block),
			})
			env, _ := testEnv(t)
			_, err := v.Apply(context.Background(), env, cfg)
			wantErrContains(t, err, tc.want, "cannot pass", "not retried")
			pv, err := v.Plan(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(pv.Problems) != 1 {
				t.Fatalf("preview problems %v, want one", pv.Problems)
			}
			wantAttrErr(t, pv.Problems[0], tc.arg)
			// A file a step before it writes is not a problem yet.
			for _, val := range tc.attrs {
				if p := val.AsString(); filepath.IsAbs(p) && p != ca.rootFile {
					env.PlanFiles([]string{p})
				}
			}
			if tc.arg == "tls.ca_pem" {
				return
			}
			if pv, _ := v.Plan(context.Background(), env, cfg); len(pv.Problems) != 0 {
				t.Errorf("a file an earlier step writes is reported: %v", pv.Problems)
			}
		})
	}
}

// TestVerifyInputsAreBounded: a CA file that is a device that never ends,
// or far larger than any certificate, fails the check with an error that
// names it, without being read whole. It runs in a child process under a
// memory limit, since before the bound /dev/zero was read until memory ran
// out.
func TestVerifyInputsAreBounded(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(big, make([]byte, maxInputSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path, want string }{
		{"device", "/dev/zero", "/dev/zero is not a regular file"},
		{"too large", big, "is larger than 16 MiB"},
	}
	v := &Verify{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := testchild.Run(t, 2<<30, func() {
				block := map[string]cty.Value{}
				for name, at := range hcldec.ImpliedType(v.Spec()).AttributeType("tls").AttributeTypes() {
					block[name] = cty.NullVal(at)
				}
				block["address"] = cty.StringVal("127.0.0.1:1")
				block["ca_file"] = cty.StringVal(tc.path)
				cfg := testConfig(t, v.Spec(), map[string]cty.Value{
					"timeout": cty.StringVal("1h"), "interval": cty.StringVal("1h"), "tls": cty.ObjectVal(block),
				})
				env, _ := testEnv(t)
				_, err := v.Apply(context.Background(), env, cfg)
				fmt.Printf("error: %v\n", err)
			})
			if !ok {
				t.Fatalf("the child did not finish:\n%s", testchild.Excerpt(out))
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, "not retried") {
				t.Fatalf("want an error saying %q, not retried; got:\n%s", tc.want, testchild.Excerpt(out))
			}
		})
	}
}
