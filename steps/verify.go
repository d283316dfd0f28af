package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
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
// fingerprint (verify_tls.go). A vault_status check asks Vault for its seal
// status over (m)TLS with the given client certificate and fails if Vault
// is sealed or unreachable (verify_status.go); a key_pair check matches a
// certificate file with its key (verify_keypair.go). A vault_login check logs in with cert auth as an app would
// (verify_login.go); a vault_agent check proves that an agent logged in
// with a given certificate (verify_agent.go). A bundle check looks at a
// PEM bundle on disk as a client would see it served (verify_bundle.go),
// a command check runs a service's configuration test before its
// reload (verify_command.go), and a vault_cluster check asks autopilot
// whether a Raft cluster is healthy with every voter it should have
// (verify_cluster.go). With since (a reload's at),
// the step reports how long after it the check first passed.
type Verify struct{}

var (
	_ Step       = (*Verify)(nil)
	_ Summarizer = (*Verify)(nil)
	_ Planner    = (*Verify)(nil)
	_ ReadOnly   = (*Verify)(nil)
	_ Noter      = (*Verify)(nil)

	_ SettingsUser = (*Verify)(nil)
	_ HostRunner   = (*Verify)(nil)
)

// Settings implements SettingsUser: a vault_agent check looks the agent's
// token up as the run's own Vault identity; a command check may run on a
// host its step names with `on`.
func (*Verify) Settings() Settings {
	return Settings{"vault": vaultSettings{}, HostSetting: hostSettings{}}
}

// RunsOnHost implements HostRunner: a command check with `on` runs its
// command on that host; a check that looks over the network (network)
// belongs to that host for its rollout and still looks from where rotplan
// runs; any other check there is refused (onHostCheck).
func (*Verify) RunsOnHost() {}

// network is a check that looks over the network from where rotplan runs
// (a TLS endpoint, Vault's API). With `on`, it is for that host, as the
// design has it for checks from the network: a rollout's next batch waits
// for it, and it still looks from here.
type network interface {
	overNetwork()
}

// onHostCheck refuses, for a step with `on`, a check that reads files or
// a sink where rotplan runs (bundle, key_pair, vault_agent): with `on`, it
// would read them here and say nothing of the host.
func (v verification) onHostCheck(env *Env) error {
	host, ok := env.Host()
	if !ok || v.name == "command" {
		return nil
	}
	if _, ok := v.check.(network); ok {
		return nil
	}
	return attrErr(v.name, "a %s check does not run on a host (%s): it reads files where rotplan runs; only a command check runs there, and the checks over the network (tls, vault_status, vault_login, vault_cluster) take on to belong to the host for its rollout; remove on", v.name, host)
}

// ReadOnly implements ReadOnly: a check changes nothing.
func (*Verify) ReadOnly() {}

