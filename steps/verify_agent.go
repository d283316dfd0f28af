package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// A vault_agent check proves, from outside the app, that its Vault Agent
// has logged in with a given certificate: it reads the token the agent
// wrote to its file sink and looks it up with the run's own Vault identity
// (auth/token/lookup, so that it is Vault's word to the admin, not the
// agent's word about itself), and passes when the token's cert auth
// metadata names that certificate's serial number.
//
//	verify "agent_ncprd1" {
//	  timeout = "2m"
//	  since   = reload.agent_ncprd1.at
//	  vault_agent {
//	    sink          = "/home/ncprd1/vault/agent-token"
//	    expect_serial = issue.agent_ncprd1.serial_number
//	    cert_name     = "agent-ncprd1"
//	  }
//	}
//
// A restarted agent needs a moment to log in, so a sink that is missing,
// empty, or holds a token of another certificate or one no longer valid
// is "not yet", and the check tries again until its timeout. The token is
// never printed, logged or journaled; the run's identity needs the update
// capability on auth/token/lookup.
type agentCheck struct {
	sink string
	// expectSerial is the serial number of the certificate the agent
	// must have logged in with; nil in a preview.
	expectSerial *big.Int
	// certName, when set, is the cert auth mapping the login must have
	// matched.
	certName string
}

var (
	_ check     = agentCheck{}
	_ expecting = agentCheck{}
)

// agentSpec is the schema of a vault_agent block.
func agentSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"sink":          &hcldec.AttrSpec{Name: "sink", Type: cty.String, Required: true},
		"expect_serial": &hcldec.AttrSpec{Name: "expect_serial", Type: cty.String, Required: true},
		"cert_name":     &hcldec.AttrSpec{Name: "cert_name", Type: cty.String},
	}
}

// parseAgent reads a vault_agent block.
func parseAgent(c Config) (check, []error) {
	var a agentCheck
	var errs []error
	var err error
	a.sink, err = c.RequireString("sink")
	errs = append(errs, err)
	if err == nil && !strings.HasPrefix(a.sink, "/") {
		errs = append(errs, attrErr(c.Path("sink"), "%q is not an absolute path: give the path of the agent's file sink", a.sink))
	}
	s, err := c.RequireString("expect_serial")
	switch {
	case err != nil:
		errs = append(errs, err)
	default:
		if a.expectSerial, err = parseSerial(s); err != nil {
			errs = append(errs, attrErr(c.Path("expect_serial"), "%v (give it as Vault and the issue step print it: colon-separated hex)", err))
		}
	}
	if c.Set("cert_name") {
		a.certName, err = c.RequireString("cert_name")
		errs = append(errs, err)
	}
	return a, errs
}

// target implements check.
func (a agentCheck) target() string { return a.sink }

// withoutExpectations implements expecting.
func (a agentCheck) withoutExpectations() check {
	a.expectSerial = nil
	return a
}

// nowFact implements check.
func (agentCheck) nowFact(res checkResult) string {
	if res.tokenSerial == "" {
		return ""
	}
	return "the token in the sink is from serial " + res.tokenSerial + " (" + res.certName + ")"
}

// maxSinkSize bounds what the check reads of a sink: a token is a few
// hundred bytes at most.
const maxSinkSize = 64 << 10

