package testvault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/proc"
)

const (
	serverName = "vault.prod.privsec.ch"
	adminCN    = "vault-admin-prod"
	vaultUser  = "vaultprod"

	// readyTimeout bounds each wait for Vault to come up (listener, unseal,
	// active) when the caller's context has no earlier deadline.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
)

// Options configures [Start].
type Options struct {
	Binary string    // vault binary (path, or a name looked up in PATH)
	Dir    string    // base directory (created; its parents must be traversable by the Vault user)
	Log    io.Writer // Vault's output (stdout and stderr); nil = Dir/vault.log
}

// Vault is a running harness Vault server. Create it with [Start] (or
// [StartT] in tests) and stop it with [Vault.Stop].
type Vault struct {
	Addr          string // "https://127.0.0.1:PORT": production listener, mTLS required
	HostPort      string // "127.0.0.1:PORT" of the production listener
	BootstrapAddr string // "http://127.0.0.1:PORT": loopback back door for the harness
	ServerName    string // "vault.prod.privsec.ch"

	Dir        string // base directory
	AdminDir   string // Dir/root/vault/tls-admin/prod: admin.key, admin.crt, issuing_ca.pem
	ServerDir  string // Dir/home/vaultprod/tls-prod: server.key, server.crt, fullchain.crt, ca_chain.pem
	EnvFile    string // Dir/root/vault/env/prod.env: the operator's VAULT_* exports (no token)
	RootCAFile string // Dir/root/vault/env/ca.pem: the root CA only (VAULT_CACERT)
	PIDFile    string // Vault's pid_file: names the running server, also after a restart
	ConfigFile string // Vault's server configuration (HCL)

	// RestartCommand, Dir/bin/restart-vault [restart|start|stop], restarts
	// the server from outside the harness (for plans) and exits 0 as soon
	// as the new process runs, still sealed: the harness unseals it in the
	// background (see [Vault.Restart], [Vault.WaitReady]).
	RestartCommand string

	Owner string // user Vault runs as; owns the server dir
	Group string // group of Owner; group of the server dir

	RootToken string // root token of the harness Vault; never print it

	rootClient *vaultapi.Client // created during Start; fallback for Root
	binary     string
	dataDir    string
	runDir     string
	uid, gid   int
	unsealKey  string
	bootPort   int
	prodPort   int

	log     io.Writer
	logFile *os.File // opened by the harness when Options.Log is nil
	tail    *tailBuffer

	ctl          *unit      // restart-vault's request loop (listenRestart)
	opMu         sync.Mutex // serialises restarts, starts and stops of the server after Start
	halting      bool       // Stop has begun; guarded by opMu
	unsealing    *unsealJob // background unseal of the running process; guarded by mu
	unsealFailed error      // failed background unseals of earlier processes not reported yet; guarded by mu

	mu       sync.Mutex
	proc     *process
	lastPID  int
	stopped  bool
	stopErr  error
	apps     map[string]*App // set up by AddApps
	appOrder []string
	proxy    *Proxy // started by StartProxy
}

// process is a bed process (internal/proc).
type process = proc.Process

// ownedDir is a directory with its mode and owner, for mkdirsOwned.
type ownedDir struct {
	path     string
	mode     os.FileMode
	uid, gid int
}

// mkdirsOwned creates dirs in order (see mkdirOwned).
func mkdirsOwned(dirs []ownedDir) error {
	for _, d := range dirs {
		if err := mkdirOwned(d.path, d.mode, d.uid, d.gid); err != nil {
			return err
		}
	}
	return nil
}

