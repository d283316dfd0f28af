package testvault

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MarkerPolicy is the policy every agent's cert-auth mapping carries next to
// its pki-issue-<app> policy. It grants next to nothing: its presence on a
// token marks that the token was obtained through cert auth by an agent
// whose mapping is in the declared state, so a drifted mapping (the seed's
// "agent looks healthy but cannot authenticate or renew") shows as a token
// without it.
const MarkerPolicy = "marker-cert-auth"

// markerPolicyText is the text of MarkerPolicy.
const markerPolicyText = `# marker-cert-auth: marks tokens that Vault Agents obtained through cert auth
# with a mapping in the declared state. It grants only what every agent token
# needs anyway.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
`

// agentDomain is the domain of the agents' login certificates:
// agent-<app>.prod.privsec.ch.
const agentDomain = "prod.privsec.ch"

// SeedApps returns the names of the seed's app workloads, each a Unix user
// with its own Vault Agent: ncprd1 and resume2me.
func SeedApps() []string { return []string{"ncprd1", "resume2me"} }

// App is one app workload set up by [Vault.AddApps], or the edge proxy's
// own agent set up by [Vault.StartProxy] ([Proxy.Agent]): a system user, a
// home directory below the harness directory, a PKI role, policies, a
// cert-auth mapping, the agent's login certificate files and a real Vault
// Agent running as the app user.
type App struct {
	Name  string // "ncprd1"
	User  string // system user (same as Name)
	Group string // primary group of User
	UID   int
	GID   int

	Home     string // Dir/home/<app>, owned by User
	KeyFile  string // Home/vault/mtls/agent.key (0600)
	CertFile string // Home/vault/mtls/agent.crt (0644): the agent's login certificate, leaf only
	CAFile   string // Home/vault/ca/ca.pem (0644): the root CA the agent trusts for the listener

	CommonName string   // "agent-<app>.prod.privsec.ch"
	Role       string   // "agent-mtls-<app>", on pki-prod
	Policy     string   // "pki-issue-<app>"
	Policies   []string // every policy on the mapping, in order: Policy, the app's own (proxyprod: pki-ca-read-proxyprod), MarkerPolicy
	Mapping    string   // "agent-<app>": auth/cert/certs/agent-<app>

	AgentConfig    string // the agent's configuration (HCL), Dir/etc/vault-agent.d/<app>.hcl
	SinkFile       string // the agent's token sink, Home/vault/agent/token
	PIDFile        string // pid of the running agent, Dir/run/agents/<app>.pid
	LogFile        string // the agent's output, Dir/log/agent-<app>.log
	RestartCommand string // Dir/bin/restart-agent-<app>: restarts the agent from outside the harness

	v        *Vault
	agent    *unit
	policies []appPolicy // Policies with their texts
}

// AddApps sets up the named apps (see [SeedApps]) and starts their agents:
// per app the system user (created when missing), the home directory, the
// PKI role, the policies, the cert-auth mapping, an initial login
// certificate from the role, the agent's configuration and restart command.
// It returns when every agent's sink holds a token. It needs root (users,
// file owners, agents running as the app users). ProxyUser is refused:
// StartProxy sets up the proxy's agent (with its own policies), so the
// name is never set up twice.
func (v *Vault) AddApps(ctx context.Context, names ...string) ([]*App, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testvault: apps need root (system users, file owners, agents running as the app users)")
	}
	apps := make([]*App, 0, len(names))
	for _, name := range names {
		a, err := v.addApp(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("testvault: app %s: %w", name, err)
		}
		apps = append(apps, a)
	}
	for _, a := range apps {
		if _, err := a.WaitToken(ctx, ""); err != nil {
			return nil, fmt.Errorf("testvault: app %s: %w", a.Name, err)
		}
	}
	return apps, nil
}

// App returns the app set up by [Vault.AddApps] under name, or nil.
func (v *Vault) App(name string) *App {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.apps[name]
}