// readSink reads the token in the agent's sink. A sink that is not there
// yet or empty is "not yet" (a plain error, retried); one the check can
// never read, or that holds what is not a plain token, is an inputError.
// No error quotes the file.
func (a agentCheck) readSink() (string, error) {
	never := func(format string, args ...any) (string, error) {
		return "", &inputError{arg: "sink", paths: []string{a.sink}, err: fmt.Errorf(format, args...)}
	}
	f, err := os.OpenFile(a.sink, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("the agent's sink %s holds no token yet (no such file)", a.sink)
	}
	if err != nil {
		return never("reading the agent's sink: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return never("reading the agent's sink: %w", err)
	} else if !fi.Mode().IsRegular() {
		return never("the agent's sink %s is not a regular file", a.sink)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSinkSize+1))
	if err != nil {
		return never("reading the agent's sink: %w", err)
	}
	if len(b) > maxSinkSize {
		return never("the agent's sink %s is larger than a token (more than %d KiB)", a.sink, maxSinkSize>>10)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case token == "":
		return "", fmt.Errorf("the agent's sink %s holds no token yet (empty)", a.sink)
	case strings.HasPrefix(token, "{"):
		return never("the agent's sink %s holds a wrapped or encrypted token (wrap_ttl or dh_type in the agent's sink): the check reads a plain file sink", a.sink)
	case strings.ContainsAny(token, " \t\r\n"):
		return never("the agent's sink %s does not hold a token", a.sink)
	}
	return token, nil
}

// attempt reads the sink and asks Vault, as the run's identity, what the
// token in it is.
func (a agentCheck) attempt(ctx context.Context, env *Env, _ time.Duration) (checkResult, error) {
	token, err := a.readSink()
	if err != nil {
		return checkResult{}, err
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return checkResult{}, &inputError{err: fmt.Errorf("looking up the agent's token needs the run's Vault session: %w", err)}
	}
	secret, err := client.Auth().Token().LookupWithContext(ctx, token)
	if err != nil {
		return checkResult{}, a.lookupError(err, token)
	}
	if secret == nil || secret.Data == nil {
		return checkResult{}, fmt.Errorf("looking up the token in the agent's sink %s: Vault returned nothing", a.sink)
	}
	meta, _ := secret.Data["meta"].(map[string]any)
	certName, _ := meta["cert_name"].(string)
	decimal, _ := meta["serial_number"].(string)
	if decimal == "" {
		path, _ := secret.Data["path"].(string)
		return checkResult{}, fmt.Errorf("the token in the agent's sink %s was not issued by cert auth (it came from %q, and names no certificate serial)", a.sink, path)
	}
	serial, ok := new(big.Int).SetString(decimal, 10)
	if !ok {
		return checkResult{}, fmt.Errorf("the token in the agent's sink %s names the certificate serial %q, which is not a number", a.sink, decimal)
	}
	res := checkResult{certName: certName, tokenSerial: serialString(serial)}
	if issued, ok := secret.Data["issue_time"].(string); ok {
		res.tokenIssued, _ = time.Parse(time.RFC3339Nano, issued)
	}
	env.Log.Debug("looked up the agent's token", "sink", a.sink, "cert_name", certName, "token_serial", res.tokenSerial)
	if a.expectSerial != nil && serial.Cmp(a.expectSerial) != 0 {
		return res, fmt.Errorf("the token in the agent's sink %s is from the certificate with serial %s (mapping %q), not %s: the agent has not logged in with the new certificate",
			a.sink, res.tokenSerial, certName, serialString(a.expectSerial))
	}
	if a.certName != "" && certName != a.certName {
		return res, fmt.Errorf("the token in the agent's sink %s is from the cert auth mapping %q, not %q", a.sink, certName, a.certName)
	}
	return res, nil
}

// lookupError explains why Vault would not look the token up. A token
// Vault no longer knows (the agent's old one, revoked or expired) is "not
// yet"; the run's identity lacking the right to look tokens up is never
// going to pass. The token is never part of the message.
func (a agentCheck) lookupError(err error, token string) error {
	msg := strings.ReplaceAll(vaultMessage(err), token, "(token)")
	var resp *vaultapi.ResponseError
	if errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden {
		if strings.Contains(msg, "bad token") || strings.Contains(msg, "invalid token") {
			return fmt.Errorf("the token in the agent's sink %s is not valid (revoked or expired): the agent has not logged in again", a.sink)
		}
		return &inputError{err: fmt.Errorf("looking up the token in the agent's sink %s: %s: the run's Vault identity needs the update capability on auth/token/lookup", a.sink, msg)}
	}
	return fmt.Errorf("looking up the token in the agent's sink %s: %s", a.sink, msg)
}