// Spec implements Step: the step's own arguments and one block type per
// check.
func (*Verify) Spec() hcldec.ObjectSpec {
	spec := hcldec.ObjectSpec{
		"timeout":  &hcldec.AttrSpec{Name: "timeout", Type: cty.String},
		"interval": &hcldec.AttrSpec{Name: "interval", Type: cty.String},
		"since":    &hcldec.AttrSpec{Name: "since", Type: cty.String},
	}
	for _, k := range checks {
		spec[k.name] = &hcldec.BlockSpec{TypeName: k.name, Nested: k.spec()}
	}
	return spec
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

// check is one check block of a verify step, parsed. Each kind has a
// file of its own (verify_tls.go, verify_status.go, ...) and a line in
// checks; what only some kinds do is an optional interface (expecting,
// graced, unattempted, detailed).
type check interface {
	// target names what the check looks at: an address, a certificate
	// file, an agent's sink, or a program.
	target() string
	// attempt tries the check once; timeout is the step's.
	attempt(ctx context.Context, env *Env, timeout time.Duration) (checkResult, error)
	// nowFact is what a preview says of an attempt that passed; ""
	// when there is nothing to say.
	nowFact(res checkResult) string
}

// expecting is a check with expectations that only hold after the run
// (a serial just issued); a preview tries it without them.
type expecting interface {
	withoutExpectations() check
}

// graced is a check whose attempt keeps to the step's timeout on its
// own: its step outlives that by grace, so that the check's own limit,
// not the step's deadline, stops it.
type graced interface {
	grace() time.Duration
}

// unattempted is a check a preview does not try, as trying it runs
// something; previewProblem says what can be told without.
type unattempted interface {
	previewProblem(ctx context.Context, env *Env) error
}

// detailed is a check with more for the preview's reason than its
// target (the SNI an endpoint check sends).
type detailed interface {
	detail() string
}

// checkKind is a check block type: its schema, and its parser, which
// returns the check even when it reports errors, for the preview.
type checkKind struct {
	name  string
	spec  func() hcldec.ObjectSpec
	parse func(Config) (check, []error)
}

// checks are the check blocks a verify step holds one of, in the order
// the messages list them.
var checks = []checkKind{
	{"tls", servedSpec, parseServed},
	{"vault_status", endpointSpec, parseSealStatus},
	{"key_pair", keyPairSpec, parseKeyPair},
	{"vault_login", loginSpec, parseLogin},
	{"vault_agent", agentSpec, parseAgent},
	{"bundle", bundleSpec, parseBundle},
	{"command", commandSpec, parseCommand},
	{"vault_cluster", clusterSpec, parseCluster},
}

type verification struct {
	name              string // the check block's type, one of checks; "" without one
	check             check  // nil without a check block, or with more than one
	timeout, interval time.Duration
	// since is when the reload or restart the check follows finished;
	// zero when the step does not say.
	since time.Time
}

// target is what the check looks at; "" when there is no check.
func (v verification) target() string {
	if v.check == nil {
		return ""
	}
	return v.check.target()
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

	var given []string
	var kind checkKind
	var block Config
	blocks := make([]string, len(checks))
	for i, k := range checks {
		blocks[i] = k.name + " { ... }"
		if b, has := cfg.Block(k.name); has {
			given = append(given, k.name)
			kind, block = k, b
		}
	}
	switch len(given) {
	case 0:
		last := len(blocks) - 1
		errs = append(errs, attrErr(checks[0].name, "a verify step needs one check block: %s or %s", strings.Join(blocks[:last], ", "), blocks[last]))
	case 1:
		v.name = kind.name
		var more []error
		v.check, more = kind.parse(block)
		errs = append(errs, more...)
	default:
		errs = append(errs, attrErr(given[len(given)-1], "a verify step holds one check: split %s into steps of their own", strings.Join(given, ", ")))
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
	if err := v.onHostCheck(env); err != nil {
		return cty.NilVal, err
	}
	parent := ctx
	budget := v.timeout
	if g, ok := v.check.(graced); ok {
		budget += g.grace()
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	deadline, _ := ctx.Deadline()

	var result checkResult
	var last error // the last failure that says something: not the deadline
	attempts := 0
	for {
		attempts++
		result, err = v.check.attempt(ctx, env, v.timeout)
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
				v.name, v.target(), err)
		}
		env.Log.Debug("check not passing yet", "check", v.name, "target", v.target(), "attempt", attempts, "error", err)
		select {
		case <-ctx.Done():
			// An attempt the deadline cut short says only that; the one
			// before it says why the check was failing.
			if parent.Err() != nil {
				return cty.NilVal, fmt.Errorf("%s check of %s interrupted after %d attempts (%v); last failure: %w",
					v.name, v.target(), attempts, parent.Err(), last)
			}
			return cty.NilVal, fmt.Errorf("%s check of %s still failing after %d attempts in %s: %w",
				v.name, v.target(), attempts, v.timeout, last)
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
	logArgs := []any{"check", v.name, "target", v.target(), "attempts", attempts}
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
		"check":              cty.StringVal(v.name),
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
	pv := Preview{Action: Check, Reason: v.name + " " + v.target()}
	if d, ok := v.check.(detailed); ok {
		pv.Reason += d.detail()
	}
	if err != nil || v.target() == "" {
		return pv, ctx.Err() // unknown until the run; Validate reports the rest
	}
	if err := v.onHostCheck(env); err != nil {
		pv.Problems = append(pv.Problems, err)
		return pv, ctx.Err()
	}
	c := v.check
	if e, ok := c.(expecting); ok {
		c = e.withoutExpectations()
	}
	var input *inputError
	if u, ok := c.(unattempted); ok {
		if err := u.previewProblem(ctx, env); errors.As(err, &input) {
			pv.Problems = append(pv.Problems, attrErr(v.argPath(cfg, input.arg), "%v", err))
		}
		return pv, ctx.Err()
	}
	actx, cancel := context.WithTimeout(ctx, planAttemptTimeout)
	defer cancel()
	res, err := c.attempt(actx, env, v.timeout)
	switch {
	case errors.As(err, &input) && !env.Planned(input.paths...):
		pv.Problems = append(pv.Problems, attrErr(v.argPath(cfg, input.arg), "%v", err))
	case err != nil:
		pv.Now = append(pv.Now, Fact{Name: "now", Value: "fails: " + err.Error()})
	default:
		if now := c.nowFact(res); now != "" {
			pv.Now = append(pv.Now, Fact{Name: "now", Value: now})
		}
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
	// cluster is what autopilot reports (vault_cluster).
	cluster string
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
		return cfg.Path(v.name)
	}
	return cfg.Path(v.name + "." + arg)
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
