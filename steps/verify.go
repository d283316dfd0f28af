package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// Verify checks, from the outside, that a rotation took effect. It holds
// exactly one check block and retries it every interval until it passes or
// the timeout runs out, because a reload takes effect asynchronously.
//
//	verify "check_b" {
//	  timeout = "30s"
//	  tls {
//	    address       = "127.0.0.1:22400"
//	    server_name   = "vault.prod.privsec.ch"
//	    ca_file       = "/root/vault/env/ca.pem"
//	    expect_serial = issue.server.serial_number
//	  }
//	}
//
// A tls check passes only if the served chain verifies to the given CA for
// that server name (SNI) and, when asked, the leaf has the expected serial or
// fingerprint. A vault_status check asks Vault for its seal status over
// (m)TLS with the given client certificate and fails if Vault is sealed or
// unreachable. A vault_login check logs in with cert auth as an app would
// (verify_login.go); a vault_agent check proves that an agent logged in
// with a given certificate (verify_agent.go). A bundle check looks at a
// PEM bundle on disk as a client would see it served (verify_bundle.go),
// and a command check runs a service's configuration test before its
// reload (verify_command.go). With since (a reload's at),
// the step reports how long after it the check first passed.
type Verify struct{}

var (
	_ Step       = (*Verify)(nil)
	_ Summarizer = (*Verify)(nil)
	_ Planner    = (*Verify)(nil)
	_ ReadOnly   = (*Verify)(nil)
	_ Noter      = (*Verify)(nil)

	_ SettingsUser = (*Verify)(nil)
)

// Settings implements SettingsUser: a vault_agent check looks the agent's
// token up as the run's own Vault identity.
func (*Verify) Settings() Settings { return vaultBlock() }

// ReadOnly implements ReadOnly: a check changes nothing.
func (*Verify) ReadOnly() {}

// endpointSpec is what both checks need to reach a TLS endpoint.
func endpointSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"address":     &hcldec.AttrSpec{Name: "address", Type: cty.String, Required: true},
		"server_name": &hcldec.AttrSpec{Name: "server_name", Type: cty.String},
		"ca_file":     &hcldec.AttrSpec{Name: "ca_file", Type: cty.String},
		"ca_pem":      &hcldec.AttrSpec{Name: "ca_pem", Type: cty.String},
		"client_cert": &hcldec.AttrSpec{Name: "client_cert", Type: cty.String},
		"client_key":  &hcldec.AttrSpec{Name: "client_key", Type: cty.String},
	}
}

// Spec implements Step.
func (*Verify) Spec() hcldec.ObjectSpec {
	tlsSpec := endpointSpec()
	tlsSpec["expect_serial"] = &hcldec.AttrSpec{Name: "expect_serial", Type: cty.String}
	tlsSpec["expect_fingerprint"] = &hcldec.AttrSpec{Name: "expect_fingerprint", Type: cty.String}
	return hcldec.ObjectSpec{
		"timeout":      &hcldec.AttrSpec{Name: "timeout", Type: cty.String},
		"interval":     &hcldec.AttrSpec{Name: "interval", Type: cty.String},
		"since":        &hcldec.AttrSpec{Name: "since", Type: cty.String},
		"vault_login":  &hcldec.BlockSpec{TypeName: "vault_login", Nested: loginSpec()},
		"vault_agent":  &hcldec.BlockSpec{TypeName: "vault_agent", Nested: agentSpec()},
		"tls":          &hcldec.BlockSpec{TypeName: "tls", Nested: tlsSpec},
		"vault_status": &hcldec.BlockSpec{TypeName: "vault_status", Nested: endpointSpec()},
		"bundle":       &hcldec.BlockSpec{TypeName: "bundle", Nested: bundleSpec()},
		"command":      &hcldec.BlockSpec{TypeName: "command", Nested: commandSpec()},
		"key_pair": &hcldec.BlockSpec{TypeName: "key_pair", Nested: hcldec.ObjectSpec{
			"cert_file": &hcldec.AttrSpec{Name: "cert_file", Type: cty.String, Required: true},
			"key_file":  &hcldec.AttrSpec{Name: "key_file", Type: cty.String, Required: true},
		}},
	}
}

