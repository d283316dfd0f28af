package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// cannedIssue stands in for Vault in BenchmarkApplyLeaves: every step gets
// the same key and certificate, so that what is measured is rotplan's own
// work (evaluation, the journal, the writes and checks), not Vault's.
type cannedIssue struct{ outputs cty.Value }

func (c *cannedIssue) Spec() hcldec.ObjectSpec          { return (&steps.Issue{}).Spec() }
func (c *cannedIssue) Outputs() map[string]steps.Output { return (&steps.Issue{}).Outputs() }
func (c *cannedIssue) Validate(cfg steps.Config) error  { return (&steps.Issue{}).Validate(cfg) }
func (c *cannedIssue) Apply(context.Context, *steps.Env, steps.Config) (cty.Value, error) {
	return c.outputs, nil
}

func newCannedIssue(b *testing.B) *cannedIssue {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "app.apps.privsec.ch"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(72 * time.Hour), DNSNames: []string{"app.apps.privsec.ch"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	crt := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	k := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return &cannedIssue{outputs: cty.ObjectVal(map[string]cty.Value{
		"certificate": cty.StringVal(crt), "private_key": cty.StringVal(k), "private_key_type": cty.StringVal("ec"),
		"issuing_ca": cty.StringVal(crt), "ca_chain": cty.ListVal([]cty.Value{cty.StringVal(crt)}),
		"fullchain": cty.StringVal(crt + crt), "serial_number": cty.StringVal("2a"),
		"fingerprint_sha256": cty.StringVal(strings.Repeat("0", 64)), "expiration": cty.StringVal("2030-01-01T00:00:00Z"),
	})}
}

// BenchmarkApplyLeaves runs examples/leaves.hcl for 100 apps (500 steps)
// with Vault replaced by a canned certificate: rotplan's own cost per
// certificate, which on a host it shares with Vault is taken from Vault.
//
//	go test -run XXX -bench ApplyLeaves -cpuprofile cpu.out ./engine
func BenchmarkApplyLeaves(b *testing.B) {
	const apps = 100
	kinds := steps.Registry{"issue": newCannedIssue(b), "write": (*steps.Write)(nil), "verify": (*steps.Verify)(nil)}
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		j, err := journal.Create(filepath.Join(dir, "state"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		src := Sources{Plan: filepath.Join("..", "examples", "leaves.hcl"), Vars: []string{"dir=" + dir, fmt.Sprintf("apps=%d", apps)}}
		l, diags := Load(plans.NewParser(), src, kinds)
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		prog := l.Program
		opts := Options{Journal: j, Parallelism: 16, Rollback: true}
		if _, err := prog.Apply(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		j.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*apps), "µs/cert")
}
