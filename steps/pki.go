package steps

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
)

// certificateKind is what the kinds that get a certificate from a Vault PKI
// role share, issue (Vault generates the key) and sign (rotplan does, and
// Vault signs a CSR): the request's arguments and how they are checked
// against the role, renewal, revocation on rollback and of superseded
// certificates, and the outputs. Issue and Sign are stateless, as the
// registry wants, and hand their abilities to one of these.
type certificateKind struct {
	// name is the kind's block type, for errors ("sign: rolling back"),
	// and the endpoint under the mount (MOUNT/sign/ROLE).
	name string
	// done says in the log what Vault did ("issued", "signed").
	done string
	// parse reads a block of the kind.
	parse func(Config) (certRequest, error)
}

var (
	issueKind = certificateKind{name: "issue", done: "issued", parse: parseCertRequest}
	signKind  = certificateKind{name: "sign", done: "signed", parse: parseSign}
)

// certificateSpec is the body schema the certificate kinds share.
func certificateSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"mount":       &hcldec.AttrSpec{Name: "mount", Type: cty.String, Required: true},
		"role":        &hcldec.AttrSpec{Name: "role", Type: cty.String, Required: true},
		"common_name": &hcldec.AttrSpec{Name: "common_name", Type: cty.String, Required: true},
		"alt_names":   &hcldec.AttrSpec{Name: "alt_names", Type: cty.List(cty.String)},
		"ip_sans":     &hcldec.AttrSpec{Name: "ip_sans", Type: cty.List(cty.String)},
		"uri_sans":    &hcldec.AttrSpec{Name: "uri_sans", Type: cty.List(cty.String)},
		"ttl":         &hcldec.AttrSpec{Name: "ttl", Type: cty.String},

		"renew_before": &hcldec.AttrSpec{Name: "renew_before", Type: cty.String},
		"current":      &hcldec.AttrSpec{Name: "current", Type: cty.String},

		"revoke_superseded":  &hcldec.AttrSpec{Name: "revoke_superseded", Type: cty.Bool},
		"revoke_on_rollback": &hcldec.AttrSpec{Name: "revoke_on_rollback", Type: cty.Bool},
	}
}

