package steps

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

func TestVerifyBundle(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	write := func(name string, parts ...[]byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(byteStrings(parts), "")), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	leaf, leafKey := ca.leaf(t, "ncprd1.prod.privsec.ch")
	wild, _ := ca.leaf(t, "*.prod.privsec.ch")
	_, otherKey := ca.leaf(t, "other.prod.privsec.ch")
	// A second intermediate below the first: a leaf it signs needs both.
	inter2, inter2Key := makeCert(t, "test intermediate 2", ca.inter, ca.interKey, true, nil)
	deep, _ := makeCert(t, "deep.prod.privsec.ch", inter2, inter2Key, false, []string{"deep.prod.privsec.ch"})
	otherCA := newTestCA(t)

	fullchain := write("fullchain.pem", pemCert(leaf), pemCert(ca.inter))
	withRoot := write("withroot.pem", pemCert(leaf), pemCert(ca.inter), pemCert(ca.root))
	leafOnly := write("leaf.pem", pemCert(leaf))
	missing := write("missing.pem", pemCert(deep), pemCert(inter2))
	deepFull := write("deep.pem", pemCert(deep), pemCert(inter2), pemCert(ca.inter))
	wildChain := write("wild.pem", pemCert(wild), pemCert(ca.inter))
	swapped := write("swapped.pem", pemCert(ca.inter), pemCert(leaf))
	withKey := write("withkey.pem", pemCert(leaf), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("x")}))
	empty := write("empty.pem", []byte("not a certificate\n"))
	goodKey := write("leaf.key", ecKeyPEM(t, leafKey))
	badKey := write("other.key", ecKeyPEM(t, otherKey))

	s := cty.StringVal
	tests := []struct {
		name     string
		args     map[string]cty.Value
		wantPath string   // the argument the error points at; "" for a pass
		wantErr  []string // what the error must say
	}{
		{"good chain", map[string]cty.Value{"file": s(fullchain), "expect_serial": s(SerialHex(leaf)), "expect_name": s("ncprd1.prod.privsec.ch"), "key_file": s(goodKey)}, "", nil},
		{"good chain with the root in it", map[string]cty.Value{"file": s(withRoot), "expect_name": s("ncprd1.prod.privsec.ch")}, "", nil},
		{"two intermediates", map[string]cty.Value{"file": s(deepFull), "expect_name": s("deep.prod.privsec.ch")}, "", nil},
		{"leaf only", map[string]cty.Value{"file": s(leafOnly)}, "bundle.file",
			[]string{leafOnly, "holds the leaf only", `"CN=test intermediate" is missing`}},
		{"missing intermediate", map[string]cty.Value{"file": s(missing)}, "bundle.file",
			[]string{`"CN=test intermediate 2"`, `issued by "CN=test intermediate"`, `root_file holds "CN=test root"`, "a missing intermediate"}},
		{"wrong root", map[string]cty.Value{"file": s(fullchain), "root_file": s(otherCA.rootFile)}, "bundle.file",
			[]string{"does not lead to root_file " + otherCA.rootFile, `"CN=test intermediate"`, "is not in the file, and root_file holds", "another key", "the wrong root"}},
		{"leaf not first", map[string]cty.Value{"file": s(swapped), "expect_serial": s(SerialHex(leaf))}, "bundle.expect_serial",
			[]string{"the leaf (first certificate)", SerialHex(ca.inter), "expected " + SerialHex(leaf)}},
		{"wrong serial", map[string]cty.Value{"file": s(fullchain), "expect_serial": s("01:02")}, "bundle.expect_serial",
			[]string{"has serial " + SerialHex(leaf), "expected 01:02"}},
		{"wrong name", map[string]cty.Value{"file": s(fullchain), "expect_name": s("ncprd2.prod.privsec.ch")}, "bundle.expect_name",
			[]string{`does not cover "ncprd2.prod.privsec.ch"`, "valid for ncprd1.prod.privsec.ch"}},
		{"wildcard covers one label", map[string]cty.Value{"file": s(wildChain), "expect_name": s("ncprd1.prod.privsec.ch")}, "", nil},
		{"wildcard does not cover two labels", map[string]cty.Value{"file": s(wildChain), "expect_name": s("a.ncprd1.prod.privsec.ch")}, "bundle.expect_name",
			[]string{`does not cover "a.ncprd1.prod.privsec.ch"`, "valid for *.prod.privsec.ch"}},
		{"wildcard does not cover the bare domain", map[string]cty.Value{"file": s(wildChain), "expect_name": s("prod.privsec.ch")}, "bundle.expect_name",
			[]string{`does not cover "prod.privsec.ch"`}},
		{"exact name is not a wildcard", map[string]cty.Value{"file": s(fullchain), "expect_name": s("*.prod.privsec.ch")}, "bundle.expect_name",
			[]string{`does not cover "*.prod.privsec.ch"`}},
		{"key mismatch", map[string]cty.Value{"file": s(fullchain), "key_file": s(badKey)}, "bundle.key_file",
			[]string{"are not a key pair"}},
		{"missing file", map[string]cty.Value{"file": s(filepath.Join(dir, "absent.pem"))}, "bundle.file",
			[]string{"no such file"}},
		{"no certificate", map[string]cty.Value{"file": s(empty)}, "bundle.file",
			[]string{empty + " holds no PEM certificate"}},
		{"a key in the bundle", map[string]cty.Value{"file": s(withKey)}, "bundle.file",
			[]string{"PEM block 2 is an EC PRIVATE KEY, not a CERTIFICATE"}},
		{"root file without a certificate", map[string]cty.Value{"file": s(fullchain), "root_file": s(empty)}, "bundle.root_file",
			[]string{"holds no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := map[string]cty.Value{"root_file": s(ca.rootFile)}
			for k, v := range tt.args {
				args[k] = v
			}
			// A long timeout: a bundle that will not do fails at once.
			cfg := checkConfig(t, map[string]cty.Value{"timeout": s("1h")}, "bundle", args)
			out, err := validateApply(t, cfg)
			if tt.wantPath == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if got := out.GetAttr("attempts"); !got.RawEquals(cty.NumberIntVal(1)) {
					t.Errorf("attempts = %#v, want 1", got)
				}
				return
			}
			msg := wantAttrErr(t, err, tt.wantPath)
			wantErrContains(t, err, append([]string{"not retried"}, tt.wantErr...)...)
			if strings.Contains(msg, "PRIVATE KEY-----") || strings.Contains(msg, "BEGIN") {
				t.Errorf("the error quotes a file: %v", err)
			}
		})
	}
}