// Start brings up the harness Vault under o.Dir: phase 1 with only the
// bootstrap listener (init, unseal, PKI, roles, policy, cert auth, initial
// certificates and operator files), then phase 2 restarted with the bootstrap
// and the production (mTLS) listener, unsealed and answering. On error the
// started process is stopped and the tail of Vault's log is part of the error.
func Start(ctx context.Context, o Options) (*Vault, error) {
	if o.Binary == "" {
		return nil, errors.New("testvault: Options.Binary is empty")
	}
	if o.Dir == "" {
		return nil, errors.New("testvault: Options.Dir is empty")
	}
	bin, err := exec.LookPath(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("testvault: vault binary: %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("testvault: vault binary: %w", err)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("testvault: dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}

	owner, group, uid, gid, err := vaultIdentity()
	if err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	if err := checkTraversable(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	if checkExecutable(bin, uid, gid) != nil {
		// The binary is often cached under root's home, which the Vault user
		// cannot traverse: give it a copy of its own inside Dir.
		if bin, err = reachableCopy(bin, filepath.Join(dir, "bin", "vault")); err != nil {
			return nil, fmt.Errorf("testvault: %w", err)
		}
		if err := checkExecutable(bin, uid, gid); err != nil {
			return nil, fmt.Errorf("testvault: %w", err)
		}
	}

	v := &Vault{
		ServerName:     serverName,
		Dir:            dir,
		AdminDir:       filepath.Join(dir, "root", "vault", "tls-admin", "prod"),
		ServerDir:      filepath.Join(dir, "home", vaultUser, "tls-prod"),
		EnvFile:        filepath.Join(dir, "root", "vault", "env", "prod.env"),
		RootCAFile:     filepath.Join(dir, "root", "vault", "env", "ca.pem"),
		PIDFile:        filepath.Join(dir, "run", "vault", "prod.pid"),
		ConfigFile:     filepath.Join(dir, "etc", "vault.d", "prod.hcl"),
		RestartCommand: filepath.Join(dir, "bin", "restart-vault"),
		Owner:          owner,
		Group:          group,
		binary:         bin,
		dataDir:        filepath.Join(dir, "var", "lib", "vault", "prod"),
		runDir:         filepath.Join(dir, "run", "vault"),
		uid:            uid,
		gid:            gid,
		tail:           newTailBuffer(64 << 10),
	}
	if o.Log != nil {
		v.log = o.Log
	} else {
		f, err := os.OpenFile(filepath.Join(dir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("testvault: %w", err)
		}
		v.logFile = f
		v.log = f
	}

	if err := v.start(ctx); err != nil {
		_ = v.Stop()
		return nil, fmt.Errorf("testvault: %w\n--- tail of vault log ---\n%s", err, v.tail.Tail(40))
	}
	return v, nil
}

func (v *Vault) start(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	v.bootPort, v.prodPort = ports[0], ports[1]
	v.BootstrapAddr = "http://127.0.0.1:" + strconv.Itoa(v.bootPort)
	v.HostPort = "127.0.0.1:" + strconv.Itoa(v.prodPort)
	v.Addr = "https://" + v.HostPort

	if err := v.layout(); err != nil {
		return err
	}

	// Phase 1: bootstrap listener only.
	if err := v.writeConfig(false); err != nil {
		return err
	}
	if err := v.startProcess(); err != nil {
		return err
	}
	if err := v.initAndUnseal(ctx); err != nil {
		return fmt.Errorf("phase 1: %w", err)
	}
	if err := v.bootstrap(ctx); err != nil {
		return fmt.Errorf("phase 1: %w", err)
	}
	if err := v.stopProcess(); err != nil {
		return fmt.Errorf("phase 1: stopping vault: %w", err)
	}

	// Phase 2: bootstrap and production listener.
	if err := v.writeConfig(true); err != nil {
		return err
	}
	if err := v.startProcess(); err != nil {
		return err
	}
	if err := v.unsealAgain(ctx); err != nil {
		return fmt.Errorf("phase 2: %w", err)
	}
	if err := v.waitProd(ctx); err != nil {
		return fmt.Errorf("phase 2: %w", err)
	}
	return v.listenRestart()
}

// layout creates the directory tree below Dir.
func (v *Vault) layout() error {
	me, mg := os.Geteuid(), os.Getegid()
	return mkdirsOwned([]ownedDir{
		{filepath.Join(v.Dir, "etc"), 0o755, me, mg},
		{filepath.Join(v.Dir, "etc", "vault.d"), 0o755, me, mg},
		{filepath.Join(v.Dir, "var"), 0o755, me, mg},
		{filepath.Join(v.Dir, "var", "lib"), 0o755, me, mg},
		{filepath.Join(v.Dir, "var", "lib", "vault"), 0o755, me, mg},
		{v.dataDir, 0o700, v.uid, v.gid},
		{filepath.Join(v.Dir, "run"), 0o755, me, mg},
		{v.runDir, 0o755, v.uid, v.gid},
		{filepath.Join(v.Dir, "root"), 0o700, me, mg},
		{filepath.Join(v.Dir, "root", "vault"), 0o700, me, mg},
		{filepath.Join(v.Dir, "root", "vault", "env"), 0o755, me, mg},
		{filepath.Join(v.Dir, "root", "vault", "tls-admin"), 0o700, me, mg},
		{v.AdminDir, 0o700, me, mg},
		{filepath.Join(v.Dir, "home"), 0o755, me, mg},
		{filepath.Join(v.Dir, "home", vaultUser), 0o750, v.uid, v.gid},
		{v.ServerDir, 0o750, v.uid, v.gid},
	})
}

// writeConfig writes the Vault server configuration; withProd adds the
// production listener.
func (v *Vault) writeConfig(withProd bool) error {
	c := serverConfig{
		pidFile: v.PIDFile,
		apiAddr: v.BootstrapAddr,
		dataDir: v.dataDir,
		listeners: []listenerConfig{
			{comment: "Bootstrap listener: the harness's loopback back door.", address: "127.0.0.1:" + strconv.Itoa(v.bootPort)},
		},
	}
	if withProd {
		c.apiAddr = v.Addr
		c.listeners = append(c.listeners, listenerConfig{
			comment:      "Production listener: mTLS required.",
			address:      v.HostPort,
			certFile:     filepath.Join(v.ServerDir, "fullchain.crt"),
			keyFile:      filepath.Join(v.ServerDir, "server.key"),
			clientCAFile: filepath.Join(v.ServerDir, "ca_chain.pem"),
		})
	}
	text, err := c.render()
	if err != nil {
		return err
	}
	return writeFileOwned(v.ConfigFile, []byte(text), 0o644, os.Geteuid(), os.Getegid())
}

func (v *Vault) startProcess() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil {
		return errors.New("vault process already running")
	}
	// A stale pid file from the previous phase must not be mistaken for ours.
	_ = os.Remove(v.PIDFile)

	cmd := exec.Command(v.binary, "server", "-config="+v.ConfigFile)
	cmd.Dir = v.Dir
	home := filepath.Join(v.Dir, "home", vaultUser)
	cmd.Env = userEnv(home, v.Owner)
	out := io.MultiWriter(v.log, v.tail)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 5 * time.Second
	attr := &syscall.SysProcAttr{
		Setpgid:   true,            // Ctrl-C at a terminal goes to the harness, which stops Vault
		Pdeathsig: syscall.SIGTERM, // don't leave Vault behind if the harness dies
	}
	if os.Geteuid() == 0 {
		attr.Credential = &syscall.Credential{
			Uid:    uint32(v.uid),
			Gid:    uint32(v.gid),
			Groups: []uint32{uint32(v.gid)},
		}
	}
	cmd.SysProcAttr = attr
	p, err := proc.Spawn(cmd)
	if err != nil {
		return fmt.Errorf("starting vault: %w", err)
	}
	v.proc = p
	v.lastPID = cmd.Process.Pid
	return nil
}

// userEnv is the environment of a bed process that runs as user with
// that home: a login's, with the system's PATH.
func userEnv(home, user string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"USER=" + user,
		"LOGNAME=" + user,
	}
}

// stopProcess stops the current Vault process (SIGTERM, SIGKILL after
// stopTimeout) and waits for it.
func (v *Vault) stopProcess() error {
	v.mu.Lock()
	p := v.proc
	v.proc = nil
	v.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.Done():
		return fmt.Errorf("vault exited early: %v", p.Err())
	default:
	}
	if err := p.Terminate("vault", stopTimeout); err != nil {
		return err
	}
	var ee *exec.ExitError
	if p.Err() != nil && !errors.As(p.Err(), &ee) {
		return p.Err()
	}
	if ee != nil && !ee.Success() {
		// Vault exits 0 on SIGTERM; anything else is worth reporting.
		return fmt.Errorf("vault exited: %v", p.Err())
	}
	return nil
}

