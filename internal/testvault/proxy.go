package testvault

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// ProxyUser is the edge proxy's system user, the seed's proxyprod: nginx's
// workers run as it and its home holds the proxy's files.
const ProxyUser = "proxyprod"

// AppDomain is the domain of the names the edge proxy answers for an app:
// <app>.prod.privsec.ch, the only name role nginx-<app> issues for.
const AppDomain = "prod.privsec.ch"

// NginxBinary returns the nginx binary: "nginx" in PATH, else
// /usr/sbin/nginx (Debian's, when PATH lacks /usr/sbin). An error when
// neither exists: install Debian's package (make test does, as root).
func NginxBinary() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nginx"
	if fi, err := os.Stat(debian); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return debian, nil
	}
	return "", errors.New("nginx is not installed (apt-get install nginx; make test installs it when run as root)")
}

// Proxy is the edge proxy started by [Vault.StartProxy]: a real nginx
// (Debian's), master running as root and workers as ProxyUser, listening on
// one loopback port (the seed's 127.0.0.1:22300) with one TLS server per
// app, answering SNI <app>.prod.privsec.ch with that app's leaf, and the
// Vault edge: SNI vault.prod.privsec.ch terminates TLS (the client must
// present a certificate of the harness PKI, as Vault requires) and
// re-encrypts towards Vault's production listener, verifying it against
// CAChainFile and presenting the proxy's own client certificate. A stale
// CAChainFile therefore breaks the edge once nginx has reloaded it.
//
// nginx picks the server for a request by its Host header (SNI picks only
// the certificate): a request whose Host names no server gets 421
// (misdirected), as does one whose Host and SNI differ at a server that
// verifies client certificates. Clients of the Vault edge address it by name,
// https://vault.prod.privsec.ch:PORT, connecting to HostPort (curl
// --resolve, an /etc/hosts entry). Cert logins (auth/cert) are refused at
// the edge (403): through it, Vault would see the proxy's certificate, not
// the client's.
type Proxy struct {
	Port       int      // the loopback port every server listens on
	HostPort   string   // "127.0.0.1:PORT"
	Addr       string   // "https://vault.prod.privsec.ch:PORT": the Vault edge, by name (see the type's doc)
	Apps       []string // the apps it serves, in order
	ServerName string   // "vault.prod.privsec.ch": the Vault edge's SNI

	User  string // ProxyUser
	Group string
	UID   int
	GID   int

	Home       string // Dir/home/proxyprod
	Prefix     string // Home/nginx: nginx's -p
	ConfigFile string // Prefix/nginx.conf: nginx's -c (generated)
	TLSDir     string // Prefix/tls: <app>.fullchain.pem (leaf, intermediate) and <app>.key (0600); vault.* for the edge

	CAChainFile    string // Prefix/ca/current-ca-chain.pem: the chain nginx verifies Vault against
	ClientCAFile   string // Prefix/ca/client-ca.pem: the edge's clients' certificates verify against it
	RootCAFile     string // Home/vault/ca/ca.pem: the root CA alone
	ClientCertFile string // Home/vault/mtls/agent.crt: the proxy's certificate towards Vault (agent-proxyprod.prod.privsec.ch), also Agent's login certificate
	ClientKeyFile  string // Home/vault/mtls/agent.key (0600)
	ClientRole     string // "agent-mtls-proxyprod", on pki-prod

	// Agent is the proxy's own Vault Agent (the seed's
	// vault-agent-proxyprod-ca), an [App] named proxyprod running as User:
	// it logs in with ClientCertFile/ClientKeyFile (CAFile is RootCAFile)
	// through the mapping auth/cert/certs/agent-proxyprod, whose policies
	// are pki-issue-proxyprod, CAReadPolicy and MarkerPolicy, and writes
	// its token to Home/vault/agent/token. [Vault.App] returns it too;
	// [Vault.AddApps] refuses the name.
	Agent *App
	// CAReadPolicy is "pki-ca-read-proxyprod": read pki-prod's CA chain
	// (pki-prod/cert/ca_chain, pki-prod/ca_chain), which the agent renders
	// to CAChainFile in the seed.
	CAReadPolicy string

	PIDFile        string // Dir/run/nginx/proxyprod.pid, written by nginx: the master's pid
	ErrorLog       string // Dir/log/nginx-proxyprod-error.log: nginx's error_log
	AccessLog      string // Dir/log/nginx-proxyprod-access.log
	LogFile        string // Dir/log/nginx-proxyprod.log: the master's stdout and stderr
	RestartCommand string // Dir/bin/restart-proxy [restart|start|stop|reload]: for plans

	binary string
	v      *Vault
	unit   *unit
}