func TestVerifyBundleArguments(t *testing.T) {
	s := cty.StringVal
	tests := []struct {
		name     string
		args     map[string]cty.Value
		wantPath string
	}{
		{"no file", map[string]cty.Value{"root_file": s("/r.pem")}, "bundle.file"},
		{"empty root", map[string]cty.Value{"file": s("/f.pem"), "root_file": s("")}, "bundle.root_file"},
		{"bad serial", map[string]cty.Value{"file": s("/f.pem"), "root_file": s("/r.pem"), "expect_serial": s("zz")}, "bundle.expect_serial"},
		{"empty name", map[string]cty.Value{"file": s("/f.pem"), "root_file": s("/r.pem"), "expect_name": s("")}, "bundle.expect_name"},
		{"empty key file", map[string]cty.Value{"file": s("/f.pem"), "root_file": s("/r.pem"), "key_file": s("")}, "bundle.key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantAttrErr(t, (&Verify{}).Validate(checkConfig(t, nil, "bundle", tt.args)), tt.wantPath)
		})
	}
	unknown := checkConfig(t, nil, "bundle", map[string]cty.Value{"file": s("/f.pem"), "root_file": s("/r.pem"), "expect_serial": cty.UnknownVal(cty.String)})
	if err := (&Verify{}).Validate(unknown); !errors.Is(err, ErrUnknown) {
		t.Errorf("Validate with an unknown serial: %v, want ErrUnknown", err)
	}
}

func byteStrings(parts [][]byte) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

func ecKeyPEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestVerifyBundlePlan: the preview reads the bundle as it is now. A bundle
// that will not do is a problem at the argument, unless a step before the
// check writes the file; then it is only how things are now.
func TestVerifyBundlePlan(t *testing.T) {
	ca := newTestCA(t)
	leaf, _ := ca.leaf(t, "ncprd1.prod.privsec.ch")
	dir := t.TempDir()
	good := filepath.Join(dir, "fullchain.pem")
	leafOnly := filepath.Join(dir, "leaf.pem")
	for path, content := range map[string]string{good: string(pemCert(leaf)) + string(pemCert(ca.inter)), leafOnly: string(pemCert(leaf))} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(file string) Config {
		return checkConfig(t, nil, "bundle", map[string]cty.Value{
			"file": cty.StringVal(file), "root_file": cty.StringVal(ca.rootFile),
			// Another serial: the run's expectation, not the preview's.
			"expect_serial": cty.StringVal("01:02"),
		})
	}
	v := &Verify{}
	env, _ := testEnv(t)
	pv, err := v.Plan(context.Background(), env, cfg(good))
	if err != nil || len(pv.Problems) != 0 {
		t.Fatalf("good bundle: %+v, %v", pv, err)
	}
	wantFacts(t, pv.Now, []Fact{{Name: "now", Value: "holds serial " + SerialHex(leaf) + ", its chain verifies to the root"}})

	pv, err = v.Plan(context.Background(), env, cfg(leafOnly))
	if err != nil || len(pv.Problems) != 1 {
		t.Fatalf("leaf only: %+v, %v; want one problem", pv, err)
	}
	wantAttrErr(t, pv.Problems[0], "bundle.file")

	env.PlanFiles([]string{leafOnly})
	pv, err = v.Plan(context.Background(), env, cfg(leafOnly))
	if err != nil || len(pv.Problems) != 0 || len(pv.Now) != 1 || !strings.HasPrefix(pv.Now[0].Value, "fails: ") {
		t.Fatalf("leaf only, written by a step before: %+v, %v; want no problem, a failure now", pv, err)
	}
}

// validateApply validates a verify step's configuration, which must be
// valid, and applies it; the outputs of a success must match Outputs.
func validateApply(t *testing.T, cfg Config) (cty.Value, error) {
	t.Helper()
	v := &Verify{}
	if err := v.Validate(cfg); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	env, _ := testEnv(t)
	out, err := v.Apply(context.Background(), env, cfg)
	if err == nil {
		wantOutputs(t, v, out)
	}
	return out, err
}