// certificateOutputs are the outputs the certificate kinds share. The
// private key is the one sensitive output.
func certificateOutputs() map[string]Output {
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

type certRequest struct {
	mount, role, commonName string
	altNames, ipSANs, uris  []string
	ttl                     string
	revokeSuperseded        bool
	// renewBefore and current: the step is due only when the certificate
	// at current has at most renewBefore left (0: always due).
	renewBefore time.Duration
	current     string
	// key is the key a sign step generates; nil for an issue, whose key
	// Vault generates as the role says.
	key *keySpec
}

// arguments are what Apply sends to MOUNT/issue/ROLE for r: the lists
// joined by commas, as Vault's API takes them, and only the arguments the
// step gives, so that Vault applies its own defaults to the rest.
func (r certRequest) arguments() map[string]any {
	args := map[string]any{"common_name": r.commonName, "format": "pem"}
	if len(r.altNames) > 0 {
		args["alt_names"] = strings.Join(r.altNames, ",")
	}
	if len(r.ipSANs) > 0 {
		args["ip_sans"] = strings.Join(r.ipSANs, ",")
	}
	if len(r.uris) > 0 {
		args["uri_sans"] = strings.Join(r.uris, ",")
	}
	if r.ttl != "" {
		args["ttl"] = r.ttl
	}
	return args
}

// parseCertRequest reads the arguments the certificate kinds share.
func parseCertRequest(cfg Config) (certRequest, error) {
	r := certRequest{ttl: cfg.String("ttl")}
	var errMount, errRole, errCN, errTTL, errAlt, errIP, errURI, errRevoke, errRollback error
	r.altNames, errAlt = cfg.StringList("alt_names")
	r.ipSANs, errIP = cfg.StringList("ip_sans")
	r.uris, errURI = cfg.StringList("uri_sans")
	r.mount, errMount = cfg.RequireString("mount")
	r.role, errRole = cfg.RequireString("role")
	r.commonName, errCN = cfg.RequireString("common_name")
	if _, err := cfg.Duration("ttl", 0); err != nil {
		errTTL = err
	}
	r.revokeSuperseded, errRevoke = cfg.Bool("revoke_superseded", false)
	_, errRollback = revokeOnRollback(cfg) // read by Rollback alone
	errs := []error{errMount, errRole, errCN, errTTL, errAlt, errIP, errURI, errRevoke, errRollback, parseRenewal(cfg, &r)}
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

// parseRenewal reads renew_before and current, which go together.
func parseRenewal(cfg Config, r *certRequest) error {
	switch {
	case !cfg.Set("renew_before") && !cfg.Set("current"):
		return nil
	case !cfg.Set("current"):
		return attrErr(cfg.Path("renew_before"), "needs current: the path of the certificate now in use, whose lifetime decides whether the step is due")
	case !cfg.Set("renew_before"):
		return attrErr(cfg.Path("current"), "only means something with renew_before (as in renew_before = \"240h\")")
	}
	d, err := cfg.Duration("renew_before", 0)
	if err != nil {
		return err
	}
	if d <= 0 {
		return attrErr(cfg.Path("renew_before"), "must be a positive duration, as in \"240h\"")
	}
	r.renewBefore = d
	if r.current, err = cfg.RequireString("current"); err != nil {
		return err
	}
	if r.current == "" {
		return attrErr(cfg.Path("current"), "must not be empty")
	}
	return nil
}

// prepare is Preparer.Prepare for the certificate kinds: Vault must be
// reachable and accept our credentials before any step of the run changes
// anything.
func (certificateKind) prepare(ctx context.Context, env *Env) error {
	_, err := env.Vault(ctx)
	return err
}

// obtain asks Vault for the certificate, at MOUNT/issue/ROLE or
// MOUNT/sign/ROLE by the kind's name, and reads the response (readIssued).
// privateKey and its type are the key rotplan generated, or "" when Vault
// generates it and returns it in the response.
func (k certificateKind) obtain(ctx context.Context, env *Env, cfg Config, req certRequest, args map[string]any, privateKey, privateKeyType string) (issuedCertificate, error) {
	return k.obtainWith(ctx, env, cfg, req, args, func(data map[string]any) (issuedCertificate, error) {
		if privateKey == "" {
			privateKey, _ = data["private_key"].(string)
			privateKeyType, _ = data["private_key_type"].(string)
		}
		return readIssued(data, privateKey, privateKeyType)
	})
}

// obtainWith is obtain with the response read by read: readIssued, or for
// a key that stays on a host readSigned, which has only its public half.
func (k certificateKind) obtainWith(ctx context.Context, env *Env, cfg Config, req certRequest, args map[string]any, read func(map[string]any) (issuedCertificate, error)) (issuedCertificate, error) {
	client, err := env.Vault(ctx)
	if err != nil {
		return issuedCertificate{}, err
	}
	path := req.mount + "/" + k.name + "/" + req.role
	secret, err := client.Logical().WriteWithContext(ctx, path, args)
	if err != nil {
		return issuedCertificate{}, pkiError(ctx, client, cfg, req, "writing "+path, err)
	}
	if secret == nil || secret.Data == nil {
		return issuedCertificate{}, fmt.Errorf("Vault %s returned no certificate", path)
	}
	issued, err := read(secret.Data)
	if err != nil {
		return issuedCertificate{}, fmt.Errorf("Vault %s: %w", path, err)
	}
	env.Log.Info("certificate "+k.done, "path", path, "common_name", req.commonName,
		"serial", issued.serial, "expiration", issued.expiration)
	return issued, nil
}

// due is Conditional.Due for the certificate kinds: with renew_before and
// current, the step is due when the certificate at current has at most
// renew_before left, has expired, or is not there. Without them it sets no
// condition.
func (k certificateKind) due(cfg Config) (Condition, error) {
	return k.dueWith(cfg, readCertificateFile)
}

// dueWith is due with the certificate at current read by read: where
// rotplan runs, or on a sign's host.
func (certificateKind) dueWith(cfg Config, read func(string) (*x509.Certificate, error)) (Condition, error) {
	var r certRequest
	if err := parseRenewal(cfg, &r); err != nil {
		return Condition{}, mustBeKnown(err)
	}
	if r.renewBefore == 0 {
		return Condition{}, nil
	}
	return renewalDueWith(r, cfg.Path("current"), time.Now(), read)
}

// renewalDue decides on renewal by the certificate at r.current. A missing
// file makes the step due (there is nothing to keep); a file that holds no
// certificate is an error: current names the wrong file, and renewing on
// every run would hide that.
func renewalDue(r certRequest, currentPath string, now time.Time) (Condition, error) {
	return renewalDueWith(r, currentPath, now, readCertificateFile)
}

// renewalDueWith is renewalDue with the certificate read by read.
func renewalDueWith(r certRequest, currentPath string, now time.Time, read func(string) (*x509.Certificate, error)) (Condition, error) {
	c, err := read(r.current)
	if errors.Is(err, fs.ErrNotExist) {
		return Condition{Set: true, Due: true, Reason: "no certificate at " + r.current}, nil
	}
	if err != nil {
		return Condition{}, attrErr(currentPath, "%v", err)
	}
	left := c.NotAfter.Sub(now)
	if left > r.renewBefore {
		return Condition{Set: true, Reason: describeLeft(left)}, nil
	}
	return Condition{Set: true, Due: true, Reason: fmt.Sprintf("%s, renew_before %s", describeLeft(left), formatHours(r.renewBefore))}, nil
}

// formatHours writes a duration as renew_before is usually written: "240h".
func formatHours(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", int64(d/time.Hour))
	}
	return d.String()
}

// plan is Planner.Plan for the certificate kinds. It logs in to Vault and
// reads the role, which must exist and allow the request, and describes the
// current certificate when the block names one. It issues nothing.
func (k certificateKind) plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	return k.planWith(ctx, env, cfg, readCertificateFile)
}