// Outputs implements Step.
func (*Verify) Outputs() map[string]Output {
	return map[string]Output{
		"check":              {Type: cty.String},
		"attempts":           {Type: cty.Number},
		"served_serial":      {Type: cty.String},
		"served_fingerprint": {Type: cty.String},
		"vault_version":      {Type: cty.String},
		"policies":           {Type: cty.List(cty.String)},
		"cert_name":          {Type: cty.String},
		"token_serial":       {Type: cty.String},
		"passed_after":       {Type: cty.String},
		"logged_in_after":    {Type: cty.String},
	}
}

// endpoint is a parsed tls or vault_status block.
type endpoint struct {
	address, serverName   string
	caFile, caPEM         string
	clientCert, clientKey string
}

type verification struct {
	check             string // one of checkBlocks
	certFile, keyFile string // key_pair
	endpoint          endpoint
	expectSerial      *big.Int
	expectFingerprint string
	login             loginCheck   // vault_login
	agent             agentCheck   // vault_agent
	bundle            bundleCheck  // bundle
	command           commandCheck // command
	timeout, interval time.Duration
	// since is when the reload or restart the check follows finished;
	// zero when the step does not say.
	since time.Time
}

// checkBlocks are the check blocks of a verify step, one of which it holds.
var checkBlocks = []string{"tls", "vault_status", "key_pair", "vault_login", "vault_agent", "bundle", "command"}

func parseEndpoint(c Config, needCA bool) (endpoint, []error) {
	e := endpoint{
		serverName: c.String("server_name"),
		caFile:     c.String("ca_file"),
		caPEM:      c.String("ca_pem"),
		clientCert: c.String("client_cert"),
		clientKey:  c.String("client_key"),
	}
	var errs []error
	var err error
	e.address, err = c.RequireString("address")
	errs = append(errs, err)
	if c.Set("ca_file") && c.Set("ca_pem") {
		errs = append(errs, attrErr(c.Path("ca_pem"), "give ca_file or ca_pem, not both"))
	}
	if needCA && !c.Set("ca_file") && !c.Set("ca_pem") {
		errs = append(errs, attrErr(c.Path("address"), "a CA to verify against is required: set ca_file or ca_pem"))
	}
	if c.Known("ca_file") && c.Set("ca_file") && e.caFile == "" {
		errs = append(errs, attrErr(c.Path("ca_file"), "must not be empty (is VAULT_CACERT exported?)"))
	}
	if c.Set("client_cert") != c.Set("client_key") {
		errs = append(errs, attrErr(c.Path("client_cert"), "client_cert and client_key go together"))
	}
	return e, errs
}

