package steps

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Issue issues a certificate and its private key from a Vault PKI role
// (`<mount>/issue/<role>`).
//
//	issue "server" {
//	  mount       = "pki-prod"
//	  role        = "vault-server"
//	  common_name = "vault.prod.privsec.ch"
//	  ip_sans     = ["127.0.0.1"]
//	  ttl         = "720h"
//	}
type Issue struct{}

var (
	_ Step     = (*Issue)(nil)
	_ Preparer = (*Issue)(nil)
)

// Spec implements Step.
func (*Issue) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"mount":       &hcldec.AttrSpec{Name: "mount", Type: cty.String, Required: true},
		"role":        &hcldec.AttrSpec{Name: "role", Type: cty.String, Required: true},
		"common_name": &hcldec.AttrSpec{Name: "common_name", Type: cty.String, Required: true},
		"alt_names":   &hcldec.AttrSpec{Name: "alt_names", Type: cty.List(cty.String)},
		"ip_sans":     &hcldec.AttrSpec{Name: "ip_sans", Type: cty.List(cty.String)},
		"uri_sans":    &hcldec.AttrSpec{Name: "uri_sans", Type: cty.List(cty.String)},
		"ttl":         &hcldec.AttrSpec{Name: "ttl", Type: cty.String},
	}
}

// Outputs implements Step. The private key is the one sensitive output.
func (*Issue) Outputs() map[string]Output {
	return map[string]Output{
		"certificate":        {Type: cty.String},
		"private_key":        {Type: cty.String, Sensitive: true},
		"private_key_type":   {Type: cty.String},
		"issuing_ca":         {Type: cty.String},
		"ca_chain":           {Type: cty.List(cty.String)},
		"fullchain":          {Type: cty.String},
		"serial_number":      {Type: cty.String},
		"fingerprint_sha256": {Type: cty.String},
		"expiration":         {Type: cty.String},
	}
}

type issueRequest struct {
	mount, role, commonName string
	altNames, ipSANs, uris  []string
	ttl                     string
}

func parseIssue(cfg Config) (issueRequest, error) {
	r := issueRequest{ttl: cfg.String("ttl")}
	var errMount, errRole, errCN, errTTL, errAlt, errIP, errURI error
	r.altNames, errAlt = cfg.StringList("alt_names")
	r.ipSANs, errIP = cfg.StringList("ip_sans")
	r.uris, errURI = cfg.StringList("uri_sans")
	r.mount, errMount = cfg.RequireString("mount")
	r.role, errRole = cfg.RequireString("role")
	r.commonName, errCN = cfg.RequireString("common_name")
	if _, err := cfg.Duration("ttl", 0); err != nil {
		errTTL = err
	}
	errs := []error{errMount, errRole, errCN, errTTL, errAlt, errIP, errURI}
	for _, ip := range r.ipSANs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, attrErr(cfg.Path("ip_sans"), "%q is not an IP address", ip))
		}
	}
	for _, u := range r.uris {
		if parsed, err := url.Parse(u); err != nil || parsed.Scheme == "" {
			errs = append(errs, attrErr(cfg.Path("uri_sans"), "%q is not a URI", u))
		}
	}
	if strings.ContainsAny(r.mount+r.role, " ?#") {
		errs = append(errs, attrErr(cfg.Path("role"), "mount and role must be plain Vault path segments"))
	}
	return r, joinErrors(errs...)
}

// Validate implements Step.
func (*Issue) Validate(cfg Config) error {
	_, err := parseIssue(cfg)
	return err
}

// Prepare implements Preparer: Vault must be reachable and accept our
// credentials before any step of the run changes anything.
func (*Issue) Prepare(ctx context.Context, env *Env, _ Config) error {
	_, err := env.Vault(ctx)
	return err
}