// planWith is plan with the certificate at current read by read.
func (k certificateKind) planWith(ctx context.Context, env *Env, cfg Config, read func(string) (*x509.Certificate, error)) (Preview, error) {
	pv := Preview{Action: Create}
	req, err := k.parse(cfg)
	if err != nil && err != ErrUnknown {
		return pv, err
	}
	if req.key != nil {
		pv.Now = append(pv.Now, Fact{Name: "key", Value: req.key.String() + ", generated by rotplan: Vault signs a CSR and never sees the key"})
	}
	if req.current != "" {
		c, err := read(req.current)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			pv.Now = append(pv.Now, Fact{Name: "current", Value: "no certificate at " + req.current})
			pv.Observed = "current: absent"
		case err != nil:
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("current"), "%v", err))
		default:
			pv.Observed = "current: serial " + SerialHex(c)
			pv.Action = Replace
			pv.Now = append(pv.Now, Fact{Name: "current", Value: req.current})
			pv.Now = append(pv.Now, certificateFacts("current_", c, time.Now())...)
		}
	}
	client, err := env.Vault(ctx)
	if err != nil {
		pv.Problems = append(pv.Problems, err)
		return pv, nil
	}
	pv.Now = append(pv.Now, Fact{Name: "vault", Value: "reachable and authenticated at " + client.Address()})
	if req.mount == "" || req.role == "" {
		return pv, nil // known after an earlier step
	}
	path, problems, notes, readErr := roleVerdict(ctx, env, client, cfg, req)
	if readErr != nil {
		pv.Problems = append(pv.Problems, pkiError(ctx, client, cfg, req, "reading "+path, readErr))
		return pv, nil
	}
	if len(problems) == 0 {
		pv.Now = append(pv.Now, Fact{Name: "role", Value: path + " allows this request"})
	}
	for _, n := range notes {
		pv.Now = append(pv.Now, Fact{Name: "role", Value: n})
	}
	pv.Problems = append(pv.Problems, problems...)
	return pv, nil
}

// checkHost is HostChecker.CheckHost for the certificate kinds: the role
// must exist and allow the request (a name outside its domains, say), or the
// run would fail at this step after earlier ones changed the system; the
// engine asks before any step changes anything. It uses the Vault session
// only once it is open (a run's Prepare opens it first; a resume may open it
// only after the steps that put the admin identity right), and never logs in
// itself. A role the identity cannot read, or no session yet, is left to
// Prepare and Apply: only a definite refusal stops the run here.
func (k certificateKind) checkHost(ctx context.Context, env *Env, cfg Config) error {
	req, err := k.parse(cfg)
	if err != nil && err != ErrUnknown {
		return err
	}
	if req.mount == "" || req.role == "" {
		return ErrUnknown // known after an earlier step
	}
	client, open := env.VaultIfOpen()
	if !open {
		return ErrUnknown // checked again just before the step runs
	}
	_, problems, _, readErr := roleVerdict(ctx, env, client, cfg, req)
	if readErr != nil {
		return nil
	}
	return joinErrors(problems...)
}