func parseVerify(cfg Config) (verification, error) {
	var v verification
	var errs []error
	var err error
	v.timeout, err = cfg.Duration("timeout", 30*time.Second)
	errs = append(errs, err)
	v.interval, err = cfg.Duration("interval", time.Second)
	errs = append(errs, err)
	v.since, err = parseSince(cfg)
	errs = append(errs, err)

	tlsBlock, hasTLS := cfg.Block("tls")
	statusBlock, hasStatus := cfg.Block("vault_status")
	pairBlock, hasPair := cfg.Block("key_pair")
	loginBlock, hasLogin := cfg.Block("vault_login")
	agentBlock, hasAgent := cfg.Block("vault_agent")
	bundleBlock, hasBundle := cfg.Block("bundle")
	commandBlock, hasCommand := cfg.Block("command")
	var given []string
	for _, name := range checkBlocks {
		if _, has := cfg.Block(name); has {
			given = append(given, name)
		}
	}
	switch {
	case len(given) > 1:
		errs = append(errs, attrErr(given[len(given)-1], "a verify step holds one check: split %s into steps of their own", strings.Join(given, ", ")))
	case hasLogin:
		v.check = "vault_login"
		var more []error
		v.endpoint, v.login, more = parseLogin(loginBlock)
		errs = append(errs, more...)
	case hasAgent:
		v.check = "vault_agent"
		var more []error
		v.agent, more = parseAgent(agentBlock)
		errs = append(errs, more...)
	case hasBundle:
		v.check = "bundle"
		var more []error
		v.bundle, more = parseBundle(bundleBlock)
		errs = append(errs, more...)
	case hasCommand:
		v.check = "command"
		var more []error
		v.command, more = parseCommand(commandBlock)
		errs = append(errs, more...)
	case hasPair:
		v.check = "key_pair"
		v.certFile, err = pairBlock.RequireString("cert_file")
		errs = append(errs, err)
		v.keyFile, err = pairBlock.RequireString("key_file")
		errs = append(errs, err)
	case hasTLS:
		v.check = "tls"
		var more []error
		v.endpoint, more = parseEndpoint(tlsBlock, true)
		errs = append(errs, more...)
		if s := tlsBlock.String("expect_serial"); s != "" {
			if v.expectSerial, err = parseSerial(s); err != nil {
				errs = append(errs, attrErr(tlsBlock.Path("expect_serial"), "%v", err))
			}
		}
		if f := tlsBlock.String("expect_fingerprint"); f != "" {
			v.expectFingerprint = normalHex(f)
			if _, err := hex.DecodeString(v.expectFingerprint); err != nil || len(v.expectFingerprint) != 64 {
				errs = append(errs, attrErr(tlsBlock.Path("expect_fingerprint"), "%q is not a SHA-256 fingerprint in hex", f))
			}
		}
	case hasStatus:
		v.check = "vault_status"
		var more []error
		v.endpoint, more = parseEndpoint(statusBlock, false)
		errs = append(errs, more...)
	default:
		errs = append(errs, attrErr("tls", "a verify step needs one check block: tls { ... }, vault_status { ... }, key_pair { ... }, vault_login { ... }, vault_agent { ... }, bundle { ... } or command { ... }"))
	}
	return v, joinErrors(errs...)
}

// Validate implements Step.
func (*Verify) Validate(cfg Config) error {
	_, err := parseVerify(cfg)
	return err
}