// Apply implements Step.
func (*Issue) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	req, err := parseIssue(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	data := map[string]any{"common_name": req.commonName, "format": "pem"}
	if len(req.altNames) > 0 {
		data["alt_names"] = strings.Join(req.altNames, ",")
	}
	if len(req.ipSANs) > 0 {
		data["ip_sans"] = strings.Join(req.ipSANs, ",")
	}
	if len(req.uris) > 0 {
		data["uri_sans"] = strings.Join(req.uris, ",")
	}
	if req.ttl != "" {
		data["ttl"] = req.ttl
	}
	path := req.mount + "/issue/" + req.role
	secret, err := client.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return cty.NilVal, fmt.Errorf("Vault %s: %w", path, err)
	}
	if secret == nil || secret.Data == nil {
		return cty.NilVal, fmt.Errorf("Vault %s returned no certificate", path)
	}
	issued, err := readIssued(secret.Data)
	if err != nil {
		return cty.NilVal, fmt.Errorf("Vault %s: %w", path, err)
	}
	env.Log.Info("certificate issued", "path", path, "common_name", req.commonName,
		"serial", issued.serial, "expiration", issued.expiration)
	chain := make([]cty.Value, len(issued.caChain))
	for i, c := range issued.caChain {
		chain[i] = cty.StringVal(c)
	}
	caChain := cty.ListValEmpty(cty.String)
	if len(chain) > 0 {
		caChain = cty.ListVal(chain)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"certificate":        cty.StringVal(issued.certificate),
		"private_key":        cty.StringVal(issued.privateKey),
		"private_key_type":   cty.StringVal(issued.privateKeyType),
		"issuing_ca":         cty.StringVal(issued.issuingCA),
		"ca_chain":           caChain,
		"fullchain":          cty.StringVal(issued.certificate + issued.issuingCA),
		"serial_number":      cty.StringVal(issued.serial),
		"fingerprint_sha256": cty.StringVal(issued.fingerprint),
		"expiration":         cty.StringVal(issued.expiration),
	}), nil
}

type issuedCertificate struct {
	certificate, privateKey, privateKeyType, issuingCA string
	caChain                                            []string
	serial, fingerprint, expiration                    string
}

// readIssued takes the fields rotplan needs from Vault's issue response and
// checks what a broken rotation would otherwise only reveal in production:
// the key belongs to the certificate, and the certificate was signed by the
// issuing CA that comes with it (so the full chain is complete).
func readIssued(data map[string]any) (issuedCertificate, error) {
	str := func(k string) string { s, _ := data[k].(string); return s }
	out := issuedCertificate{
		certificate:    pemText(str("certificate")),
		privateKey:     pemText(str("private_key")),
		privateKeyType: str("private_key_type"),
		issuingCA:      pemText(str("issuing_ca")),
		serial:         str("serial_number"),
	}
	if raw, ok := data["ca_chain"].([]any); ok {
		for _, c := range raw {
			if s, ok := c.(string); ok {
				out.caChain = append(out.caChain, pemText(s))
			}
		}
	}
	if out.certificate == "" || out.privateKey == "" || out.issuingCA == "" {
		return out, fmt.Errorf("the response lacks a certificate, private key or issuing CA")
	}
	pair, err := tls.X509KeyPair([]byte(out.certificate), []byte(out.privateKey))
	if err != nil {
		return out, fmt.Errorf("the issued private key does not match the certificate")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return out, fmt.Errorf("parsing the issued certificate: %w", err)
	}
	block, _ := pem.Decode([]byte(out.issuingCA))
	if block == nil {
		return out, fmt.Errorf("the issuing CA is not PEM")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return out, fmt.Errorf("parsing the issuing CA: %w", err)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return out, fmt.Errorf("the certificate was not signed by the issuing CA %q: %w", ca.Subject.CommonName, err)
	}
	if out.serial == "" {
		out.serial = SerialHex(leaf)
	}
	sum := sha256.Sum256(leaf.Raw)
	out.fingerprint = hex.EncodeToString(sum[:])
	out.expiration = leaf.NotAfter.UTC().Format(time.RFC3339)
	if n, ok := data["expiration"].(json.Number); ok {
		if secs, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			out.expiration = time.Unix(secs, 0).UTC().Format(time.RFC3339)
		}
	}
	return out, nil
}

// pemText normalises a PEM string from Vault to end with exactly one newline,
// so that concatenations such as the full chain stay well-formed.
func pemText(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return s + "\n"
}

// SerialHex formats a certificate's serial number the way Vault does:
// lower-case hex byte pairs separated by colons.
func SerialHex(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	if len(b) == 0 {
		return "00"
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}