// roleVerdict reads the request's role (once per run or preview) and says
// what in it refuses the request; readErr is why it could not be read.
func roleVerdict(ctx context.Context, env *Env, client *vaultapi.Client, cfg Config, req certRequest) (path string, problems []error, notes []string, readErr error) {
	path = req.mount + "/roles/" + req.role
	secret, err := env.readOnce(ctx, client, path)
	switch {
	case err != nil:
		return path, nil, nil, err
	case secret == nil || secret.Data == nil:
		return path, []error{attrErr(cfg.Path("role"), "there is no role %q in %s (read %s)", req.role, req.mount, path)}, nil, nil
	}
	problems, notes = checkRole(secret.Data, req)
	return path, problems, notes, nil
}

// certificates is CertificateHolder.Certificates for the certificate kinds:
// the certificate at current, which the step renews renew_before ahead of
// its expiry. A block without current names none: what it issues goes where
// the writes put it.
func (k certificateKind) certificates(cfg Config) []CertificateFile {
	return k.certificatesWith(cfg, readCertificateFile)
}

// certificatesWith is certificates with the file read by read.
func (certificateKind) certificatesWith(cfg Config, read func(string) (*x509.Certificate, error)) []CertificateFile {
	var r certRequest
	if err := parseRenewal(cfg, &r); err != nil || r.current == "" {
		return nil
	}
	c, err := read(r.current)
	return []CertificateFile{{Path: r.current, Certificate: c, Err: err, RenewBefore: r.renewBefore}}
}

// revokeOnRollback reads revoke_on_rollback. It defaults to true: once the
// rollback has put the old files back, nothing serves the certificate, and
// leaving it valid only keeps its key (in memory, in a backup) worth
// stealing.
func revokeOnRollback(cfg Config) (bool, error) {
	return cfg.Bool("revoke_on_rollback", true)
}

// supersede is Superseder.Supersede for the certificate kinds: it revokes
// the certificate an earlier, interrupted run issued when revoke_superseded
// says so, and otherwise only says that it was left valid. The serial comes
// from the journal, so it is checked before it goes to Vault. Vault answers
// a second revocation with the first one's time, and declines, with a
// warning, to revoke a certificate that has expired; neither is an error,
// since either way the certificate is no longer usable.
func (k certificateKind) supersede(ctx context.Context, env *Env, cfg Config, previous cty.Value) (string, error) {
	if serialLost(previous) {
		return "", errors.New(lostCertificate(cfg.String("mount"), cfg.String("common_name"), ""))
	}
	serial, err := journaledSerial(previous, "superseded certificate")
	if err != nil {
		return "", err
	}
	req, err := k.parse(cfg)
	if err != nil {
		return "", mustBeKnown(err)
	}
	if !req.revokeSuperseded {
		note := fmt.Sprintf("superseded certificate serial %s not revoked (revoke_superseded is false)", serial)
		if exp, ok := outputString(previous, "expiration"); ok && exp != "" {
			note += "; it stays valid until " + exp
		}
		return note, nil
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return "", err
	}
	expired, err := revokeSerial(ctx, client, req.mount, serial)
	switch {
	case err != nil:
		return "", fmt.Errorf("revoking superseded certificate serial %s: %w", serial, err)
	case expired:
		env.Log.Info("superseded certificate already expired; not revoked", "mount", req.mount, "serial", serial)
		return fmt.Sprintf("superseded certificate serial %s not revoked in %s: it has already expired", serial, req.mount), nil
	}
	env.Log.Info("superseded certificate revoked", "mount", req.mount, "serial", serial)
	return fmt.Sprintf("superseded certificate serial %s revoked in %s", serial, req.mount), nil
}