// Apply implements Step.
func (*Verify) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	v, err := parseVerify(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	parent := ctx
	budget := v.timeout
	if v.check == "command" {
		budget += commandGrace
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	deadline, _ := ctx.Deadline()

	var result checkResult
	var last error // the last failure that says something: not the deadline
	attempts := 0
	for {
		attempts++
		result, err = v.attempt(ctx, env)
		if err == nil {
			break
		}
		// An attempt the deadline cut short says only that ("i/o
		// timeout"), even before ctx says it is done: the dial's own
		// deadline may fire before the context's timer.
		if last == nil || ctx.Err() == nil && time.Now().Before(deadline) {
			last = err
		}
		var input *inputError
		if errors.As(err, &input) {
			// A CA or a certificate the check cannot read fails every
			// attempt alike: waiting for the timeout would only hide it.
			return cty.NilVal, attrErr(v.argPath(cfg, input.arg), "%s check of %s cannot pass: %v (not retried: it would fail the same way on every attempt)",
				v.check, v.target(), err)
		}
		env.Log.Debug("check not passing yet", "check", v.check, "target", v.target(), "attempt", attempts, "error", err)
		select {
		case <-ctx.Done():
			// An attempt the deadline cut short says only that; the one
			// before it says why the check was failing.
			if parent.Err() != nil {
				return cty.NilVal, fmt.Errorf("%s check of %s interrupted after %d attempts (%v); last failure: %w",
					v.check, v.target(), attempts, parent.Err(), last)
			}
			return cty.NilVal, fmt.Errorf("%s check of %s still failing after %d attempts in %s: %w",
				v.check, v.target(), attempts, v.timeout, last)
		case <-time.After(v.interval):
		}
	}
	passedAfter, loggedInAfter := "", ""
	if !v.since.IsZero() {
		passedAfter = time.Since(v.since).Round(time.Millisecond).String()
		if !result.tokenIssued.IsZero() {
			loggedInAfter = result.tokenIssued.Sub(v.since).Round(time.Millisecond).String()
		}
	}
	logArgs := []any{"check", v.check, "target", v.target(), "attempts", attempts}
	if result.serial != "" {
		logArgs = append(logArgs, "served_serial", result.serial)
	}
	if result.vaultVersion != "" {
		logArgs = append(logArgs, "vault_version", result.vaultVersion)
	}
	if result.certName != "" {
		logArgs = append(logArgs, "cert_name", result.certName)
	}
	if result.policies != nil {
		logArgs = append(logArgs, "policies", result.policies)
	}
	if result.tokenSerial != "" {
		logArgs = append(logArgs, "token_serial", result.tokenSerial)
	}
	if passedAfter != "" {
		logArgs = append(logArgs, "passed_after", passedAfter)
	}
	if loggedInAfter != "" {
		logArgs = append(logArgs, "logged_in_after", loggedInAfter)
	}
	env.Log.Info("check passed", logArgs...)
	policies := cty.ListValEmpty(cty.String)
	if len(result.policies) > 0 {
		policies = cty.ListVal(stringValues(result.policies))
	}
	return cty.ObjectVal(map[string]cty.Value{
		"check":              cty.StringVal(v.check),
		"attempts":           cty.NumberIntVal(int64(attempts)),
		"served_serial":      cty.StringVal(result.serial),
		"served_fingerprint": cty.StringVal(result.fingerprint),
		"vault_version":      cty.StringVal(result.vaultVersion),
		"policies":           policies,
		"cert_name":          cty.StringVal(result.certName),
		"token_serial":       cty.StringVal(result.tokenSerial),
		"passed_after":       cty.StringVal(passedAfter),
		"logged_in_after":    cty.StringVal(loggedInAfter),
	}), nil
}

// parseSince reads since: when the reload or restart the check follows
// finished, in RFC 3339 (a reload step's at output).
func parseSince(cfg Config) (time.Time, error) {
	if !cfg.Set("since") {
		return time.Time{}, nil
	}
	if !cfg.Known("since") {
		return time.Time{}, ErrUnknown
	}
	s := cfg.String("since")
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, attrErr(cfg.Path("since"), "%q is not a time in RFC 3339 (give a reload step's at output, as in since = reload.agent.at)", s)
	}
	return t, nil
}

// planAttemptTimeout bounds the one attempt a preview makes: it only shows
// what the endpoint serves now.
const planAttemptTimeout = 5 * time.Second

// Plan implements Planner. A check changes nothing, so the preview makes
// one attempt now, without the expectations that only hold after the run,
// and shows what the endpoint answers; a failure now is a fact, not a
// problem, as the run may be what puts it right. A file the check reads
// that cannot be read or holds no certificate is a problem, unless a step
// before it puts that file in place (Env.Planned): the run would fail the
// check at once.
func (*Verify) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	v, err := parseVerify(cfg)
	pv := Preview{Action: Check, Reason: v.check + " " + v.target()}
	if v.endpoint.serverName != "" {
		pv.Reason += " (SNI " + v.endpoint.serverName + ")"
	}
	if err != nil || v.target() == "" {
		return pv, ctx.Err() // unknown until the run; Validate reports the rest
	}
	v.expectSerial, v.expectFingerprint = nil, ""
	v.login.expectPolicies, v.agent.expectSerial = nil, nil
	v.bundle.expectSerial = nil
	if v.check == "command" {
		// The preview runs nothing: it only looks for the program.
		if err := v.command.lookPath(); err != nil {
			pv.Problems = append(pv.Problems, attrErr(v.argPath(cfg, "argv"), "%v", err))
		}
		return pv, ctx.Err()
	}
	actx, cancel := context.WithTimeout(ctx, planAttemptTimeout)
	defer cancel()
	res, err := v.attempt(actx, env)
	var input *inputError
	switch {
	case errors.As(err, &input) && !env.Planned(input.paths...):
		pv.Problems = append(pv.Problems, attrErr(v.argPath(cfg, input.arg), "%v", err))
	case err != nil:
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "fails: " + err.Error()})
	case res.serial != "" && v.check == "bundle":
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "holds serial " + res.serial + ", its chain verifies to the root"})
	case res.serial != "":
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "serves serial " + res.serial})
	case res.vaultVersion != "":
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "Vault " + res.vaultVersion + ", unsealed"})
	case res.tokenSerial != "":
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "the token in the sink is from serial " + res.tokenSerial + " (" + res.certName + ")"})
	case res.policies != nil:
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "logs in with " + res.certName + ", policies " + strings.Join(res.policies, ", ")})
	}
	return pv, ctx.Err()
}

