package steps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// VaultSpec is the schema of a plan's `vault` block: how rotplan reaches and
// authenticates to Vault. Every argument is optional and defaults to the
// environment variable the vault CLI reads.
func VaultSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"address":         &hcldec.AttrSpec{Name: "address", Type: cty.String},
		"ca_cert":         &hcldec.AttrSpec{Name: "ca_cert", Type: cty.String},
		"tls_server_name": &hcldec.AttrSpec{Name: "tls_server_name", Type: cty.String},
		"client_cert":     &hcldec.AttrSpec{Name: "client_cert", Type: cty.String},
		"client_key":      &hcldec.AttrSpec{Name: "client_key", Type: cty.String},
		"token":           &hcldec.AttrSpec{Name: "token", Type: cty.String},
		"auth": &hcldec.BlockSpec{TypeName: "auth", Nested: hcldec.ObjectSpec{
			"method": &hcldec.AttrSpec{Name: "method", Type: cty.String},
			"mount":  &hcldec.AttrSpec{Name: "mount", Type: cty.String},
			"role":   &hcldec.AttrSpec{Name: "role", Type: cty.String},
		}},
	}
}

// vaultSettings is the `vault` settings block, which the kinds that talk to
// Vault use: how rotplan reaches and logs in to Vault.
type vaultSettings struct{}

var _ Setting = vaultSettings{}

// vaultBlock is what a kind that talks to Vault returns as its Settings.
func vaultBlock() Settings { return Settings{"vault": vaultSettings{}} }

// Spec implements Setting.
func (vaultSettings) Spec() hcldec.ObjectSpec { return VaultSpec() }

// Summary implements Setting.
func (vaultSettings) Summary() string { return "Invalid Vault connection" }

// Check implements Setting: what the process's environment will supply is
// known only when the run starts; the block's own settings can be checked
// now.
func (vaultSettings) Check(cfg Config) error {
	_, err := NewVaultConnection(cfg, func(string) string { return "" })
	return err
}

// Open implements Setting: it reads the connection settings, the VAULT_*
// environment filling in what the block leaves out. The session opens on
// first use (Env.Vault).
func (vaultSettings) Open(env *Env, cfg Config) error {
	conn, err := NewVaultConnection(cfg, os.Getenv)
	if err != nil {
		return err
	}
	env.session.conn = conn
	return nil
}

// VaultConnection says how to reach and log in to Vault.
type VaultConnection struct {
	Address       string
	CACert        string
	TLSServerName string
	ClientCert    string
	ClientKey     string
	// Token is a Vault token; it is never printed. When empty, rotplan logs
	// in with AuthMethod.
	Token string
	// AuthMethod is "cert" (TLS certificate auth with ClientCert) or "token".
	AuthMethod string
	// AuthMount is the path the auth method is mounted at ("cert").
	AuthMount string
	// AuthRole optionally names the cert auth role to log in against.
	AuthRole string
}

// vaultEnvDefaults maps vault block arguments to the environment variables
// that supply their defaults, as the vault CLI reads them.
var vaultEnvDefaults = map[string]string{
	"address":         "VAULT_ADDR",
	"ca_cert":         "VAULT_CACERT",
	"tls_server_name": "VAULT_TLS_SERVER_NAME",
	"client_cert":     "VAULT_CLIENT_CERT",
	"client_key":      "VAULT_CLIENT_KEY",
	"token":           "VAULT_TOKEN",
}

// NewVaultConnection reads an evaluated vault block (cfg may be empty when the
// plan has none), filling what it leaves out from the environment through
// getenv.
func NewVaultConnection(cfg Config, getenv func(string) string) (VaultConnection, error) {
	value := func(name string) string {
		if cfg.Set(name) {
			return cfg.String(name)
		}
		return getenv(vaultEnvDefaults[name])
	}
	c := VaultConnection{
		Address:       value("address"),
		CACert:        value("ca_cert"),
		TLSServerName: value("tls_server_name"),
		ClientCert:    value("client_cert"),
		ClientKey:     value("client_key"),
		Token:         value("token"),
		AuthMount:     "cert",
	}
	if auth, ok := cfg.Block("auth"); ok {
		c.AuthMethod = auth.String("method")
		if m := auth.String("mount"); m != "" {
			c.AuthMount = m
		}
		c.AuthRole = auth.String("role")
	}
	if c.AuthMethod == "" {
		c.AuthMethod = "cert"
		if c.Token != "" {
			c.AuthMethod = "token"
		}
	}
	if c.AuthMethod != "cert" && c.AuthMethod != "token" {
		return c, attrErr("auth.method", "%q is not supported (use \"cert\" or \"token\")", c.AuthMethod)
	}
	return c, nil
}