// snapshot is Rollbacker.Snapshot for the certificate kinds. The serial
// Rollback revokes is among the outputs the journal keeps once the step
// succeeded; a run killed after Vault issued the certificate but before then
// leaves only this: the mount, the common name and the time the step
// started, by which the operator finds the certificate in Vault. Being a
// snapshot, it is durable before Vault is asked, so a resume knows that a
// certificate may have been issued.
func (certificateKind) snapshot(ctx context.Context, cfg Config) (map[string]string, error) {
	return map[string]string{
		"mount":       cfg.String("mount"),
		"common_name": cfg.String("common_name"),
		"started":     time.Now().UTC().Truncate(time.Second).Format(time.RFC3339),
	}, ctx.Err()
}

// serialLost reports whether outputs are those of a step that may have
// issued a certificate whose serial was never journaled (the engine gives
// such a step's outputs as unknown).
func serialLost(outputs cty.Value) bool {
	if outputs == cty.NilVal {
		return false
	}
	outputs, _ = outputs.UnmarkDeep()
	if !outputs.IsKnown() {
		return true
	}
	ty := outputs.Type()
	return !outputs.IsNull() && ty.IsObjectType() && ty.HasAttribute("serial_number") && !outputs.GetAttr("serial_number").IsKnown()
}

// lostCertificate tells the operator how to find and revoke a certificate
// that may have been issued for commonName in mount (at or after started,
// when known) but whose serial was never journaled.
func lostCertificate(mount, commonName, started string) string {
	when := ""
	if started != "" {
		when = " at or after " + started
	}
	m := command.ShellWord(mount)
	return fmt.Sprintf("a certificate for %q may have been issued in %s%s by a run that was killed before its serial was journaled: "+
		"find it among the mount's certificates (vault list %s/certs; vault read %s/cert/SERIAL shows each one's subject and validity) "+
		"and revoke it by hand: vault write %s/revoke serial_number=SERIAL", commonName, mount, when, m, m, m)
}

// rollback is Rollbacker.Rollback for the certificate kinds: it revokes the
// certificate Apply issued, unless revoke_on_rollback is false, when it only
// logs that the certificate stays valid. Only mount and revoke_on_rollback
// are read from the block, so a rollback does not depend on anything else in
// it being known. As in Supersede, a certificate already revoked (Vault
// answers with the first revocation's time, so a second rollback is
// harmless) or already expired is not an error. Outputs with the serial
// unknown are a step killed before its success was journaled: it may have
// issued a certificate that cannot be revoked without its serial, so the
// error says how to find it (see lostCertificate).
func (k certificateKind) rollback(ctx context.Context, env *Env, cfg Config, outputs cty.Value, snapshot map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	revoke, err := revokeOnRollback(cfg)
	if err != nil {
		return fmt.Errorf("%s: rolling back: %w", k.name, mustBeKnown(err))
	}
	if !revoke {
		serial, _ := outputString(outputs, "serial_number")
		expiration, _ := outputString(outputs, "expiration")
		env.Log.Info("certificate not revoked (revoke_on_rollback is false)", "mount", cfg.String("mount"), "serial", serial, "expiration", expiration)
		return nil
	}
	mount, err := cfg.RequireString("mount")
	if err != nil {
		return fmt.Errorf("%s: rolling back: %w; revoke the certificate this step issued by hand: vault write MOUNT/revoke serial_number=SERIAL", k.name, mustBeKnown(err))
	}
	if serialLost(outputs) {
		cn := snapshot["common_name"]
		if cn == "" {
			cn = cfg.String("common_name")
		}
		return fmt.Errorf("%s: rolling back: %s", k.name, lostCertificate(mount, cn, snapshot["started"]))
	}
	serial, err := journaledSerial(outputs, "certificate to revoke")
	if err != nil {
		return fmt.Errorf("%s: rolling back: %w; find the certificate this step issued in %s and revoke it by hand: vault write %s/revoke serial_number=SERIAL", k.name, err, mount, command.ShellWord(mount))
	}
	byHand := fmt.Sprintf("revoke it by hand: vault write %s/revoke serial_number=%s", command.ShellWord(mount), serial)
	client, err := env.Vault(ctx)
	if err != nil {
		return fmt.Errorf("%s: rolling back: revoking certificate serial %s: %w; %s", k.name, serial, err, byHand)
	}
	expired, err := revokeSerial(ctx, client, mount, serial)
	switch {
	case err != nil:
		return fmt.Errorf("%s: rolling back: revoking certificate serial %s: %w; %s", k.name, serial, err, byHand)
	case expired:
		env.Log.Info("certificate already expired; not revoked", "mount", mount, "serial", serial)
	default:
		env.Log.Info("certificate revoked", "mount", mount, "serial", serial)
	}
	return nil
}

