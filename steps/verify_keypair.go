package steps

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// A key_pair check passes if the key file holds the private key of the
// first certificate in the certificate file: what a service loading them
// needs, and what a half-finished rotation breaks.
type keyPairCheck struct {
	certFile, keyFile string
}

var _ check = keyPairCheck{}

// keyPairSpec is the schema of a key_pair block.
func keyPairSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"cert_file": &hcldec.AttrSpec{Name: "cert_file", Type: cty.String, Required: true},
		"key_file":  &hcldec.AttrSpec{Name: "key_file", Type: cty.String, Required: true},
	}
}

// parseKeyPair reads a key_pair block.
func parseKeyPair(c Config) (check, []error) {
	var k keyPairCheck
	var errs []error
	var err error
	k.certFile, err = c.RequireString("cert_file")
	errs = append(errs, err)
	k.keyFile, err = c.RequireString("key_file")
	errs = append(errs, err)
	return k, errs
}

// target implements check.
func (k keyPairCheck) target() string { return k.certFile }

// attempt loads the pair. The error never quotes either file.
func (k keyPairCheck) attempt(ctx context.Context, _ *Env, _ time.Duration) (checkResult, error) {
	if err := ctx.Err(); err != nil {
		return checkResult{}, err
	}
	pair, err := loadKeyPair(k.certFile, k.keyFile, "cert_file", "key_file")
	if err != nil {
		return checkResult{}, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return checkResult{}, fmt.Errorf("%s: %w", k.certFile, err)
	}
	return checkResult{serial: SerialHex(leaf), fingerprint: contentDigest(leaf.Raw)}, nil
}

// nowFact implements check.
func (keyPairCheck) nowFact(res checkResult) string { return servesSerial(res) }