// Stop stops the edge proxy, the apps' agents (the proxy's too), the restart
// commands' listeners and Vault (SIGTERM; SIGKILL after 10s) and
// waits for them to exit. It is idempotent: later calls return the first
// call's result.
func (v *Vault) Stop() error {
	if v == nil {
		return nil
	}
	v.mu.Lock()
	if v.stopped {
		err := v.stopErr
		v.mu.Unlock()
		return err
	}
	v.mu.Unlock()

	// The proxy and the agents first: they would only retry against a
	// stopped Vault.
	err := errors.Join(v.stopProxy(), v.stopAgents(), v.halt())

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return v.stopErr
	}
	if v.logFile != nil {
		if cerr := v.logFile.Close(); cerr != nil && err == nil {
			err = cerr
		}
		v.logFile = nil
	}
	v.stopped = true
	v.stopErr = err
	return err
}

// halt closes the restart command's request loop and stops the server
// process for good.
func (v *Vault) halt() error {
	var err error
	if v.ctl != nil {
		err = v.ctl.close()
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.halting = true
	return errors.Join(err, v.stopServer())
}

// PID returns the process id of the running Vault server (the last one
// started, also after Stop and after a restart).
func (v *Vault) PID() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastPID
}

// exited reports whether the current process has exited, with its error.
func (v *Vault) exited() (bool, error) {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil {
		return true, errors.New("vault is not running")
	}
	select {
	case <-p.Done():
		if p.Err() == nil {
			return true, errors.New("vault exited")
		}
		return true, fmt.Errorf("vault exited: %w", p.Err())
	default:
		return false, nil
	}
}