// revokeSerial revokes a certificate of a PKI mount. expired is true when
// Vault declined because the certificate has expired, which Vault reports
// as a warning rather than an error. A certificate revoked before counts as
// revoked: Vault answers again with the first revocation's time.
func revokeSerial(ctx context.Context, client *vaultapi.Client, mount, serial string) (expired bool, err error) {
	path := mount + "/revoke"
	secret, err := client.Logical().WriteWithContext(ctx, path, map[string]any{"serial_number": serial})
	if err != nil {
		return false, fmt.Errorf("Vault %s: %w", path, err)
	}
	if secret != nil && revocationTime(secret.Data) != 0 {
		return false, nil
	}
	var warnings []string
	if secret != nil {
		warnings = secret.Warnings
	}
	for _, w := range warnings {
		if strings.Contains(w, "already expired") {
			return true, nil
		}
	}
	why := "no revocation time in the response"
	if len(warnings) > 0 {
		why = strings.Join(warnings, "; ")
	}
	return false, fmt.Errorf("Vault %s did not confirm the revocation (%s)", path, why)
}

// journaledSerial reads the serial number from a certificate's outputs as
// the journal kept them; what names the certificate in errors ("superseded
// certificate"). It must look the way Issue writes it (colon-separated hex
// byte pairs, at most 64 bytes; RFC 5280 allows 20), so that whatever ended
// up in the journal cannot be passed to Vault as something else.
func journaledSerial(outputs cty.Value, what string) (string, error) {
	if outputs == cty.NilVal || outputs.IsNull() || !outputs.IsKnown() {
		return "", fmt.Errorf("the %s's outputs are missing", what)
	}
	outputs, _ = outputs.UnmarkDeep()
	if ty := outputs.Type(); !ty.IsObjectType() || !ty.HasAttribute("serial_number") {
		return "", fmt.Errorf("the %s's outputs have no serial_number", what)
	}
	v := outputs.GetAttr("serial_number")
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return "", fmt.Errorf("the %s's serial_number is null, unknown or not a string", what)
	}
	s := strings.ToLower(v.AsString())
	if !isSerialHex(s) {
		return "", fmt.Errorf("the %s's serial_number %q is not a serial number as Vault writes it (hex byte pairs separated by colons)", what, truncate(s, 200))
	}
	return s, nil
}

// isSerialHex reports whether s is a lower-case serial as SerialHex writes
// it, of 1 to 64 bytes.
func isSerialHex(s string) bool {
	if len(s) < 2 || len(s) > 64*3-1 || len(s)%3 != 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// revocationTime reads the revocation_time (Unix seconds) of a Vault revoke
// response, 0 when there is none.
func revocationTime(data map[string]any) int64 {
	switch t := data["revocation_time"].(type) {
	case json.Number:
		n, _ := t.Int64()
		return n
	case float64:
		return int64(t)
	case int64:
		return t
	}
	return 0
}

// summary is Summarizer.Summary for the certificate kinds: the serial and
// the expiry, which is what an operator looks for in Vault and in the served
// certificate.
func (certificateKind) summary(outputs cty.Value) []Fact {
	var facts []Fact
	if s, ok := outputString(outputs, "serial_number"); ok && s != "" {
		facts = append(facts, Fact{Name: "serial", Value: s})
	}
	if s, ok := outputString(outputs, "expiration"); ok && s != "" {
		facts = append(facts, Fact{Name: "expires", Value: s})
	}
	return facts
}

type issuedCertificate struct {
	certificate, privateKey, privateKeyType, issuingCA string
	caChain                                            []string
	serial, fingerprint, expiration                    string
}

// readIssued takes the fields rotplan needs from Vault's issue or sign
// response, with the private key and its type (issue: from the response;
// sign: the key rotplan generated), and checks what a broken rotation would
// otherwise only reveal in production: the key belongs to the certificate,
// and the certificate was signed by the issuing CA that comes with it (so
// the full chain is complete).
func readIssued(data map[string]any, privateKey, privateKeyType string) (issuedCertificate, error) {
	return readResponse(data, privateKeyType, func(out *issuedCertificate) (*x509.Certificate, error) {
		out.privateKey = pemText(privateKey)
		if out.certificate == "" || out.privateKey == "" || out.issuingCA == "" {
			return nil, fmt.Errorf("the response lacks a certificate, private key or issuing CA")
		}
		pair, err := tls.X509KeyPair([]byte(out.certificate), []byte(out.privateKey))
		if err != nil {
			return nil, fmt.Errorf("the private key does not match the certificate")
		}
		if pair.Leaf != nil {
			return pair.Leaf, nil
		}
		return x509.ParseCertificate(pair.Certificate[0])
	})
}

// readSigned is readIssued for a key rotplan has only the public half of
// (generated on a host, where it stays): the certificate must be for pub.
// The outputs have no private key.
func readSigned(data map[string]any, pub crypto.PublicKey, privateKeyType string) (issuedCertificate, error) {
	return readResponse(data, privateKeyType, func(out *issuedCertificate) (*x509.Certificate, error) {
		if out.certificate == "" || out.issuingCA == "" {
			return nil, fmt.Errorf("the response lacks a certificate or issuing CA")
		}
		leaf := firstCertificate([]byte(out.certificate))
		if leaf == nil {
			return nil, fmt.Errorf("the certificate is not a PEM certificate")
		}
		if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
			return nil, fmt.Errorf("the certificate is not for the key the CSR was made with")
		}
		return leaf, nil
	})
}