// Summary implements Summarizer: which check passed, after how many
// attempts, what it saw (the served serial of a tls check, the version
// of a vault_status check, the mapping and policies of a login, the
// serial an agent's token comes from) and how long after since it passed.
func (*Verify) Summary(outputs cty.Value) []Fact {
	var facts []Fact
	if check, ok := outputString(outputs, "check"); ok && check != "" {
		facts = append(facts, Fact{Name: "check", Value: check})
	}
	if serial, ok := outputString(outputs, "served_serial"); ok && serial != "" {
		facts = append(facts, Fact{Name: "served_serial", Value: serial})
	}
	if version, ok := outputString(outputs, "vault_version"); ok && version != "" {
		facts = append(facts, Fact{Name: "vault_version", Value: version})
	}
	if name, ok := outputString(outputs, "cert_name"); ok && name != "" {
		facts = append(facts, Fact{Name: "cert_name", Value: name})
	}
	if policies, ok := outputStrings(outputs, "policies"); ok && len(policies) > 0 {
		facts = append(facts, Fact{Name: "policies", Value: strings.Join(policies, ",")})
	}
	if serial, ok := outputString(outputs, "token_serial"); ok && serial != "" {
		facts = append(facts, Fact{Name: "token_serial", Value: serial})
	}
	if n, ok := outputInt(outputs, "attempts"); ok && n > 0 {
		facts = append(facts, Fact{Name: "attempts", Value: strconv.FormatInt(n, 10)})
	}
	if after := passedAfter(outputs); after != "" {
		facts = append(facts, Fact{Name: "passed_after", Value: after})
	}
	if after, ok := outputString(outputs, "logged_in_after"); ok && after != "" {
		facts = append(facts, Fact{Name: "logged_in_after", Value: after})
	}
	return facts
}

// Note implements Noter: how long after since the check first passed,
// and the agent logged in, for the progress line.
func (*Verify) Note(outputs cty.Value) string {
	after := passedAfter(outputs)
	if after == "" {
		return ""
	}
	note := "passed " + after + " after the reload"
	if login, ok := outputString(outputs, "logged_in_after"); ok && login != "" {
		note += "; the agent logged in " + login + " after it"
	}
	return note
}

func passedAfter(outputs cty.Value) string {
	after, _ := outputString(outputs, "passed_after")
	return after
}

type checkResult struct {
	serial, fingerprint, vaultVersion string
	// policies and certName are what a login got (vault_login), and
	// certName and tokenSerial the cert auth mapping and certificate an
	// agent's token came from (vault_agent).
	policies              []string
	certName, tokenSerial string
	// tokenIssued is when Vault issued the agent's token: its login.
	tokenIssued time.Time
}