// waitFor polls fn until it returns nil, the process exits, ctx is done or
// readyTimeout passes.
func (v *Vault) waitFor(ctx context.Context, what string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if gone, err := v.exited(); gone {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = fn(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Root returns a client on BootstrapAddr authenticated with the root token.
// Environment variables such as VAULT_ADDR, VAULT_TOKEN or VAULT_NAMESPACE do
// not affect it. Each call returns a new client when possible (the Vault
// client library reads VAULT_* variables when creating a client and fails on
// malformed ones; then a client created during Start is returned).
func (v *Vault) Root() *vaultapi.Client {
	c, err := v.bootstrapClient()
	if err != nil {
		return v.rootClient
	}
	c.SetToken(v.RootToken)
	return c
}

func (v *Vault) bootstrapClient() (*vaultapi.Client, error) {
	return v.bootstrapClientRetries(2)
}

// bootstrapClientRetries returns a client without token on BootstrapAddr
// that retries failed requests (5xx, connection errors) that many times.
func (v *Vault) bootstrapClientRetries(retries int) (*vaultapi.Client, error) {
	cfg := &vaultapi.Config{
		Address:    v.BootstrapAddr,
		HttpClient: loopbackHTTPClient(nil),
		Timeout:    60 * time.Second,
		MaxRetries: retries,
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	c.ClearNamespace()
	return c, nil
}

// loopbackHTTPClient returns an HTTP client without proxies whose transport
// never reuses connections.
func loopbackHTTPClient(tlsConf *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			TLSClientConfig:     tlsConf,
			TLSHandshakeTimeout: 5 * time.Second,
			DisableKeepAlives:   true,
			ForceAttemptHTTP2:   false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// pinnedHTTPClient is loopbackHTTPClient connecting to dial whatever host
// a request names, as with an /etc/hosts entry; dial "" connects as usual.
func pinnedHTTPClient(tlsConf *tls.Config, dial string) *http.Client {
	hc := loopbackHTTPClient(tlsConf)
	if dial != "" {
		d := &net.Dialer{Timeout: 5 * time.Second}
		hc.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dial)
		}
	}
	return hc
}

// Environ returns the operator's environment for the production listener as
// "K=V": VAULT_ADDR, VAULT_CACERT (root CA file), VAULT_TLS_SERVER_NAME,
// VAULT_CLIENT_CERT and VAULT_CLIENT_KEY (admin dir files). No token.
func (v *Vault) Environ() []string {
	return []string{
		"VAULT_ADDR=" + v.Addr,
		"VAULT_CACERT=" + v.RootCAFile,
		"VAULT_TLS_SERVER_NAME=" + v.ServerName,
		"VAULT_CLIENT_CERT=" + filepath.Join(v.AdminDir, "admin.crt"),
		"VAULT_CLIENT_KEY=" + filepath.Join(v.AdminDir, "admin.key"),
	}
}

// PlanVars returns the example plan's variables: admin_dir, server_dir,
// vault_addr, server_name, vault_pid_file, owner, group and
// server_dir_owner (who owns ServerDir and its parent: Owner), and
// renew_before = "720h", the lifetime of the certificates the harness and
// the plan issue, so that every run rotates.
func (v *Vault) PlanVars() map[string]string {
	return map[string]string{
		"renew_before":   "720h",
		"admin_dir":      v.AdminDir,
		"server_dir":     v.ServerDir,
		"vault_addr":     v.Addr,
		"server_name":    v.ServerName,
		"vault_pid_file": v.PIDFile,
		"owner":          v.Owner,
		"group":          v.Group,
		// The layout gives vaultprod's home to the Vault user.
		"server_dir_owner": v.Owner,
	}
}

// WriteVarFile writes [Vault.PlanVars] to path as an HCL variable file
// (name = "value" lines, sorted by name), mode 0644.
func (v *Vault) WriteVarFile(path string) error {
	vars := v.PlanVars()
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# rotplan test harness variables (internal/testvault)\n")
	for _, k := range names {
		q, err := hcl2Quote(vars[k])
		if err != nil {
			return fmt.Errorf("testvault: var %s: %w", k, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, q)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("testvault: writing var file: %w", err)
	}
	return nil
}

// prodTLSConfig returns a TLS client config for the production listener:
// root CA only as trust anchor, SNI ServerName and, when certFile is not
// empty, that client certificate.
func (v *Vault) prodTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	pool, err := loadPool(v.RootCAFile)
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{
		RootCAs:    pool,
		ServerName: v.ServerName,
		MinVersion: tls.VersionTLS12,
	}
	if certFile != "" || keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// ServedChain dials the production listener (HostPort) with SNI ServerName
// and the admin client certificate from AdminDir, verifying the server
// against RootCAFile only (intermediates are taken from what the server
// sent), and returns the certificate chain the server presented, leaf first.
func (v *Vault) ServedChain(ctx context.Context) ([]*x509.Certificate, error) {
	return v.servedChainAt(ctx, v.HostPort, v.ServerName, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
}

// servedChainAt dials hostPort with SNI serverName (and the client
// certificate certFile/keyFile when not empty), verifies the server for
// serverName against RootCAFile only, and returns the chain it presented.
func (v *Vault) servedChainAt(ctx context.Context, hostPort, serverName, certFile, keyFile string) ([]*x509.Certificate, error) {
	conf, err := v.prodTLSConfig(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	conf.ServerName = serverName
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: conf}
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return nil, fmt.Errorf("testvault: dialing %s (SNI %s): %w", hostPort, serverName, err)
	}
	defer conn.Close()
	st := conn.(*tls.Conn).ConnectionState()
	return st.PeerCertificates, nil
}

// SealStatus asks the production listener for sys/seal-status, presenting
// the client certificate certFile/keyFile, trusting RootCAFile only, with
// SNI ServerName. Each call uses a fresh client and transport.
func (v *Vault) SealStatus(ctx context.Context, certFile, keyFile string) (*vaultapi.SealStatusResponse, error) {
	return v.sealStatusAt(ctx, v.Addr, "", certFile, keyFile)
}

// sealStatusAt asks addr for sys/seal-status as SealStatus does; when dial
// is not empty, connections go to that host:port whatever addr names, as
// with an /etc/hosts entry.
func (v *Vault) sealStatusAt(ctx context.Context, addr, dial, certFile, keyFile string) (*vaultapi.SealStatusResponse, error) {
	conf, err := v.prodTLSConfig(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	c, err := vaultapi.NewClient(&vaultapi.Config{
		Address:    addr,
		HttpClient: pinnedHTTPClient(conf, dial),
		Timeout:    10 * time.Second,
		MaxRetries: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	c.ClearToken()
	c.ClearNamespace()
	st, err := c.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("testvault: seal-status via %s: %w", addr, err)
	}
	return st, nil
}

// initAndUnseal waits for the bootstrap listener, initialises Vault with a
// single key share and unseals it.
func (v *Vault) initAndUnseal(ctx context.Context) error {
	c, err := v.bootstrapClientRetries(0) // the harness polls itself
	if err != nil {
		return err
	}
	if v.unsealKey, v.RootToken, err = initialise(ctx, c, v.waitFor); err != nil {
		return err
	}
	return unsealActive(ctx, c, v.unsealKey, v.waitFor)
}

// unsealAgain unseals a restarted Vault through the bootstrap listener.
func (v *Vault) unsealAgain(ctx context.Context) error {
	c, err := v.bootstrapClientRetries(0) // the harness polls itself
	if err != nil {
		return err
	}
	if err := waitSealStatus(ctx, c, v.waitFor); err != nil {
		return err
	}
	return unsealActive(ctx, c, v.unsealKey, v.waitFor)
}

// waiter polls fn until it returns nil, as Vault.waitFor does.
type waiter func(ctx context.Context, what string, fn func(context.Context) error) error

// waitSealStatus waits until the Vault c reaches answers seal-status.
func waitSealStatus(ctx context.Context, c *vaultapi.Client, wait waiter) error {
	return wait(ctx, "bootstrap listener", func(ctx context.Context) error {
		_, err := c.Sys().SealStatusWithContext(ctx)
		return err
	})
}

// initialise waits for the Vault c reaches and initialises it with a
// single key share: its unseal key and root token.
func initialise(ctx context.Context, c *vaultapi.Client, wait waiter) (key, token string, err error) {
	if err := waitSealStatus(ctx, c, wait); err != nil {
		return "", "", err
	}
	resp, err := c.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return "", "", fmt.Errorf("init: %w", err)
	}
	if len(resp.Keys) != 1 || resp.RootToken == "" {
		return "", "", fmt.Errorf("init: unexpected response (%d keys)", len(resp.Keys))
	}
	return resp.Keys[0], resp.RootToken, nil
}

// unsealActive unseals the Vault c reaches and waits until it is active.
func unsealActive(ctx context.Context, c *vaultapi.Client, key string, wait waiter) error {
	if err := unseal(ctx, c, key); err != nil {
		return err
	}
	return wait(ctx, "vault active", func(ctx context.Context) error {
		h, err := c.Sys().HealthWithContext(ctx)
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed || h.Standby {
			return fmt.Errorf("health: initialized=%t sealed=%t standby=%t", h.Initialized, h.Sealed, h.Standby)
		}
		return nil
	})
}

// unseal gives the Vault c reaches its unseal key.
func unseal(ctx context.Context, c *vaultapi.Client, key string) error {
	st, err := c.Sys().UnsealWithContext(ctx, key)
	if err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	if st.Sealed {
		return errors.New("unseal: still sealed")
	}
	return nil
}

// waitProd waits until the production listener answers seal-status over
// mTLS with the admin certificate (unsealed) and the pid file names our
// process.
func (v *Vault) waitProd(ctx context.Context) error {
	certFile, keyFile := filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")
	if err := v.waitFor(ctx, "production listener", func(ctx context.Context) error {
		st, err := v.SealStatus(ctx, certFile, keyFile)
		if err != nil {
			return err
		}
		if st.Sealed {
			return errors.New("production listener reports sealed")
		}
		return nil
	}); err != nil {
		return err
	}
	want := v.PID()
	return v.waitFor(ctx, "pid file", func(context.Context) error {
		b, err := os.ReadFile(v.PIDFile)
		if err != nil {
			return err
		}
		got, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("pid file %s: %w", v.PIDFile, err)
		}
		if got != want {
			return fmt.Errorf("pid file %s names %d, want %d", v.PIDFile, got, want)
		}
		return nil
	})
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// vaultIdentity returns the user and group Vault runs as: vaultprod
// (created when missing) when running as root, else the current user.
func vaultIdentity() (owner, group string, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return "", "", 0, 0, fmt.Errorf("current user: %w", err)
		}
		gid := os.Getegid()
		group := strconv.Itoa(gid)
		if g, err := user.LookupGroupId(group); err == nil {
			group = g.Name
		}
		return u.Username, group, os.Geteuid(), gid, nil
	}
	return ensureSystemUserIDs(vaultUser)
}

// EnsureSystemUser creates the system user name (with its own group) if
// missing and returns it with its primary group; it needs root. Tests that
// need a user other than root and themselves (to own a file, to run a
// process) use it as the harness does. Concurrent useradd runs can
// lose each other's updates to /etc/passwd and /etc/group, so harnesses in
// different processes (go test runs packages in parallel) serialise lookup
// and creation with an flock on a fixed lock file.
func EnsureSystemUser(name string) (*user.User, *user.Group, error) {
	unlock, err := lockUseradd()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()

	lookup := func() (*user.User, *user.Group, error) {
		u, err := user.Lookup(name)
		if err != nil {
			return nil, nil, err
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			return nil, nil, fmt.Errorf("user %s: primary group %s: %w", name, u.Gid, err)
		}
		return u, g, nil
	}
	u, g, err := lookup()
	if err == nil {
		return u, g, nil
	}
	var unknown user.UnknownUserError
	if !errors.As(err, &unknown) {
		return nil, nil, err
	}
	args := []string{"--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name}
	if _, err := user.LookupGroup(name); err == nil {
		// The group exists already (e.g. a half-finished earlier run).
		args = []string{"--system", "--gid", name, "--no-create-home", "--shell", "/usr/sbin/nologin", name}
	}
	// useradd may still fail on the passwd lock if something else edits the
	// user database; retry for a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, uerr := exec.Command("useradd", args...).CombinedOutput()
		u, g, err := lookup()
		if err == nil {
			return u, g, nil
		}
		if uerr == nil {
			return nil, nil, fmt.Errorf("useradd %s succeeded but: %w", name, err)
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("useradd %s: %v: %s", name, uerr, strings.TrimSpace(string(out)))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ensureSystemUserIDs is EnsureSystemUser with the names and numeric ids of
// the user and its primary group.
func ensureSystemUserIDs(name string) (userName, group string, uid, gid int, err error) {
	u, g, err := EnsureSystemUser(name)
	if err != nil {
		return "", "", 0, 0, err
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return "", "", 0, 0, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return "", "", 0, 0, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	return u.Username, g.Name, uid, gid, nil
}

// Stranger returns the system user rotplan-stranger, created when missing
// (it needs root): tests give files to it and run processes as it when
// they need a user other than root and themselves.
func Stranger() (name string, uid, gid int, err error) {
	name, _, uid, gid, err = ensureSystemUserIDs("rotplan-stranger")
	return name, uid, gid, err
}

// GiveToStranger makes Stranger the owner of path (not of what a symlink
// there points to); it needs root.
func GiveToStranger(path string) error {
	_, uid, _, err := Stranger()
	if err != nil {
		return err
	}
	return os.Lchown(path, uid, -1)
}

// lockUseradd takes an exclusive flock shared by all harness processes on
// this host.
func lockUseradd() (unlock func(), err error) {
	dir := "/run/lock"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "rotplan-testvault-useradd.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("useradd lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("useradd lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// checkTraversable checks that every parent of dir (and dir) can be
// traversed by uid/gid, so that Vault can reach its files.
func checkTraversable(dir string, uid, gid int) error {
	if uid == os.Geteuid() {
		return nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !canAccess(fi, uid, gid, 0o1) {
			return fmt.Errorf("directory %s is not traversable by %d:%d (Vault runs as user %s); chmod o+x it or use another Dir", p, uid, gid, vaultUser)
		}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

// reachableCopy hard-links bin to dest (or copies it when a link cannot be
// made, across file systems) and returns dest.
func reachableCopy(bin, dest string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	os.Remove(dest)
	if os.Link(bin, dest) == nil {
		return dest, nil
	}
	src, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("vault binary: %w", err)
	}
	defer src.Close()
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return "", fmt.Errorf("copying the vault binary: %w", err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return "", fmt.Errorf("copying the vault binary: %w", err)
	}
	return dest, out.Close()
}

// checkExecutable checks that uid/gid can reach and execute bin.
func checkExecutable(bin string, uid, gid int) error {
	if uid == os.Geteuid() {
		return nil
	}
	if err := checkTraversable(filepath.Dir(bin), uid, gid); err != nil {
		return fmt.Errorf("vault binary: %w", err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	if !canAccess(fi, uid, gid, 0o1) {
		return fmt.Errorf("vault binary %s is not executable by user %s", bin, vaultUser)
	}
	return nil
}

// canAccess reports whether uid/gid has the permission bits perm (in the
// "other" position: 1 = x, 2 = w, 4 = r) on fi.
func canAccess(fi os.FileInfo, uid, gid int, perm os.FileMode) bool {
	mode := fi.Mode().Perm()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return mode&perm != 0
	}
	switch {
	case int(st.Uid) == uid:
		return mode&(perm<<6) != 0
	case int(st.Gid) == gid:
		return mode&(perm<<3) != 0
	default:
		return mode&perm != 0
	}
}

// hclQuote quotes s as an HCL string for Vault's configuration, refusing
// characters that would need escaping.
func hclQuote(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '$' || r == '%' {
			return "", fmt.Errorf("path %q contains characters not supported in the Vault configuration", s)
		}
	}
	return `"` + s + `"`, nil
}

// hcl2Quote returns s as an HCL (v2) quoted string literal that evaluates to
// s exactly: quotes, backslashes and control characters are escaped and
// template sequences ("${", "%{") are doubled.
func hcl2Quote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("value %q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

// Write implements io.Writer, keeping only the last bytes.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Tail returns the last n lines written.
func (t *tailBuffer) Tail(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return lastLines(string(t.buf), n)
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "(empty)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
