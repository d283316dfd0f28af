package steps

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Sign gets a certificate from a Vault PKI role for a key rotplan
// generates: it sends a CSR to `<mount>/sign/<role>`, so Vault never sees
// the key, and the key's generation (RSA's is CPU-bound) is not Vault's
// work.
//
//	sign "server" {
//	  mount       = "pki-prod"
//	  role        = "vault-server"
//	  common_name = "vault.prod.privsec.ch"
//	  key_type    = "rsa"
//	  key_bits    = 3072
//	}
//
// It takes Issue's arguments and gives its outputs, and behaves as it does
// on renewal, rollback and resume (the key is never journaled, so a step
// that started and has no outcome signs anew, and the certificate it may
// have got is superseded); what the two share is in pki.go
// (certificateKind). The CSR holds the common name and the subject
// alternative names as well as the request's arguments, so the
// certificate is the same whatever the role's use_csr_common_name and
// use_csr_sans say.
type Sign struct{}

var (
	_ Step              = (*Sign)(nil)
	_ Preparer          = (*Sign)(nil)
	_ HostChecker       = (*Sign)(nil)
	_ Superseder        = (*Sign)(nil)
	_ Rollbacker        = (*Sign)(nil)
	_ Summarizer        = (*Sign)(nil)
	_ Planner           = (*Sign)(nil)
	_ Conditional       = (*Sign)(nil)
	_ CertificateHolder = (*Sign)(nil)
	_ SettingsUser      = (*Sign)(nil)
	_ HostRunner        = (*Sign)(nil)
	_ Resumer           = (*Sign)(nil)
)

// RunsOnHost implements HostRunner: a sign with `on` generates its key on
// that host, where it stays, and installs the key and the certificate
// there (see sign_remote.go); Vault is reached from where rotplan runs.
func (*Sign) RunsOnHost() {}

// Settings implements SettingsUser: a sign reaches Vault as the plan's
// vault block says, and a host as its host block does.
func (*Sign) Settings() Settings {
	s := vaultBlock()
	for name, setting := range hostBlock() {
		s[name] = setting
	}
	return s
}

// Spec implements Step: Issue's arguments, and the key to generate.
func (*Sign) Spec() hcldec.ObjectSpec {
	spec := certificateSpec()
	spec["key_type"] = &hcldec.AttrSpec{Name: "key_type", Type: cty.String}
	spec["key_bits"] = &hcldec.AttrSpec{Name: "key_bits", Type: cty.Number}
	for _, name := range signFileArgs {
		spec[name] = &hcldec.AttrSpec{Name: name, Type: cty.String}
	}
	return spec
}

// Outputs implements Step: Issue's outputs, the private key among them
// (sensitive), and the CSR Vault signed.
func (*Sign) Outputs() map[string]Output {
	outs := certificateOutputs()
	outs["csr"] = Output{Type: cty.String}
	return outs
}

// Validate implements Step.
func (*Sign) Validate(cfg Config) error {
	_, err := parseSign(cfg)
	_, _, filesErr := parseSignFiles(cfg)
	return joinErrors(err, filesErr)
}

// Apply implements Step: it generates the key, makes the CSR, and has
// Vault sign it.
func (*Sign) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	req, err := parseSign(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	files, onHost, err := signOnHost(env, cfg)
	switch {
	case err != nil:
		return cty.NilVal, mustBeKnown(err)
	case onHost:
		return applySignRemote(ctx, env, cfg, req, files)
	}
	key, keyPEM, err := req.key.generate()
	if err != nil {
		return cty.NilVal, err
	}
	csrPEM, err := req.csr(key)
	if err != nil {
		return cty.NilVal, err
	}
	if err := ctx.Err(); err != nil {
		return cty.NilVal, err
	}
	args := req.arguments()
	args["csr"] = csrPEM
	signed, err := signKind.obtain(ctx, env, cfg, req, args, keyPEM, req.key.typ)
	if err != nil {
		return cty.NilVal, err
	}
	outs := signed.outputs()
	outs["csr"] = cty.StringVal(csrPEM)
	return cty.ObjectVal(outs), nil
}

// Prepare implements Preparer: Vault must be reachable and accept our
// credentials before any step of the run changes anything.
func (*Sign) Prepare(ctx context.Context, env *Env, _ Config) error {
	return signKind.prepare(ctx, env)
}

