package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// A vault_login check is the operator's
//
//	vault login -method=cert -client-cert agent.crt -client-key agent.key
//
// automated: it logs in to Vault with the cert auth method, presenting an
// app's client certificate and trusting only the CA file the app trusts,
// at the listener's address with SNI, and passes only when the login
// succeeds and the token carries every expected policy (others, such as
// "default", may come with them). The token is revoked at once (revoke-self)
// and is never printed, logged or journaled.
//
//	verify "login_ncprd1" {
//	  vault_login {
//	    address         = "127.0.0.1:22400"
//	    server_name     = "vault.prod.privsec.ch"
//	    ca_file         = "/home/ncprd1/vault/ca/ca.pem"
//	    client_cert     = "/home/ncprd1/vault/mtls/agent.crt"
//	    client_key      = "/home/ncprd1/vault/mtls/agent.key"
//	    name            = "agent-ncprd1"
//	    expect_policies = ["pki-issue-ncprd1", "marker-cert-auth"]
//	  }
//	}
//
// It exercises TLS trust, the cert auth mapping and its policies at once.
type loginCheck struct {
	endpoint
	mount string // the cert auth method's path, without "auth/"
	name  string // the mapping (auth/cert/certs/NAME) to log in against; "" for any
	// expectPolicies must all be on the token.
	expectPolicies []string
}

var (
	_ check     = loginCheck{}
	_ expecting = loginCheck{}
	_ detailed  = loginCheck{}
)

// loginSpec is the schema of a vault_login block.
func loginSpec() hcldec.ObjectSpec {
	s := endpointSpec()
	s["mount"] = &hcldec.AttrSpec{Name: "mount", Type: cty.String}
	s["name"] = &hcldec.AttrSpec{Name: "name", Type: cty.String}
	s["expect_policies"] = &hcldec.AttrSpec{Name: "expect_policies", Type: cty.List(cty.String)}
	return s
}

// parseLogin reads a vault_login block.
func parseLogin(c Config) (check, []error) {
	e, errs := parseEndpoint(c, true)
	l := loginCheck{endpoint: e, mount: "cert", name: c.String("name")}
	if !c.Set("client_cert") && !c.Set("client_key") {
		errs = append(errs, attrErr(c.Path("client_cert"), "a cert login needs client_cert and client_key: the certificate and key the app logs in with"))
	}
	if c.Set("mount") {
		m, err := c.RequireString("mount")
		switch {
		case err != nil:
			errs = append(errs, err)
		case strings.HasPrefix(strings.Trim(m, "/"), "auth/"):
			errs = append(errs, attrErr(c.Path("mount"), "%q: give the auth method's path without \"auth/\" (%q), as vault login -path takes it", m, strings.TrimPrefix(strings.Trim(m, "/"), "auth/")))
		default:
			l.mount = strings.Trim(m, "/")
		}
	}
	if c.Set("name") && c.Known("name") && l.name == "" {
		errs = append(errs, attrErr(c.Path("name"), "must not be empty: name the cert auth mapping (auth/%s/certs/NAME), or leave name out to let Vault pick", l.mount))
	}
	policies, err := c.StringList("expect_policies")
	errs = append(errs, err)
	if err == nil && c.Set("expect_policies") && len(policies) == 0 {
		errs = append(errs, attrErr(c.Path("expect_policies"), "must not be empty: name the policies the token must carry, or leave expect_policies out"))
	}
	for i, p := range policies {
		if strings.TrimSpace(p) == "" {
			errs = append(errs, attrErr(c.Path("expect_policies"), "element %d is empty", i+1))
		}
	}
	l.expectPolicies = policies
	return l, errs
}

// withoutExpectations implements expecting.
func (l loginCheck) withoutExpectations() check {
	l.expectPolicies = nil
	return l
}

// nowFact implements check.
func (loginCheck) nowFact(res checkResult) string {
	if res.policies == nil {
		return ""
	}
	return "logs in with " + res.certName + ", policies " + strings.Join(res.policies, ", ")
}

// attempt logs in afresh (a new client, so a new TLS handshake with the
// certificate files as they are now), checks the policies and revokes the
// token before it returns, whether the check passed or not.
func (l loginCheck) attempt(ctx context.Context, env *Env, _ time.Duration) (checkResult, error) {
	e := l.endpoint
	client, addr, err := e.vaultClient()
	if err != nil {
		return checkResult{}, err
	}
	defer client.CloneConfig().HttpClient.CloseIdleConnections()
	body := map[string]any{}
	if l.name != "" {
		body["name"] = l.name
	}
	path := "auth/" + l.mount + "/login"
	secret, err := client.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return checkResult{}, fmt.Errorf("cert login at %s%s (%s) with %s: %s", addr, e.via(), path, e.clientCert, vaultMessage(err))
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return checkResult{}, fmt.Errorf("cert login at %s (%s) returned no token", addr, path)
	}
	client.SetToken(secret.Auth.ClientToken)
	res := checkResult{policies: slices.Clone(secret.Auth.Policies), certName: secret.Auth.Metadata["cert_name"]}
	if res.policies == nil {
		res.policies = []string{}
	}
	slices.Sort(res.policies)
	// Revoked before anything else: the check needs the login, never
	// the token. The context may be done by now; the revocation must
	// still be tried.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), planAttemptTimeout)
	defer cancel()
	if err := client.Auth().Token().RevokeSelfWithContext(rctx, ""); err != nil {
		return res, fmt.Errorf("cert login at %s passed, but revoking its token failed: %s; revoke it by hand: vault token revoke -accessor %s",
			addr, vaultMessage(err), secret.Auth.Accessor)
	}
	client.ClearToken()
	env.Log.Debug("cert login passed, token revoked", "address", addr, "cert_name", res.certName, "policies", res.policies)
	var missing []string
	for _, p := range l.expectPolicies {
		if !slices.Contains(res.policies, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return res, fmt.Errorf("cert login at %s with %s (mapping %q) got policies [%s], without %s",
			addr, e.clientCert, res.certName, strings.Join(res.policies, ", "), strings.Join(missing, ", "))
	}
	return res, nil
}
