package steps

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// A bundle check looks at a PEM bundle on disk as a TLS client would see
// it served, before the service is reloaded:
//
//	verify "bundle_ncprd1" {
//	  bundle {
//	    file          = "/etc/nginx/tls/ncprd1.fullchain.pem"
//	    root_file     = "/etc/nginx/tls/root.pem"
//	    key_file      = "/etc/nginx/tls/ncprd1.key"
//	    expect_serial = issue.leaf["ncprd1"].serial_number
//	    expect_name   = "ncprd1.prod.privsec.ch"
//	  }
//	}
//
// The file's first certificate is the leaf (with the expected serial);
// the rest is its chain, which must lead to the root in root_file with
// nothing but what the file holds: a leaf alone or a missing
// intermediate fails, as it would for a client that has only the root.
// The leaf must cover expect_name (a DNS name in its SANs, wildcards as
// a TLS client matches them), and key_file, when given, must hold its
// private key. A file does not change by waiting, so every failure fails
// the check at once (an inputError), as a key_pair check does.
type bundleCheck struct {
	file, rootFile, keyFile string
	expectSerial            *big.Int
	expectName              string
}

var (
	_ check     = bundleCheck{}
	_ expecting = bundleCheck{}
)

// bundleSpec is the schema of a bundle block.
func bundleSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"file":          &hcldec.AttrSpec{Name: "file", Type: cty.String, Required: true},
		"root_file":     &hcldec.AttrSpec{Name: "root_file", Type: cty.String, Required: true},
		"key_file":      &hcldec.AttrSpec{Name: "key_file", Type: cty.String},
		"expect_serial": &hcldec.AttrSpec{Name: "expect_serial", Type: cty.String},
		"expect_name":   &hcldec.AttrSpec{Name: "expect_name", Type: cty.String},
	}
}

// parseBundle reads a bundle block.
func parseBundle(c Config) (check, []error) {
	var b bundleCheck
	var errs []error
	var err error
	b.file, err = c.RequireString("file")
	errs = append(errs, err)
	b.rootFile, err = c.RequireString("root_file")
	errs = append(errs, err)
	if c.Set("key_file") {
		b.keyFile, err = c.RequireString("key_file")
		errs = append(errs, err)
	}
	if c.Set("expect_serial") {
		s, err := c.RequireString("expect_serial")
		errs = append(errs, err)
		if err == nil {
			if b.expectSerial, err = parseSerial(s); err != nil {
				errs = append(errs, attrErr(c.Path("expect_serial"), "%v", err))
			}
		}
	}
	if c.Set("expect_name") {
		b.expectName, err = c.RequireString("expect_name")
		errs = append(errs, err)
	}
	return b, errs
}

// target implements check.
func (b bundleCheck) target() string { return b.file }

// withoutExpectations implements expecting.
func (b bundleCheck) withoutExpectations() check {
	b.expectSerial = nil
	return b
}

// nowFact implements check.
func (bundleCheck) nowFact(res checkResult) string {
	if res.serial == "" {
		return ""
	}
	return "holds serial " + res.serial + ", its chain verifies to the root"
}

// bundleError is a bundle that will not do, pointing at the argument that
// names what is wrong.
func (b bundleCheck) bundleError(arg string, format string, args ...any) error {
	return &inputError{arg: arg, paths: []string{b.file}, err: fmt.Errorf(format, args...)}
}