// Due implements Conditional: renew_before and current (certificateKind.due).
// On a host, current is read there.
func (*Sign) Due(ctx context.Context, env *Env, cfg Config) (Condition, error) {
	return signKind.dueWith(cfg, currentReader(ctx, env))
}

// Plan implements Planner: the role must allow the request, the key's type
// and size included (certificateKind.plan). It generates and signs nothing.
func (*Sign) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv, err := signKind.planWith(ctx, env, cfg, currentReader(ctx, env))
	if err != nil {
		return pv, err
	}
	files, onHost, err := signOnHost(env, cfg)
	if err != nil && err != ErrUnknown {
		pv.Problems = append(pv.Problems, err)
	}
	if onHost && err == nil {
		planSignRemote(ctx, env, cfg, files, &pv)
	}
	return pv, ctx.Err()
}

// CheckHost implements HostChecker: the role must allow the request and
// the key, once the Vault session is open (certificateKind.checkHost).
func (*Sign) CheckHost(ctx context.Context, env *Env, cfg Config) error {
	roleErr := signKind.checkHost(ctx, env, cfg)
	files, onHost, err := signOnHost(env, cfg)
	if err == nil && onHost {
		err = checkSignRemote(ctx, env, cfg, files)
	}
	return joinErrors(roleErr, err)
}

// Intent implements Resumer for a sign on a host (see signIntent); a local
// sign has none, and runs again when it was cut short.
func (*Sign) Intent(_ context.Context, _ *Env, cfg Config) (map[string]string, error) {
	return signIntent(cfg)
}

// Done implements Resumer: the key and certificate on the host are the
// ones the step leaves (see doneSignRemote).
func (*Sign) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	if _, ok := env.Host(); !ok {
		return cty.NilVal, false, nil
	}
	return doneSignRemote(ctx, env, intent)
}

// Certificates implements CertificateHolder: the certificate at current.
// On a host, current is read there.
func (*Sign) Certificates(ctx context.Context, env *Env, cfg Config) []CertificateFile {
	files := signKind.certificatesWith(cfg, currentReader(ctx, env))
	if host, ok := env.Host(); ok {
		for i := range files {
			files[i].Host = host
		}
	}
	return files
}

// Supersede implements Superseder: it revokes a certificate an interrupted
// run got signed when revoke_superseded says so (certificateKind.supersede).
func (*Sign) Supersede(ctx context.Context, env *Env, cfg Config, previous cty.Value) (string, error) {
	return signKind.supersede(ctx, env, cfg, previous)
}

// Snapshot implements Rollbacker: what finds the certificate in Vault if
// its serial is never journaled (certificateKind.snapshot).
func (*Sign) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	snap, err := signKind.snapshot(ctx, cfg)
	if err != nil {
		return nil, err
	}
	files, onHost, err := signOnHost(env, cfg)
	switch {
	case err != nil:
		return nil, mustBeKnown(err)
	case onHost:
		return snapshotSignRemote(ctx, env, cfg, snap, files)
	}
	return snap, nil
}

// Rollback implements Rollbacker: it revokes the certificate unless
// revoke_on_rollback is false (certificateKind.rollback).
func (*Sign) Rollback(ctx context.Context, env *Env, cfg Config, outputs cty.Value, snapshot map[string]string) error {
	var filesErr error
	if _, onHost := env.Host(); onHost {
		filesErr = rollbackSignRemote(ctx, env, snapshot)
	}
	return errors.Join(filesErr, signKind.rollback(ctx, env, cfg, outputs, snapshot))
}

// Summary implements Summarizer: the serial and the expiry.
func (*Sign) Summary(outputs cty.Value) []Fact { return signKind.summary(outputs) }

// keySpec is the private key a sign step generates.
type keySpec struct {
	// typ is "ec", "rsa" or "ed25519" (Vault's names), "" while unknown.
	typ string
	// bits is the curve's or the modulus's size; 0 for ed25519 and while
	// unknown.
	bits int
}

// keySizes are the sizes rotplan generates of each key type, the default
// first.
var keySizes = map[string][]int{
	"ec":      {256, 384, 521},
	"rsa":     {2048, 3072, 4096},
	"ed25519": nil,
}

// String describes the key as the preview shows it ("rsa 2048").
func (k keySpec) String() string {
	switch {
	case k.typ == "":
		return "a key of a type known later"
	case k.bits == 0:
		return k.typ
	}
	return fmt.Sprintf("%s %d", k.typ, k.bits)
}