func (v *Vault) addApp(ctx context.Context, name string) (*App, error) {
	if name == ProxyUser {
		return nil, fmt.Errorf("%s is the edge proxy's app: StartProxy sets up its agent (Proxy.Agent)", ProxyUser)
	}
	a, err := v.newApp(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	if err := v.register(a, nil); err != nil {
		return nil, err
	}
	return a, a.run(ctx)
}

// newApp prepares app name (user, files, Vault configuration, the agent's
// configuration and restart command) without registering it or starting
// its agent; extra are policies (name to text) its mapping carries next to
// pki-issue-<app> and MarkerPolicy.
func (v *Vault) newApp(ctx context.Context, name string, extra []appPolicy) (*App, error) {
	if !validAppName(name) {
		return nil, fmt.Errorf("invalid app name %q (want lower-case letters, digits and '-')", name)
	}
	v.mu.Lock()
	_, dup := v.apps[name]
	stopped := v.stopped
	v.mu.Unlock()
	if dup {
		return nil, errors.New("already set up")
	}
	if stopped {
		return nil, errors.New("vault is stopped")
	}

	userName, group, uid, gid, err := ensureSystemUserIDs(name)
	if err != nil {
		return nil, err
	}
	home := filepath.Join(v.Dir, "home", name)
	a := &App{
		Name:           name,
		User:           userName,
		Group:          group,
		UID:            uid,
		GID:            gid,
		Home:           home,
		KeyFile:        filepath.Join(home, "vault", "mtls", "agent.key"),
		CertFile:       filepath.Join(home, "vault", "mtls", "agent.crt"),
		CAFile:         filepath.Join(home, "vault", "ca", "ca.pem"),
		CommonName:     "agent-" + name + "." + agentDomain,
		Role:           "agent-mtls-" + name,
		Policy:         "pki-issue-" + name,
		Mapping:        "agent-" + name,
		AgentConfig:    filepath.Join(v.Dir, "etc", "vault-agent.d", name+".hcl"),
		SinkFile:       filepath.Join(home, "vault", "agent", "token"),
		PIDFile:        filepath.Join(v.Dir, "run", "agents", name+".pid"),
		LogFile:        filepath.Join(v.Dir, "log", "agent-"+name+".log"),
		RestartCommand: filepath.Join(v.Dir, "bin", "restart-agent-"+name),
		v:              v,
	}
	a.policies = append([]appPolicy{{a.Policy, a.pkiIssuePolicy()}}, extra...)
	a.policies = append(a.policies, appPolicy{MarkerPolicy, markerPolicyText})
	for _, p := range a.policies {
		a.Policies = append(a.Policies, p.name)
	}
	if err := checkExecutable(v.binary, uid, gid); err != nil {
		return nil, fmt.Errorf("the agent runs as %s: %w", name, err)
	}
	if err := a.layout(); err != nil {
		return nil, err
	}
	if err := a.configureVault(ctx); err != nil {
		return nil, err
	}
	if err := a.writeAgentConfig(); err != nil {
		return nil, err
	}
	a.agent = newAgent(a)
	if err := a.writeRestartCommand(); err != nil {
		return nil, err
	}
	return a, nil
}

// appPolicy is a policy of an app's mapping: its name and text.
type appPolicy struct{ name, text string }

// register records a (so that Stop stops its agent) unless an app of its
// name is set up already or Vault is stopped; also, under the same lock,
// whatever fn does (nil: nothing) unless it fails.
func (v *Vault) register(a *App, fn func() error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, dup := v.apps[a.Name]; dup {
		return errors.New("already set up")
	}
	if v.stopped {
		return errors.New("vault is stopped")
	}
	if fn != nil {
		if err := fn(); err != nil {
			return err
		}
	}
	if v.apps == nil {
		v.apps = map[string]*App{}
	}
	v.apps[a.Name] = a
	v.appOrder = append(v.appOrder, a.Name)
	return nil
}

// run starts the agent's restart listener and the agent.
func (a *App) run(ctx context.Context) error {
	if err := a.agent.listen(); err != nil {
		return err
	}
	return a.Start(ctx)
}

func validAppName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// layout creates the app's directories: the home and its vault tree owned
// by the app user, and the harness's own directories for configuration,
// pid files, logs and commands.
func (a *App) layout() error {
	me, mg := os.Geteuid(), os.Getegid()
	return mkdirsOwned([]ownedDir{
		{filepath.Join(a.v.Dir, "etc", "vault-agent.d"), 0o755, me, mg},
		{filepath.Dir(a.PIDFile), 0o755, me, mg},
		{filepath.Dir(a.LogFile), 0o755, me, mg},
		{filepath.Dir(a.RestartCommand), 0o755, me, mg},
		{a.Home, 0o750, a.UID, a.GID},
		{filepath.Join(a.Home, "vault"), 0o750, a.UID, a.GID},
		{filepath.Dir(a.KeyFile), 0o750, a.UID, a.GID},
		{filepath.Dir(a.CAFile), 0o755, a.UID, a.GID},
		{filepath.Dir(a.SinkFile), 0o700, a.UID, a.GID},
	})
}

// nameRole returns the fields of a PKI role that issues EC P-256
// certificates for exactly one host name (no subdomains, globs, wildcards,
// localhost or IP addresses; names enforced), valid for 30 days: client
// certificates (an agent's login) when client, else server certificates
// (an app's leaf served by the edge proxy).
func nameRole(name string, client bool) map[string]any {
	return map[string]any{
		"allowed_domains":             []string{name},
		"allow_bare_domains":          true,
		"allow_subdomains":            false,
		"allow_glob_domains":          false,
		"allow_wildcard_certificates": false,
		"allow_localhost":             false,
		"allow_ip_sans":               false,
		"enforce_hostnames":           true,
		"client_flag":                 client,
		"server_flag":                 !client,
		"key_type":                    "ec",
		"key_bits":                    256,
		"ttl":                         "720h",
		"max_ttl":                     "720h",
	}
}

// pkiIssuePolicy is the text of the policy pki-issue-<app>: issue from the
// app's own role, nothing else.
func (a *App) pkiIssuePolicy() string {
	return fmt.Sprintf(`# %s: issue the agent login certificate of app %s.
path "pki-prod/issue/%s" {
  capabilities = ["create", "update"]
}
`, a.Policy, a.Name, a.Role)
}

// configureVault writes the role, the policies, an initial certificate
// (files) and the cert-auth mapping, through the root client.
func (a *App) configureVault(ctx context.Context) error {
	c := a.v.Root()
	if _, err := c.Logical().WriteWithContext(ctx, "pki-prod/roles/"+a.Role, nameRole(a.CommonName, true)); err != nil {
		return fmt.Errorf("role %s: %w", a.Role, err)
	}
	for _, p := range a.policies {
		if err := c.Sys().PutPolicyWithContext(ctx, p.name, p.text); err != nil {
			return fmt.Errorf("policy %s: %w", p.name, err)
		}
	}
	cert, err := a.issueCert(ctx)
	if err != nil {
		return err
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/cert/certs/"+a.Mapping, map[string]any{
		"display_name":         a.Mapping,
		"certificate":          joinPEM(cert.issuingCA),
		"allowed_common_names": []string{a.CommonName},
		"token_policies":       a.Policies,
		"token_ttl":            "1h",
		"token_max_ttl":        "24h",
	}); err != nil {
		return fmt.Errorf("cert auth mapping %s: %w", a.Mapping, err)
	}
	root, err := os.ReadFile(a.v.RootCAFile)
	if err != nil {
		return err
	}
	return writeFileOwned(a.CAFile, root, 0o644, a.UID, a.GID)
}