func (v verification) attempt(ctx context.Context, env *Env) (checkResult, error) {
	switch v.check {
	case "vault_status":
		return v.vaultStatus(ctx)
	case "key_pair":
		return v.keyPair(ctx)
	case "vault_login":
		return v.login.attempt(ctx, env, v.endpoint)
	case "vault_agent":
		return v.agent.attempt(ctx, env)
	case "bundle":
		return v.bundle.attempt(ctx)
	case "command":
		return v.command.attempt(ctx, v.timeout)
	}
	return v.handshake(ctx)
}

// target names what the check looks at: an address, a certificate file,
// an agent's sink, or a program.
func (v verification) target() string {
	switch v.check {
	case "key_pair":
		return v.certFile
	case "vault_agent":
		return v.agent.sink
	case "bundle":
		return v.bundle.file
	case "command":
		// The program alone: the error of a failed command quotes it all.
		if len(v.command.argv) == 0 {
			return ""
		}
		return v.command.argv[0]
	}
	return v.endpoint.address
}

// keyPair checks that the key file holds the private key of the first
// certificate in the certificate file: what a service loading them needs,
// and what a half-finished rotation breaks. The error never quotes either
// file.
func (v verification) keyPair(ctx context.Context) (checkResult, error) {
	if err := ctx.Err(); err != nil {
		return checkResult{}, err
	}
	pair, err := loadKeyPair(v.certFile, v.keyFile, "cert_file", "key_file")
	if err != nil {
		return checkResult{}, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return checkResult{}, fmt.Errorf("%s: %w", v.certFile, err)
	}
	return checkResult{serial: SerialHex(leaf), fingerprint: contentDigest(leaf.Raw)}, nil
}

// handshake dials the endpoint afresh (never a reused connection, which
// would still show the certificate from before a reload) and checks what it
// serves.
func (v verification) handshake(ctx context.Context) (checkResult, error) {
	e := v.endpoint
	conf, err := e.tlsConfig()
	if err != nil {
		return checkResult{}, err
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: conf}
	conn, err := dialer.DialContext(ctx, "tcp", hostPort(e.address))
	if err != nil {
		return checkResult{}, fmt.Errorf("TLS handshake with %s (SNI %q): %w", e.address, conf.ServerName, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	leaf := state.PeerCertificates[0]
	res := checkResult{serial: SerialHex(leaf), fingerprint: contentDigest(leaf.Raw)}
	if v.expectSerial != nil && leaf.SerialNumber.Cmp(v.expectSerial) != 0 {
		return res, fmt.Errorf("%s serves serial %s, expected %s", e.address, res.serial, serialString(v.expectSerial))
	}
	if v.expectFingerprint != "" && res.fingerprint != v.expectFingerprint {
		return res, fmt.Errorf("%s serves fingerprint %s, expected %s", e.address, res.fingerprint, v.expectFingerprint)
	}
	return res, nil
}

// vaultStatus asks Vault for its seal status with a client of its own, so the
// TLS handshake, client certificate included, is made anew on each attempt.
func (v verification) vaultStatus(ctx context.Context) (checkResult, error) {
	client, addr, err := v.endpoint.vaultClient()
	if err != nil {
		return checkResult{}, err
	}
	defer client.CloneConfig().HttpClient.CloseIdleConnections()
	status, err := client.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return checkResult{}, fmt.Errorf("vault status at %s: %w", addr, err)
	}
	if status.Sealed {
		return checkResult{vaultVersion: status.Version}, errors.New("Vault is sealed")
	}
	return checkResult{vaultVersion: status.Version}, nil
}

// inputError is a file a check reads (its CA, a client certificate and
// key, a key pair) that cannot be read or holds no usable certificate or
// key. Unlike an endpoint that is not serving yet, it fails every attempt
// alike, so the check fails at once and the preview reports it. arg names
// the argument that gives the file, paths the files involved.
type inputError struct {
	arg   string
	paths []string
	err   error
}

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// argPath is the argument of the check's block that arg names, or the
// block itself when arg is "".
func (v verification) argPath(cfg Config, arg string) string {
	if arg == "" {
		return cfg.Path(v.check)
	}
	return cfg.Path(v.check + "." + arg)
}

// maxInputSize bounds what a check reads of a certificate, key or CA file:
// the largest CA bundles take a few hundred kilobytes.
const maxInputSize = 16 << 20

// readInput reads a file a check needs; what goes wrong is an inputError.
// Only a regular file is read, and at most maxInputSize of it: a device
// (/dev/zero) would never end, and opening without blocking keeps a named
// pipe from hanging the check.
func readInput(arg, path string) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, &inputError{arg: arg, paths: []string{path}, err: fmt.Errorf("reading %s: %w", arg, err)}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return fail(err)
	} else if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file", path))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxInputSize+1))
	if err == nil && len(b) > maxInputSize {
		err = fmt.Errorf("%s is larger than %d MiB", path, maxInputSize>>20)
	}
	if err != nil {
		return fail(err)
	}
	return b, nil
}