// caReadPolicy returns the text of the policy pki-ca-read-<app>.
func caReadPolicy(name, app string) string {
	return fmt.Sprintf(`# %s: read the CA chain of pki-prod (app %s renders it for its trust).
path "pki-prod/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki-prod/ca_chain" {
  capabilities = ["read"]
}
`, name, app)
}

// LeafRole returns the PKI role (on pki-prod) of app's leaf: nginx-<app>.
func LeafRole(app string) string { return "nginx-" + app }

// LeafName returns the name the edge proxy answers for app with app's leaf:
// <app>.prod.privsec.ch.
func LeafName(app string) string { return app + "." + AppDomain }

// LeafFiles returns app's leaf files in the proxy's TLS directory: the
// full chain (leaf, then the intermediate) and the key.
func (p *Proxy) LeafFiles(app string) (fullchain, key string) {
	return filepath.Join(p.TLSDir, app+".fullchain.pem"), filepath.Join(p.TLSDir, app+".key")
}

// StartProxy sets up the edge proxy for apps (names as for [Vault.AddApps];
// the apps themselves need not be set up) and starts nginx: the system user
// ProxyUser (created when missing), its home and files, the PKI roles
// nginx-<app>, initial leaves, CAChainFile (the chain that verifies Vault
// now), the configuration and the restart command, and the proxy's own
// Vault Agent ([Proxy.Agent], an [App] named proxyprod: role
// agent-mtls-proxyprod, whose certificate is also the proxy's client
// certificate towards Vault, its policies, mapping and restart command
// bin/restart-agent-proxyprod). It returns once nginx accepts TLS
// connections and the agent's sink holds a token. It needs root and nginx
// ([NginxBinary]); the proxy and its agent are stopped by [Vault.Stop].
func (v *Vault) StartProxy(ctx context.Context, apps ...string) (*Proxy, error) {
	p, err := v.setUpProxy(ctx, apps)
	if err != nil {
		return nil, fmt.Errorf("testvault: proxy: %w", err)
	}
	if err := p.Agent.run(ctx); err != nil {
		return nil, fmt.Errorf("testvault: proxy: agent: %w", err)
	}
	if err := p.unit.listen(); err != nil {
		return nil, fmt.Errorf("testvault: proxy: %w", err)
	}
	if _, err := p.unit.do(ctx, "start"); err != nil {
		return nil, fmt.Errorf("testvault: proxy: %w", err)
	}
	if _, err := p.Agent.WaitToken(ctx, ""); err != nil {
		return nil, fmt.Errorf("testvault: proxy: %w", err)
	}
	return p, nil
}

// Proxy returns the proxy started by [Vault.StartProxy], or nil.
func (v *Vault) Proxy() *Proxy {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.proxy
}