// missing says what a connection lacks before it can be opened, or "".
func (c VaultConnection) missing() string {
	switch {
	case c.Address == "":
		return "no Vault address: set address in the vault block or export VAULT_ADDR"
	case c.AuthMethod == "token" && c.Token == "":
		return "auth method \"token\" needs a token: set token in the vault block or export VAULT_TOKEN"
	case c.AuthMethod == "cert" && (c.ClientCert == "" || c.ClientKey == ""):
		return "no Vault token and no client certificate to log in with: export VAULT_TOKEN, or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY"
	}
	return ""
}

// Env is what every step of a run or a preview shares: a logger, and the
// sessions the plan's settings blocks set up (Setting.Open), each opened on
// first use (Vault). The engine passes it along unopened.
type Env struct {
	// Log receives the step's log lines. Never log a sensitive value.
	Log hclog.Logger
	// Backups is a directory where this step's Snapshot may keep copies of
	// what it will replace, created 0700 by whoever first saves there; ""
	// when the run keeps no backups.
	Backups string

	session *vaultSession
	// hosts are the run's connections to hosts, host the one this
	// step's Env is for (see On), nil for a step that runs here.
	hosts  *hostSession
	host   *stepHost
	commit func() error
	// noChange holds why the step changed nothing (see NoChange); shared
	// by the copies WithCommit makes.
	noChange *string
}

// NoChange lets Apply say that the system already was as the step would
// leave it, so it changed nothing, and why ("the file already has this
// content, mode and owner"). The run then reports the step as done
// without change, as the preview does.
func (e *Env) NoChange(reason string) {
	if e.noChange != nil {
		*e.noChange = reason
	}
}

// NoChangeReason returns what Apply gave NoChange, or "" when the step
// changed something (or did not say).
func (e *Env) NoChangeReason() string {
	if e.noChange == nil {
		return ""
	}
	return *e.noChange
}

// Commit returns once whatever the step must have on record before it
// changes anything is durable (see Staged). A Staged kind's Apply calls it
// before its first change, and gives up, changing nothing, if it fails.
// For any other kind, or when nothing is recorded, it returns nil at once.
func (e *Env) Commit() error {
	if e.commit == nil {
		return nil
	}
	return e.commit()
}

// WithCommit returns a copy of e whose Commit calls commit.
func (e *Env) WithCommit(commit func() error) *Env {
	c := *e
	c.commit = commit
	return &c
}

type vaultSession struct {
	// planned are the files the steps previewed so far would create or
	// replace (see Preview.Files), cleaned.
	planned sync.Map
	conn    VaultConnection
	once    sync.Once
	client  *vaultapi.Client
	err     error
	// opened is set once a login was attempted and succeeded: then client
	// may be used without opening the session (see VaultIfOpen).
	opened atomic.Bool
	// loggedIn is set when the token came from a login, not from the
	// operator: it is rotplan's to revoke.
	loggedIn bool
	// reads caches what previews read from Vault (PKI roles), by path: a
	// plan issuing hundreds of certificates from one role reads it once.
	reads sync.Map // path -> *cachedRead
	// dirs holds the directories writes and chowns opened (openDirCached),
	// by trust and path: each is resolved and checked once, and every step
	// of the run, and its rollback, works in the one found then.
	dirs sync.Map // trust "\x00" path -> *stepDir
	// processes are the processes reloads found first in this run, by
	// where their pid comes from, so that a pid reused since is told
	// from the process that was checked (see Reload).
	processes sync.Map // reloadTarget.source() -> process
	// mounts are the auth methods vault_auth steps will enable, as
	// "auth/PATH/" (see plannedMount).
	mounts sync.Map // "auth/PATH/" -> true
}

type cachedRead struct {
	once   sync.Once
	secret *vaultapi.Secret
	err    error
}

// readOnce reads a Vault path once per run, for previews.
func (e *Env) readOnce(ctx context.Context, client *vaultapi.Client, path string) (*vaultapi.Secret, error) {
	v, _ := e.session.reads.LoadOrStore(path, &cachedRead{})
	c := v.(*cachedRead)
	c.once.Do(func() { c.secret, c.err = client.Logical().ReadWithContext(ctx, path) })
	return c.secret, c.err
}

// PlanFiles records, during a preview, the files a step would create or
// replace (Preview.Files).
func (e *Env) PlanFiles(paths []string) {
	for _, p := range paths {
		e.session.planned.Store(filepath.Clean(p), true)
	}
}

// Planned reports whether a step previewed before this one would create or
// replace any of paths: a file missing now may be there when the step runs.
func (e *Env) Planned(paths ...string) bool {
	for _, p := range paths {
		if _, ok := e.session.planned.Load(filepath.Clean(p)); ok {
			return true
		}
	}
	return false
}

