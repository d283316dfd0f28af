package testvault

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EverythingPlanVars returns the variables of examples/everything.hcl, the
// seed's whole run, for this bed: those of [Vault.PlanVars] and of
// [Vault.AgentPlanVars] for the proxy's apps, the root CA (ca_cert), and
// the edge proxy's: its address, nginx's configuration test, the harness's
// commands that reload and restart nginx, restart the proxy's agent and
// restart Vault. Lists and maps are HCL expressions, as -var takes them.
// It needs the apps ([Vault.AddApps]) and the proxy ([Vault.StartProxy]).
func (v *Vault) EverythingPlanVars() (map[string]string, error) {
	p := v.Proxy()
	if p == nil {
		return nil, errors.New("testvault: the whole run needs the edge proxy (StartProxy)")
	}
	for _, app := range p.Apps {
		if v.App(app) == nil {
			return nil, errors.New("testvault: the whole run needs the proxy's apps and their agents (AddApps " + app + ")")
		}
	}
	vars := v.PlanVars()
	maps.Copy(vars, v.AgentPlanVars(p.Apps...))
	vars["ca_cert"] = v.RootCAFile
	vars["proxy_addr"] = p.HostPort
	vars["nginx_test"] = hclList(p.binary, "-t", "-q", "-c", p.ConfigFile, "-p", p.Prefix+"/")
	vars["proxy_reload"] = hclList(p.RestartCommand, "reload")
	vars["proxy_restart"] = hclList(p.RestartCommand, "restart")
	vars["proxy_agent_restart"] = hclList(p.Agent.RestartCommand)
	vars["vault_restart"] = hclList(v.RestartCommand, "restart")
	return vars, nil
}

// hclList writes words as an HCL list of strings.
func hclList(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Certificate is one certificate of the whole run as a client sees it:
// served by Vault or nginx, or the login an agent's token came from.
type Certificate struct {
	Name string // "Vault listener", "agent ncprd1", "leaf ncprd1", ...
	How  string // how a client sees it
	File string // the file it is loaded from: after a run, what it must show

	seen func(context.Context) (*big.Int, error)
}

// Seen returns the serial a client sees of c now.
func (c Certificate) Seen(ctx context.Context) (*big.Int, error) {
	s, err := c.seen(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	return s, nil
}

// OnDisk returns the serial of the first certificate in c.File.
func (c Certificate) OnDisk() (*big.Int, error) { return fileSerial(c.File) }

// WaitSeen waits until what a client sees of c is the certificate in
// c.File (an agent's sink or nginx's workers may follow a moment after a
// restart), and returns its serial; when ctx ends first, the last error.
func (c Certificate) WaitSeen(ctx context.Context) (*big.Int, error) {
	for {
		s, err := c.Seen(ctx)
		if err == nil {
			var disk *big.Int
			if disk, err = c.OnDisk(); err == nil && s.Cmp(disk) != 0 {
				err = fmt.Errorf("%s shows serial %x, but %s holds %x", c.Name, s, c.File, disk)
			}
		}
		if err == nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Certificates lists every certificate the whole run rotates, as a client
// sees it: the admin client certificate (its file: the identity rotplan
// and the operator use), Vault's listener (served), each agent's login
// (apps and the proxy's), each app's leaf and the Vault edge's certificate
// (served by nginx). It needs the proxy ([Vault.StartProxy]) and its apps.
func (v *Vault) Certificates() ([]Certificate, error) {
	p := v.Proxy()
	if p == nil || p.Agent == nil {
		return nil, errors.New("testvault: the whole run needs the edge proxy (StartProxy)")
	}
	admin, adminKey := filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")
	out := []Certificate{
		{"admin client", "admin.crt: rotplan's and the operator's mTLS identity", admin,
			func(context.Context) (*big.Int, error) { return fileSerial(admin) }},
		{"Vault listener", "served at " + v.HostPort + " (SNI " + v.ServerName + ")", filepath.Join(v.ServerDir, "server.crt"),
			func(ctx context.Context) (*big.Int, error) { return LeafSerial(v.ServedChain(ctx)) }},
	}
	agents := []*App{}
	for _, app := range p.Apps {
		a := v.App(app)
		if a == nil {
			return nil, fmt.Errorf("testvault: the whole run needs app %s (AddApps)", app)
		}
		agents = append(agents, a)
	}
	for _, a := range append(agents, p.Agent) {
		out = append(out, Certificate{"agent " + a.Name, "the login of the token in its sink (cert auth's record)", a.CertFile, a.TokenSerial})
	}
	for _, app := range p.Apps {
		chain, _ := p.LeafFiles(app)
		out = append(out, Certificate{"leaf " + app, "served by nginx at " + p.HostPort + " (SNI " + LeafName(app) + ")", chain,
			func(ctx context.Context) (*big.Int, error) { return LeafSerial(p.ServedChain(ctx, LeafName(app))) }})
	}
	edge, _ := p.LeafFiles("vault")
	out = append(out, Certificate{"Vault edge", "served by nginx at " + p.HostPort + " (SNI " + p.ServerName + ")", edge,
		func(ctx context.Context) (*big.Int, error) {
			return LeafSerial(v.servedChainAt(ctx, p.HostPort, p.ServerName, admin, adminKey))
		}})
	return out, nil
}

// TokenSerial returns the serial of the certificate the token in a's sink
// logged in with, as Vault's cert auth recorded it (looked up with the
// root client). The token itself is never returned.
func (a *App) TokenSerial(ctx context.Context) (*big.Int, error) {
	tok, err := a.Token()
	if err != nil {
		return nil, err
	}
	if tok == "" {
		return nil, fmt.Errorf("no token in %s", a.SinkFile)
	}
	info, err := a.v.LookupToken(ctx, tok)
	if err != nil {
		return nil, err
	}
	n, ok := new(big.Int).SetString(info.Meta["serial_number"], 10)
	if !ok {
		return nil, errors.New("the token in " + a.SinkFile + " carries no serial_number: not a cert-auth login")
	}
	return n, nil
}

func fileSerial(path string) (*big.Int, error) {
	certs, err := ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	return certs[0].SerialNumber, nil
}

// LeafSerial is the serial of a served chain's leaf (a chain and error as
// ServedChain returns them): the serial a client of the server sees.
func LeafSerial(chain []*x509.Certificate, err error) (*big.Int, error) {
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("no certificate served")
	}
	return chain[0].SerialNumber, nil
}