// parseSign reads a sign block: Issue's arguments and the key.
func parseSign(cfg Config) (certRequest, error) {
	r, err := parseCertRequest(cfg)
	key, keyErr := parseKey(cfg)
	r.key = &key
	return r, joinErrors(err, keyErr)
}

// parseKey reads key_type and key_bits.
func parseKey(cfg Config) (keySpec, error) {
	k := keySpec{typ: "ec"}
	if cfg.Set("key_type") {
		if !cfg.Known("key_type") {
			return keySpec{}, ErrUnknown
		}
		k.typ = cfg.String("key_type")
	}
	sizes, ok := keySizes[k.typ]
	if !ok {
		return keySpec{}, attrErr(cfg.Path("key_type"), `must be "ec", "rsa" or "ed25519", not %q`, k.typ)
	}
	bits, set, err := cfg.Int("key_bits")
	switch {
	case err != nil:
		return keySpec{typ: k.typ}, err
	case !set && len(sizes) > 0:
		k.bits = sizes[0]
	case !set:
	case len(sizes) == 0:
		return k, attrErr(cfg.Path("key_bits"), "an %s key has a fixed size: leave key_bits out", k.typ)
	case !slices.Contains(sizes, int(bits)):
		return keySpec{typ: k.typ}, attrErr(cfg.Path("key_bits"), "an %s key of %d bits is not one rotplan generates: key_bits must be one of %s", k.typ, bits, joinInts(sizes))
	default:
		k.bits = int(bits)
	}
	return k, nil
}

// joinInts writes sizes as "256, 384 or 521".
func joinInts(sizes []int) string {
	s := make([]string, len(sizes))
	for i, n := range sizes {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// generate makes the key and writes it in PEM as Vault's issue does: RSA in
// PKCS #1, EC in SEC 1, Ed25519 in PKCS #8.
func (k keySpec) generate() (crypto.Signer, string, error) {
	var (
		key   crypto.Signer
		block *pem.Block
		err   error
	)
	switch k.typ {
	case "rsa":
		var rk *rsa.PrivateKey
		if rk, err = rsa.GenerateKey(rand.Reader, k.bits); err == nil {
			key, block = rk, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}
		}
	case "ec":
		curve := map[int]elliptic.Curve{256: elliptic.P256(), 384: elliptic.P384(), 521: elliptic.P521()}[k.bits]
		if curve == nil {
			panic(fmt.Sprintf("steps: generating an ec key of %d bits", k.bits))
		}
		var ek *ecdsa.PrivateKey
		if ek, err = ecdsa.GenerateKey(curve, rand.Reader); err == nil {
			var der []byte
			der, err = x509.MarshalECPrivateKey(ek)
			key, block = ek, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
		}
	case "ed25519":
		var ed ed25519.PrivateKey
		if _, ed, err = ed25519.GenerateKey(rand.Reader); err == nil {
			var der []byte
			der, err = x509.MarshalPKCS8PrivateKey(ed)
			key, block = ed, &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		}
	default:
		panic(fmt.Sprintf("steps: generating a key of type %q", k.typ))
	}
	if err != nil {
		return nil, "", fmt.Errorf("generating the %s key: %w", k, err)
	}
	return key, string(pem.EncodeToMemory(block)), nil
}

// csr makes the certificate signing request for the request's names, as
// Vault reads them from the arguments: the alt names split at commas, an
// email address as such, a DNS name in ASCII, and a name Vault would leave
// out of the certificate left out.
func (r certRequest) csr(key crypto.Signer) (string, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.commonName}}
	for _, name := range dedupSorted(strings.Split(strings.Join(r.altNames, ","), ",")) {
		if strings.Contains(name, "@") {
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, name)
		} else if ascii, err := vaultIDNA.ToASCII(name); err == nil && vaultHostnameRegex.MatchString(ascii) {
			tmpl.DNSNames = append(tmpl.DNSNames, ascii)
		}
	}
	for _, s := range trimmedList(r.ipSANs) {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	for _, s := range trimmedList(r.uris) {
		if u, err := url.Parse(s); err == nil && s != "" {
			tmpl.URIs = append(tmpl.URIs, u)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", fmt.Errorf("making the certificate signing request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}