// loadKeyPair reads a certificate and its private key. The error names the
// files and never quotes them.
func loadKeyPair(certFile, keyFile, certArg, keyArg string) (tls.Certificate, error) {
	certPEM, err := readInput(certArg, certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readInput(keyArg, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &inputError{arg: certArg, paths: []string{certFile, keyFile},
			err: fmt.Errorf("%s and %s are not a key pair: %w", certFile, keyFile, err)}
	}
	return pair, nil
}

// vaultClient makes a Vault client of the check's own, with no token, for
// the endpoint's address (https:// unless it says otherwise) and TLS
// settings, so the TLS handshake, client certificate included, is made
// anew on each attempt. The caller closes its idle connections.
func (e endpoint) vaultClient() (client *vaultapi.Client, addr string, err error) {
	addr = e.address
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	// The Vault client reads the same files; reading them here first
	// tells a file that will never do from an endpoint that is not ready.
	if _, err := e.tlsConfig(); err != nil {
		return nil, addr, err
	}
	client, err = newVaultClient(addr, &vaultapi.TLSConfig{
		CACert:        e.caFile,
		CACertBytes:   []byte(e.caPEM),
		ClientCert:    e.clientCert,
		ClientKey:     e.clientKey,
		TLSServerName: e.serverName,
	}, 0)
	return client, addr, err
}

func (e endpoint) tlsConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	pemData := []byte(e.caPEM)
	if e.caFile != "" {
		var err error
		if pemData, err = readInput("ca_file", e.caFile); err != nil {
			return nil, err
		}
	}
	if !pool.AppendCertsFromPEM(pemData) {
		if e.caFile == "" {
			return nil, &inputError{arg: "ca_pem", err: errors.New("ca_pem holds no PEM certificate")}
		}
		return nil, &inputError{arg: "ca_file", paths: []string{e.caFile}, err: fmt.Errorf("ca_file %s holds no PEM certificate", e.caFile)}
	}
	conf := &tls.Config{RootCAs: pool, ServerName: e.serverName, MinVersion: tls.VersionTLS12}
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(hostPort(e.address))
	}
	if e.clientCert != "" {
		pair, err := loadKeyPair(e.clientCert, e.clientKey, "client_cert", "client_key")
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// hostPort accepts "host:port" or a URL such as "https://host:port".
func hostPort(address string) string {
	if u, err := url.Parse(address); err == nil && u.Host != "" {
		if u.Port() == "" {
			return net.JoinHostPort(u.Hostname(), "443")
		}
		return u.Host
	}
	return address
}

// parseSerial reads a serial number written as hex, with or without colons
// ("3c:1f:..." as Vault prints it, or "3C1F...").
func parseSerial(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(normalHex(s), 16)
	if !ok {
		return nil, fmt.Errorf("%q is not a serial number in hex", s)
	}
	return n, nil
}

func serialString(n *big.Int) string {
	return SerialHex(&x509.Certificate{SerialNumber: n})
}

func normalHex(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s)))
}