// NewEnv returns an Env with nothing set up yet: the engine has the
// plan's settings blocks Open in it.
func NewEnv(log hclog.Logger) *Env {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Env{Log: log, session: &vaultSession{}, hosts: &hostSession{}, noChange: new(string)}
}

// Named returns an Env for one step: the same Vault session and
// connections to hosts, and a logger named after the step.
func (e *Env) Named(name string) *Env {
	return &Env{Log: e.Log.Named(name), session: e.session, hosts: e.hosts, Backups: e.Backups, noChange: new(string)}
}

// Vault returns the authenticated Vault client of the run, connecting and
// logging in on the first call.
func (e *Env) Vault(ctx context.Context) (*vaultapi.Client, error) {
	s := e.session
	s.once.Do(func() {
		if msg := s.conn.missing(); msg != "" {
			s.err = errors.New(msg)
			return
		}
		s.client, s.err = s.conn.open(ctx, e.Log)
		s.loggedIn = s.err == nil && s.conn.AuthMethod == "cert"
		s.opened.Store(s.err == nil)
	})
	return s.client, s.err
}

// VaultIfOpen returns the client of a Vault session that is open already,
// and false when none is: it never logs in. A check that may run before
// the steps that put rotplan's own credentials right (a resume's
// preflight, while admin.crt is half rotated) uses it, so that an early
// login cannot fail and spoil the session for the rest of the run.
func (e *Env) VaultIfOpen() (*vaultapi.Client, bool) {
	s := e.session
	if !s.opened.Load() {
		return nil, false
	}
	return s.client, true
}

// Close ends the sessions the Env opened that are its own to end, so that
// nothing they leave behind outlives them: the Vault token rotplan got by
// logging in, if it did, is revoked (a token the operator gave is left
// alone), and the connections to hosts are closed (Disconnect). Later
// calls to Vault fail. A preview closes its Env at its end.
func (e *Env) Close(ctx context.Context) error {
	if err := e.Disconnect(); err != nil {
		e.Log.Warn("closing the connections to hosts", "error", err)
	}
	s := e.session
	var client *vaultapi.Client
	s.once.Do(func() { s.err = errors.New("logged out") }) // never log in now
	if s.loggedIn {
		client = s.client
		s.loggedIn = false
	}
	if client == nil {
		return nil
	}
	if err := client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		return fmt.Errorf("logging out of Vault: revoking the login token: %w", err)
	}
	return nil
}

// newVaultClient makes a Vault client for one address and TLS identity,
// with no token. dial, when not nil, makes every connection in place of
// the address's own (a verify check's connect_to), and no proxy is used.
func newVaultClient(address string, tls *vaultapi.TLSConfig, retries int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	// DefaultConfig read the environment; the caller's values take precedence.
	cfg.Address = address
	cfg.MaxRetries = retries
	cfg.Timeout = 30 * time.Second
	if err := cfg.ConfigureTLS(tls); err != nil {
		return nil, fmt.Errorf("TLS settings: %w", err)
	}
	if dial != nil {
		transport := cfg.HttpClient.Transport.(*http.Transport)
		transport.DialContext = dial
		transport.Proxy = nil
	}
	client, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	client.ClearToken() // NewClient picks up VAULT_TOKEN by itself
	client.SetNamespace("")
	return client, nil
}

func (c VaultConnection) open(ctx context.Context, log hclog.Logger) (*vaultapi.Client, error) {
	client, err := newVaultClient(c.Address, &vaultapi.TLSConfig{
		CACert:        c.CACert,
		ClientCert:    c.ClientCert,
		ClientKey:     c.ClientKey,
		TLSServerName: c.TLSServerName,
	}, 2, nil)
	if err != nil {
		return nil, fmt.Errorf("Vault at %s: %w", c.Address, err)
	}
	switch c.AuthMethod {
	case "token":
		client.SetToken(c.Token)
		if _, err := client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
			return nil, fmt.Errorf("Vault at %s: checking the token: %w", c.Address, err)
		}
		log.Debug("using the given Vault token", "address", c.Address)
	case "cert":
		body := map[string]any{}
		if c.AuthRole != "" {
			body["name"] = c.AuthRole
		}
		secret, err := client.Logical().WriteWithContext(ctx, "auth/"+c.AuthMount+"/login", body)
		if err != nil {
			return nil, fmt.Errorf("Vault at %s: cert login with %s: %w", c.Address, c.ClientCert, err)
		}
		if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
			return nil, errors.New("Vault cert login returned no token")
		}
		client.SetToken(secret.Auth.ClientToken)
		log.Debug("logged in to Vault with cert auth", "address", c.Address, "mount", c.AuthMount, "policies", secret.Auth.Policies)
	}
	return client, nil
}