// attempt reads the bundle and the root and checks them. The error names
// the files and certificates, never a key.
func (b bundleCheck) attempt(ctx context.Context, _ *Env, _ time.Duration) (checkResult, error) {
	if err := ctx.Err(); err != nil {
		return checkResult{}, err
	}
	data, err := readInput("file", b.file)
	if err != nil {
		return checkResult{}, err
	}
	certs, err := pemCertificates(data)
	if err != nil {
		return checkResult{}, b.bundleError("file", "%s: %v", b.file, err)
	}
	if len(certs) == 0 {
		return checkResult{}, b.bundleError("file", "%s holds no PEM certificate", b.file)
	}
	rootPEM, err := readInput("root_file", b.rootFile)
	if err != nil {
		return checkResult{}, err
	}
	rootCerts, err := pemCertificates(rootPEM)
	if err != nil {
		return checkResult{}, &inputError{arg: "root_file", paths: []string{b.rootFile}, err: fmt.Errorf("root_file %s: %v", b.rootFile, err)}
	}
	roots := x509.NewCertPool()
	for _, c := range rootCerts {
		roots.AddCert(c)
	}
	if len(rootCerts) == 0 {
		return checkResult{}, &inputError{arg: "root_file", paths: []string{b.rootFile}, err: fmt.Errorf("root_file %s holds no PEM certificate", b.rootFile)}
	}
	leaf := certs[0]
	res := checkResult{serial: SerialHex(leaf), fingerprint: contentDigest(leaf.Raw)}
	if b.expectSerial != nil && leaf.SerialNumber.Cmp(b.expectSerial) != 0 {
		return res, b.bundleError("expect_serial", "the leaf (first certificate) of %s has serial %s (%s), expected %s: the file does not hold the certificate just issued",
			b.file, res.serial, describeCert(leaf), serialString(b.expectSerial))
	}
	chain := x509.NewCertPool()
	for _, c := range certs[1:] {
		chain.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: chain, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return res, b.bundleError("file", "the chain in %s does not lead to root_file %s: %s", b.file, b.rootFile, b.chainLacks(certs, rootCerts, err))
	}
	if b.expectName != "" {
		if err := leaf.VerifyHostname(b.expectName); err != nil {
			return res, b.bundleError("expect_name", "the leaf of %s (%s) does not cover %q: it is valid for %s",
				b.file, describeCert(leaf), b.expectName, certNames(leaf))
		}
	}
	if b.keyFile != "" {
		if _, err := loadKeyPair(b.file, b.keyFile, "file", "key_file"); err != nil {
			var input *inputError
			if errors.As(err, &input) && input.arg == "file" {
				input.arg = "key_file"
			}
			return res, err
		}
	}
	return res, nil
}

// chainLacks says why the leaf does not verify: which issuer the bundle
// lacks when the chain breaks off, else what the verifier said.
func (b bundleCheck) chainLacks(certs, roots []*x509.Certificate, err error) string {
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		return err.Error()
	}
	// Follow the chain in the file from the leaf for as long as the next
	// issuer is in it; the last certificate reached names what is missing.
	at := certs[0]
	seen := map[*x509.Certificate]bool{at: true}
	for {
		next := issuerIn(at, certs)
		if next == nil || seen[next] {
			break
		}
		seen[next] = true
		at = next
	}
	if len(certs) == 1 {
		return fmt.Sprintf("the file holds the leaf only, no chain: its issuer %q is missing (an incomplete chain: a client with only the root cannot verify it)", at.Issuer.String())
	}
	var held []string
	for _, r := range roots {
		if r.Subject.String() == at.Issuer.String() {
			return fmt.Sprintf("%s was issued by %q, which is not in the file, and root_file holds %s signed with another key: the wrong root, or a chain of another CA",
				describeCert(at), at.Issuer.String(), describeCert(r))
		}
		held = append(held, strconv.Quote(r.Subject.String()))
	}
	return fmt.Sprintf("%s was issued by %q, which is not in the file, and root_file holds %s: a missing intermediate (a client with only the root cannot verify it), or the wrong root",
		describeCert(at), at.Issuer.String(), strings.Join(held, ", "))
}

// issuerIn finds the certificate in certs that signed c.
func issuerIn(c *x509.Certificate, certs []*x509.Certificate) *x509.Certificate {
	for _, p := range certs {
		if p != c && c.CheckSignatureFrom(p) == nil {
			return p
		}
	}
	return nil
}

// pemCertificates parses every CERTIFICATE block of a PEM file, in order.
func pemCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %s %s, not a CERTIFICATE: the file must hold certificates only", n, article(block.Type), block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		certs = append(certs, c)
	}
}

// article is "a" or "an" for a PEM type.
func article(word string) string {
	if word != "" && strings.ContainsRune("AEIOU", rune(word[0])) {
		return "an"
	}
	return "a"
}

// describeCert names a certificate for a message: subject and serial.
func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("%q, serial %s", c.Subject.String(), SerialHex(c))
}

// certNames lists the names a certificate is valid for.
func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no DNS name or IP address (SAN)"
	}
	return strings.Join(names, ", ")
}