func (v *Vault) setUpProxy(ctx context.Context, apps []string) (*Proxy, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the proxy needs root (its master binds and drops its workers to user " + ProxyUser + ")")
	}
	bin, err := NginxBinary()
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if !validAppName(a) {
			return nil, fmt.Errorf("invalid app name %q (want lower-case letters, digits and '-')", a)
		}
	}
	v.mu.Lock()
	dup, stopped := v.proxy != nil, v.stopped
	v.mu.Unlock()
	if dup {
		return nil, errors.New("started already")
	}
	if stopped {
		return nil, errors.New("vault is stopped")
	}
	caRead := "pki-ca-read-" + ProxyUser
	agent, err := v.newApp(ctx, ProxyUser, []appPolicy{{caRead, caReadPolicy(caRead, ProxyUser)}})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	home := filepath.Join(v.Dir, "home", ProxyUser)
	prefix := filepath.Join(home, "nginx")
	p := &Proxy{
		Port:           ports[0],
		HostPort:       "127.0.0.1:" + strconv.Itoa(ports[0]),
		Apps:           slices.Clone(apps),
		ServerName:     v.ServerName,
		User:           agent.User,
		Group:          agent.Group,
		UID:            agent.UID,
		GID:            agent.GID,
		Home:           home,
		Prefix:         prefix,
		ConfigFile:     filepath.Join(prefix, "nginx.conf"),
		TLSDir:         filepath.Join(prefix, "tls"),
		CAChainFile:    filepath.Join(prefix, "ca", "current-ca-chain.pem"),
		ClientCAFile:   filepath.Join(prefix, "ca", "client-ca.pem"),
		RootCAFile:     agent.CAFile,
		ClientCertFile: agent.CertFile,
		ClientKeyFile:  agent.KeyFile,
		ClientRole:     agent.Role,
		Agent:          agent,
		CAReadPolicy:   caRead,
		PIDFile:        filepath.Join(v.Dir, "run", "nginx", ProxyUser+".pid"),
		ErrorLog:       filepath.Join(v.Dir, "log", "nginx-"+ProxyUser+"-error.log"),
		AccessLog:      filepath.Join(v.Dir, "log", "nginx-"+ProxyUser+"-access.log"),
		LogFile:        filepath.Join(v.Dir, "log", "nginx-"+ProxyUser+".log"),
		RestartCommand: filepath.Join(v.Dir, "bin", "restart-proxy"),
		binary:         bin,
		v:              v,
	}
	p.Addr = "https://" + net.JoinHostPort(p.ServerName, strconv.Itoa(p.Port))
	if err := p.layout(); err != nil {
		return nil, err
	}
	if err := p.configureVault(ctx); err != nil {
		return nil, err
	}
	if err := p.writeConfig(); err != nil {
		return nil, err
	}
	p.unit = &unit{
		what:    "nginx",
		ctlPath: filepath.Join(v.Dir, "run", "nginx", ProxyUser+".ctl"),
		pidFile: p.PIDFile,
		logPath: p.LogFile,
		command: p.command,
		ready:   p.ready,
		reload:  p.reload,
		done:    make(chan struct{}),
	}
	if err := p.unit.writeCommand(p.RestartCommand, []string{
		fmt.Sprintf("restart (or reload) the edge proxy's nginx (configuration %s),", p.ConfigFile),
		"as `systemctl --user restart container-proxyprod` restarts the seed's proxy.",
		"Generated by the rotplan test harness (internal/testvault), which supervises",
		"nginx: this command asks it through a FIFO and exits 0 once the new master",
		"accepts TLS connections (reload: once the new workers serve). Needs root.",
	}); err != nil {
		return nil, err
	}
	if err := v.register(agent, func() error {
		if v.proxy != nil {
			return errors.New("started already")
		}
		v.proxy = p
		return nil
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// layout creates the proxy's directories: its home and nginx prefix owned
// by ProxyUser, the harness's own for pid file, logs and commands.
func (p *Proxy) layout() error {
	me, mg := os.Geteuid(), os.Getegid()
	return mkdirsOwned([]ownedDir{
		{filepath.Dir(p.PIDFile), 0o755, me, mg},
		{filepath.Dir(p.LogFile), 0o755, me, mg},
		{filepath.Dir(p.RestartCommand), 0o755, me, mg},
		{filepath.Join(p.v.Dir, "home"), 0o755, me, mg},
		{p.Home, 0o750, p.UID, p.GID},
		{p.Prefix, 0o750, p.UID, p.GID},
		{p.TLSDir, 0o750, p.UID, p.GID},
		{filepath.Dir(p.CAChainFile), 0o755, p.UID, p.GID},
		{filepath.Join(p.Prefix, "tmp"), 0o700, p.UID, p.GID},
		{filepath.Join(p.Home, "vault"), 0o750, p.UID, p.GID},
		{filepath.Dir(p.ClientKeyFile), 0o750, p.UID, p.GID},
		{filepath.Dir(p.RootCAFile), 0o755, p.UID, p.GID},
	})
}

// configureVault writes the PKI roles and the proxy's initial certificate
// files: one leaf per app, the Vault edge's server certificate (role
// vault-server, as Vault's own), the CA chain files. The client
// certificate towards Vault, its role and the root CA file are the
// agent's (newApp).
func (p *Proxy) configureVault(ctx context.Context) error {
	c := p.v.Root()
	for _, app := range p.Apps {
		if err := p.v.AddLeafRole(ctx, app); err != nil {
			return err
		}
		if _, err := p.ReplaceLeaf(ctx, app); err != nil {
			return err
		}
	}
	edge, err := issue(ctx, c, "vault-server", map[string]any{"common_name": p.ServerName, "ttl": "720h"})
	if err != nil {
		return err
	}
	edgeChain, edgeKey := p.LeafFiles("vault")
	for _, f := range []struct {
		path string
		data string
		mode os.FileMode
	}{
		{edgeKey, joinPEM(edge.key), 0o600},
		{edgeChain, joinPEM(edge.cert, edge.issuingCA), 0o644},
		{p.CAChainFile, joinPEM(edge.caChain...), 0o644},
		{p.ClientCAFile, joinPEM(edge.caChain...), 0o644},
	} {
		if err := writeFileOwned(f.path, []byte(f.data), f.mode, p.UID, p.GID); err != nil {
			return err
		}
	}
	return nil
}

// ReplaceLeaf issues a new leaf for app from role nginx-<app> (name
// <app>.prod.privsec.ch) and replaces app's key and fullchain files, key
// first; nginx serves it after [Proxy.Reload] or [Proxy.Restart].
func (p *Proxy) ReplaceLeaf(ctx context.Context, app string) (*x509.Certificate, error) {
	if !slices.Contains(p.Apps, app) {
		return nil, fmt.Errorf("testvault: proxy: no app %q", app)
	}
	leaf, err := p.v.IssueLeaf(ctx, app)
	if err != nil {
		return nil, err
	}
	chain, key := p.LeafFiles(app)
	if err := writeFileOwned(key, leaf.Key, 0o600, p.UID, p.GID); err != nil {
		return nil, err
	}
	if err := writeFileOwned(chain, leaf.FullChain, 0o644, p.UID, p.GID); err != nil {
		return nil, err
	}
	return leaf.Cert, nil
}

// Leaf is a leaf certificate issued by [Vault.IssueLeaf], in PEM.
type Leaf struct {
	Cert      *x509.Certificate
	FullChain []byte // the leaf, then the intermediate
	Key       []byte
}

// AddLeafRole writes app's leaf role nginx-<app> on pki-prod: EC P-256
// server certificates for <app>.prod.privsec.ch only, 720h at most.
func (v *Vault) AddLeafRole(ctx context.Context, app string) error {
	if _, err := v.Root().Logical().WriteWithContext(ctx, "pki-prod/roles/"+LeafRole(app), nameRole(LeafName(app), false)); err != nil {
		return fmt.Errorf("testvault: role %s: %w", LeafRole(app), err)
	}
	return nil
}

// IssueLeaf issues a leaf for app from its role ([Vault.AddLeafRole]) with
// the root token: name <app>.prod.privsec.ch, 720h.
func (v *Vault) IssueLeaf(ctx context.Context, app string) (*Leaf, error) {
	cert, err := issue(ctx, v.Root(), LeafRole(app), map[string]any{"common_name": LeafName(app), "ttl": "720h"})
	if err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	certs, err := ParseCertificates([]byte(cert.cert))
	if err != nil {
		return nil, fmt.Errorf("testvault: issued leaf: %w", err)
	}
	return &Leaf{Cert: certs[0], FullChain: []byte(joinPEM(cert.cert, cert.issuingCA)), Key: []byte(joinPEM(cert.key))}, nil
}

// writeConfig writes nginx's configuration ([NginxConfig]): workers as
// ProxyUser, temporary files below Prefix, pid file and logs in the
// harness's run and log directories.
func (p *Proxy) writeConfig() error {
	q := map[string]string{}
	paths := map[string]string{
		"chain": p.CAChainFile, "clientca": p.ClientCAFile, "cert": p.ClientCertFile, "key": p.ClientKeyFile,
	}
	for _, app := range append(slices.Clone(p.Apps), "vault") {
		paths[app+".chain"], paths[app+".key"] = p.LeafFiles(app)
	}
	for k, path := range paths {
		s, err := NginxQuote(path)
		if err != nil {
			return err
		}
		q[k] = s
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	listen := fmt.Sprintf("listen %s ssl;", p.HostPort)
	w("")
	w("    # A name the proxy does not serve gets no certificate at all; a")
	w("    # request whose Host names no server is misdirected.")
	w("    server {")
	w("        listen %s ssl default_server;", p.HostPort)
	w("        ssl_reject_handshake on;")
	w("        location / {\n            return 421;\n        }")
	w("    }")
	for _, app := range p.Apps {
		w("")
		w("    server {")
		w("        %s", listen)
		w("        server_name %s;", LeafName(app))
		w("        ssl_certificate %s;", q[app+".chain"])
		w("        ssl_certificate_key %s;", q[app+".key"])
		w("        location / {\n            return 200 \"%s\\n\";\n        }", app)
		w("    }")
	}
	w("")
	w("    # The Vault edge: terminate (clients present a certificate of the")
	w("    # harness PKI, as Vault requires) and re-encrypt towards Vault's")
	w("    # production listener, verified against current-ca-chain.pem.")
	w("    server {")
	w("        %s", listen)
	w("        server_name %s;", p.ServerName)
	w("        ssl_certificate %s;", q["vault.chain"])
	w("        ssl_certificate_key %s;", q["vault.key"])
	w("        ssl_client_certificate %s;", q["clientca"])
	w("        ssl_verify_client on;")
	w("        ssl_verify_depth 2;")
	w("        location /v1/auth/cert/ {\n            return 403;\n        }")
	w("        location / {")
	w("            proxy_pass https://%s;", p.v.HostPort)
	w("            proxy_http_version 1.1;")
	w("            proxy_set_header Host %s;", p.ServerName)
	w("            proxy_ssl_server_name on;")
	w("            proxy_ssl_name %s;", p.ServerName)
	w("            proxy_ssl_verify on;")
	w("            proxy_ssl_verify_depth 2;")
	w("            proxy_ssl_trusted_certificate %s;", q["chain"])
	w("            proxy_ssl_certificate %s;", q["cert"])
	w("            proxy_ssl_certificate_key %s;", q["key"])
	w("            proxy_ssl_session_reuse off;")
	w("        }")
	w("    }")
	conf, err := NginxConfig(NginxMain{
		Comment:   fmt.Sprintf("Edge proxy %s (rotplan test harness, internal/testvault); generated, do not edit.", ProxyUser),
		User:      p.User,
		Group:     p.Group,
		PIDFile:   p.PIDFile,
		ErrorLog:  p.ErrorLog,
		AccessLog: p.AccessLog,
		TempDir:   filepath.Join(p.Prefix, "tmp"),
	}, b.String())
	if err != nil {
		return err
	}
	return writeFileOwned(p.ConfigFile, []byte(conf), 0o644, os.Geteuid(), os.Getegid())
}

// command returns the command that runs nginx's master in the foreground
// as root (it binds, reads the keys, and drops its workers to ProxyUser).
func (p *Proxy) command() *exec.Cmd {
	cmd := exec.Command(p.binary, "-c", p.ConfigFile, "-p", p.Prefix+"/")
	cmd.Dir = p.Prefix
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGTERM, // no master outlives the harness
	}
	return cmd
}

// ready waits until the new master proc has written its pid file and
// nginx completes a TLS handshake on the port.
func (p *Proxy) ready(ctx context.Context, proc *process) error {
	want := strconv.Itoa(proc.PID())
	sni := p.ServerName
	if len(p.Apps) > 0 {
		sni = LeafName(p.Apps[0])
	}
	return waitUntil(ctx, proc, func(ctx context.Context) error {
		b, err := os.ReadFile(p.PIDFile)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != want {
			return fmt.Errorf("pid file %s names %s, want %s", p.PIDFile, got, want)
		}
		_, err = p.v.servedChainAt(ctx, p.HostPort, sni, "", "")
		return err
	})
}

// waitUntil polls fn until it returns nil, proc exits, ctx is done or
// readyTimeout passes.
func waitUntil(ctx context.Context, proc *process, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		select {
		case <-proc.Done():
			return fmt.Errorf("exited: %v", proc.Err())
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last := fn(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Test runs `nginx -t` on the proxy's configuration; the error holds its
// output.
func (p *Proxy) Test(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, p.binary, "-t", "-q", "-c", p.ConfigFile, "-p", p.Prefix+"/").CombinedOutput()
	if err != nil {
		return fmt.Errorf("testvault: proxy: nginx -t: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// reload tests the configuration, sends SIGHUP to the master and waits
// until every old worker has exited and a new one runs: new connections
// then get the configuration, certificates and chains on disk now.
func (p *Proxy) reload(ctx context.Context, proc *process) error {
	if err := p.Test(ctx); err != nil {
		return err
	}
	master := proc.PID()
	old := children(master)
	if err := proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	return waitUntil(ctx, proc, func(context.Context) error {
		now := children(master)
		for _, pid := range now {
			if slices.Contains(old, pid) {
				return fmt.Errorf("old worker %d still runs", pid)
			}
		}
		if len(now) == 0 {
			return errors.New("no new worker yet")
		}
		return nil
	})
}

// children returns the pids of the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Reload reloads nginx as `nginx -s reload` does (after `nginx -t`): it
// returns once the new workers serve what is on disk now.
func (p *Proxy) Reload(ctx context.Context) error {
	if _, err := p.unit.do(ctx, "reload"); err != nil {
		return fmt.Errorf("testvault: proxy: %w", err)
	}
	return nil
}

// Restart stops nginx (SIGTERM to the master) and starts a new master; it
// returns the new master's pid once it accepts TLS connections.
func (p *Proxy) Restart(ctx context.Context) (pid int, err error) {
	pid, err = p.unit.do(ctx, "restart")
	if err != nil {
		return 0, fmt.Errorf("testvault: proxy: %w", err)
	}
	return pid, nil
}

// PID returns the pid of the running nginx master, 0 when none runs.
func (p *Proxy) PID() int { return p.unit.pid() }

// WorkerPIDs returns the pids of the running master's workers.
func (p *Proxy) WorkerPIDs() []int {
	if pid := p.PID(); pid != 0 {
		return children(pid)
	}
	return nil
}

// ServedChain dials the proxy with SNI serverName, verifies what it serves
// for serverName against the root CA alone, and returns the chain it
// presented, leaf first. No client certificate is presented.
func (p *Proxy) ServedChain(ctx context.Context, serverName string) ([]*x509.Certificate, error) {
	return p.v.servedChainAt(ctx, p.HostPort, serverName, "", "")
}

// SealStatus asks the Vault edge (Addr, SNI and Host vault.prod.privsec.ch,
// connecting to HostPort) for sys/seal-status, presenting certFile/keyFile
// and trusting the root CA alone, as [Vault.SealStatus] asks Vault
// directly.
func (p *Proxy) SealStatus(ctx context.Context, certFile, keyFile string) (*vaultapi.SealStatusResponse, error) {
	return p.v.sealStatusAt(ctx, p.Addr, p.HostPort, certFile, keyFile)
}

// stopProxy stops the proxy's nginx and its restart listener, if it was
// started.
func (v *Vault) stopProxy() error {
	v.mu.Lock()
	p := v.proxy
	v.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.unit.close(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}