// issueCert issues a login certificate from the app's role and writes key
// and certificate files (the key first, each replaced atomically).
func (a *App) issueCert(ctx context.Context) (*issued, error) {
	cert, err := issue(ctx, a.v.Root(), a.Role, map[string]any{
		"common_name": a.CommonName,
		"ttl":         "720h",
	})
	if err != nil {
		return nil, err
	}
	if err := writeFileOwned(a.KeyFile, []byte(joinPEM(cert.key)), 0o600, a.UID, a.GID); err != nil {
		return nil, err
	}
	if err := writeFileOwned(a.CertFile, []byte(joinPEM(cert.cert)), 0o644, a.UID, a.GID); err != nil {
		return nil, err
	}
	return cert, nil
}

// ReplaceCert issues a new login certificate from the app's role and
// replaces the key and certificate files with it, as a rotation does; the
// running agent keeps its old login until it is restarted.
func (a *App) ReplaceCert(ctx context.Context) (*x509.Certificate, error) {
	cert, err := a.issueCert(ctx)
	if err != nil {
		return nil, fmt.Errorf("testvault: app %s: %w", a.Name, err)
	}
	certs, err := ParseCertificates([]byte(cert.cert))
	if err != nil {
		return nil, fmt.Errorf("testvault: app %s: issued certificate: %w", a.Name, err)
	}
	return certs[0], nil
}

// CertSerial returns the serial number of the login certificate in
// CertFile. Vault's cert auth puts it, in decimal (big.Int.String), in the
// token metadata "serial_number".
func (a *App) CertSerial() (*big.Int, error) {
	certs, err := ReadCertificates(a.CertFile)
	if err != nil {
		return nil, fmt.Errorf("testvault: app %s: %w", a.Name, err)
	}
	return certs[0].SerialNumber, nil
}

