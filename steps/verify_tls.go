package steps

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// A tls check connects to an endpoint, as a client would, and passes only
// if the chain it serves verifies to the given CA for the server name
// (SNI) and, when asked, its leaf has the expected serial or SHA-256
// fingerprint.
type servedCheck struct {
	endpoint
	expectSerial      *big.Int
	expectFingerprint string
}

var (
	_ check     = servedCheck{}
	_ expecting = servedCheck{}
	_ detailed  = servedCheck{}
)

// servedSpec is the schema of a tls block.
func servedSpec() hcldec.ObjectSpec {
	s := endpointSpec()
	s["expect_serial"] = &hcldec.AttrSpec{Name: "expect_serial", Type: cty.String}
	s["expect_fingerprint"] = &hcldec.AttrSpec{Name: "expect_fingerprint", Type: cty.String}
	return s
}

// parseServed reads a tls block.
func parseServed(c Config) (check, []error) {
	var s servedCheck
	var errs []error
	var err error
	s.endpoint, errs = parseEndpoint(c, true)
	if v := c.String("expect_serial"); v != "" {
		if s.expectSerial, err = parseSerial(v); err != nil {
			errs = append(errs, attrErr(c.Path("expect_serial"), "%v", err))
		}
	}
	if f := c.String("expect_fingerprint"); f != "" {
		s.expectFingerprint = normalHex(f)
		if _, err := hex.DecodeString(s.expectFingerprint); err != nil || len(s.expectFingerprint) != 64 {
			errs = append(errs, attrErr(c.Path("expect_fingerprint"), "%q is not a SHA-256 fingerprint in hex", f))
		}
	}
	return s, errs
}

// withoutExpectations implements expecting.
func (s servedCheck) withoutExpectations() check {
	s.expectSerial, s.expectFingerprint = nil, ""
	return s
}

// attempt dials the endpoint afresh (never a reused connection, which
// would still show the certificate from before a reload) and checks what
// it serves.
func (s servedCheck) attempt(ctx context.Context, _ *Env, _ time.Duration) (checkResult, error) {
	e := s.endpoint
	conf, err := e.tlsConfig()
	if err != nil {
		return checkResult{}, err
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: conf}
	conn, err := dialer.DialContext(ctx, "tcp", e.dialAddress())
	if err != nil {
		return checkResult{}, fmt.Errorf("TLS handshake with %s%s (SNI %q): %w", e.address, e.via(), conf.ServerName, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	leaf := state.PeerCertificates[0]
	res := checkResult{serial: SerialHex(leaf), fingerprint: contentDigest(leaf.Raw)}
	if s.expectSerial != nil && leaf.SerialNumber.Cmp(s.expectSerial) != 0 {
		return res, fmt.Errorf("%s serves serial %s, expected %s", e.address, res.serial, serialString(s.expectSerial))
	}
	if s.expectFingerprint != "" && res.fingerprint != s.expectFingerprint {
		return res, fmt.Errorf("%s serves fingerprint %s, expected %s", e.address, res.fingerprint, s.expectFingerprint)
	}
	return res, nil
}

// nowFact implements check.
func (servedCheck) nowFact(res checkResult) string { return servesSerial(res) }

// servesSerial is what a preview says of a certificate a check saw.
func servesSerial(res checkResult) string {
	if res.serial == "" {
		return ""
	}
	return "serves serial " + res.serial
}