// readResponse reads what readIssued and readSigned share; leafOf checks
// the key and returns the parsed certificate.
func readResponse(data map[string]any, privateKeyType string, leafOf func(*issuedCertificate) (*x509.Certificate, error)) (issuedCertificate, error) {
	str := func(k string) string { s, _ := data[k].(string); return s }
	out := issuedCertificate{
		certificate:    pemText(str("certificate")),
		privateKeyType: privateKeyType,
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
	leaf, err := leafOf(&out)
	if err != nil {
		return out, err
	}
	ca, err := parseIssuingCA(out.issuingCA)
	if err != nil {
		return out, err
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return out, fmt.Errorf("the certificate was not signed by the issuing CA %q: %w", ca.Subject.CommonName, err)
	}
	if out.serial == "" {
		out.serial = SerialHex(leaf)
	}
	out.fingerprint = contentDigest(leaf.Raw)
	out.expiration = leaf.NotAfter.UTC().Format(time.RFC3339)
	if n, ok := data["expiration"].(json.Number); ok {
		if secs, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			out.expiration = time.Unix(secs, 0).UTC().Format(time.RFC3339)
		}
	}
	return out, nil
}

// outputs are the step's outputs for a certificate the kinds share.
func (c issuedCertificate) outputs() map[string]cty.Value {
	chain := make([]cty.Value, len(c.caChain))
	for i, ca := range c.caChain {
		chain[i] = cty.StringVal(ca)
	}
	caChain := cty.ListValEmpty(cty.String)
	if len(chain) > 0 {
		caChain = cty.ListVal(chain)
	}
	return map[string]cty.Value{
		"certificate":        cty.StringVal(c.certificate),
		"private_key":        cty.StringVal(c.privateKey),
		"private_key_type":   cty.StringVal(c.privateKeyType),
		"issuing_ca":         cty.StringVal(c.issuingCA),
		"ca_chain":           caChain,
		"fullchain":          cty.StringVal(c.certificate + c.issuingCA),
		"serial_number":      cty.StringVal(c.serial),
		"fingerprint_sha256": cty.StringVal(c.fingerprint),
		"expiration":         cty.StringVal(c.expiration),
	}
}

// lastCA is the issuing CA parseIssuingCA parsed last: every certificate of
// a run usually comes from the same one.
var lastCA atomic.Pointer[parsedCA]

type parsedCA struct {
	pem  string
	cert *x509.Certificate
}

// parseIssuingCA parses the PEM issuing CA of a response.
func parseIssuingCA(text string) (*x509.Certificate, error) {
	if last := lastCA.Load(); last != nil && last.pem == text {
		return last.cert, nil
	}
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, fmt.Errorf("the issuing CA is not PEM")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the issuing CA: %w", err)
	}
	lastCA.Store(&parsedCA{pem: text, cert: ca})
	return ca, nil
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