// Token returns the token in the agent's sink, or "" when the sink holds
// none yet. Never print it.
func (a *App) Token() (string, error) {
	b, err := os.ReadFile(a.SinkFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("testvault: app %s: reading the sink: %w", a.Name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// WaitToken waits until the agent's sink holds a token other than old ("":
// any token) and returns it; a restarted agent needs a moment to log in.
// It gives up when ctx is done or after a minute, and when the agent is
// not running.
func (a *App) WaitToken(ctx context.Context, old string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		tok, err := a.Token()
		if err != nil {
			return "", err
		}
		if tok != "" && tok != old {
			return tok, nil
		}
		if a.PID() == 0 {
			return "", fmt.Errorf("testvault: app %s: waiting for a new token in %s: the agent is not running (see %s)", a.Name, a.SinkFile, a.LogFile)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("testvault: app %s: waiting for a new token in %s: %w (see %s)", a.Name, a.SinkFile, ctx.Err(), a.LogFile)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TokenInfo is what the root identity sees of a token (never the token).
type TokenInfo struct {
	Accessor    string
	DisplayName string            // "cert-agent-<app>" for an agent's cert login
	Path        string            // "auth/cert/login"
	Policies    []string          // sorted, with "default"
	Meta        map[string]string // cert auth: cert_name, common_name, serial_number (decimal), subject_key_id, authority_key_id
	IssueTime   time.Time
	TTL         time.Duration
}

// LookupToken looks token up with the root client (auth/token/lookup) and
// returns its policies and metadata. Errors never contain the token.
func (v *Vault) LookupToken(ctx context.Context, token string) (*TokenInfo, error) {
	if token == "" {
		return nil, errors.New("testvault: token lookup: empty token")
	}
	s, err := v.Root().Auth().Token().LookupWithContext(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("testvault: token lookup: %s", redact(err.Error(), token))
	}
	if s == nil || s.Data == nil {
		return nil, errors.New("testvault: token lookup: empty response")
	}
	info := &TokenInfo{Meta: map[string]string{}}
	info.Accessor, _ = s.Data["accessor"].(string)
	info.DisplayName, _ = s.Data["display_name"].(string)
	info.Path, _ = s.Data["path"].(string)
	if pols, err := s.TokenPolicies(); err == nil {
		info.Policies = pols
	}
	if meta, err := s.TokenMetadata(); err == nil && meta != nil {
		info.Meta = meta
	}
	if it, ok := s.Data["issue_time"].(string); ok {
		info.IssueTime, _ = time.Parse(time.RFC3339Nano, it)
	}
	if ttl, err := s.TokenTTL(); err == nil {
		info.TTL = ttl
	}
	return info, nil
}

// redact replaces secret in s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// stopAgents stops every app's agent and its restart listener.
func (v *Vault) stopAgents() error {
	v.mu.Lock()
	apps := make([]*App, 0, len(v.appOrder))
	for _, n := range v.appOrder {
		apps = append(apps, v.apps[n])
	}
	v.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, a := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.agent.close(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("agent %s: %w", a.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// AgentPlanVars returns the variables of examples/agents.hcl for the apps
// set up by [Vault.AddApps] under names: apps, home_dir, vault_addr,
// server_name, agent_restart (each app's restart command) and
// renew_before = "720h", so that every run rotates. Lists and maps are HCL
// expressions, as -var takes them.
func (v *Vault) AgentPlanVars(names ...string) map[string]string {
	apps := make([]string, len(names))
	restart := make([]string, len(names))
	for i, name := range names {
		apps[i] = strconv.Quote(name)
		cmd := filepath.Join(v.Dir, "bin", "restart-agent-"+name)
		if a := v.App(name); a != nil {
			cmd = a.RestartCommand
		}
		restart[i] = fmt.Sprintf("%s = [%s]", strconv.Quote(name), strconv.Quote(cmd))
	}
	return map[string]string{
		"apps":          "[" + strings.Join(apps, ", ") + "]",
		"home_dir":      filepath.Join(v.Dir, "home"),
		"vault_addr":    v.Addr,
		"server_name":   v.ServerName,
		"agent_restart": "{" + strings.Join(restart, ", ") + "}",
		"renew_before":  "720h",
	}
}
