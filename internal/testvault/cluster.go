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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/proc"
	"github.com/rotplan/rotplan/internal/testhosts"
)

const (
	// ClusterUser is the system user the nodes of a Cluster run as.
	ClusterUser = "vault"
	// ClusterPort is the port of every node's listener, at its host's
	// address; the cluster port (Raft, request forwarding) is the next.
	ClusterPort = 8200
	// clusterBootPort is every node's bootstrap listener, on its host's
	// loopback: the harness's back door, reached through the namespace.
	clusterBootPort = 8300
)

// Cluster is a Vault cluster with integrated storage (Raft) on the hosts
// of a testhosts fleet, one node a host, started by [StartCluster].
type Cluster struct {
	Fleet      *testhosts.Fleet
	Nodes      []*Node // in the fleet's host order; Nodes[0] initialised the cluster and is its active node
	ServerName string  // vault.prod.privsec.ch: on every node's listener certificate, with the node's address

	Dir        string // Fleet.Dir/controller/vault: the controller's files
	AdminDir   string // Dir/tls-admin: admin.key, admin.crt, issuing_ca.pem (the identity rotplan logs in with)
	RootCAFile string // Dir/ca.pem: the root CA alone, which every check trusts

	Owner, Group string // ClusterUser and its group, which every node runs as
	UID, GID     int

	RootToken string // never print it

	binary    string
	unsealKey string
}

// Node is one node of a Cluster: a Vault server in its host's namespace,
// its files below the host's directory.
type Node struct {
	Host     *testhosts.Host
	ID       string // its Raft node id: vault-1 on h1, vault-2 on h2, ...
	Addr     string // "https://10.231.X.11:8200": its listener (api_addr)
	HostPort string // "10.231.X.11:8200"

	Dir        string // Host.Dir/vault
	ConfigFile string // Dir/etc/vault.hcl
	TLSDir     string // Dir/tls: root's, group ClusterUser, 0750
	CertFile   string // TLSDir/tls.crt: the listener's certificate and its issuing CA (ClusterUser's, 0644)
	KeyFile    string // TLSDir/tls.key: its key (ClusterUser's, 0600)
	CAFile     string // TLSDir/ca.pem: the CAs client certificates must chain to
	PIDFile    string // Dir/run/vault.pid: written by Vault
	Log        string // Dir/vault.log

	dataDir string
	proc    *process
	tail    *tailBuffer
}

// StartCluster brings up a Vault cluster on every host of f: the first
// node, alone, initialises the cluster and sets up the PKI and the admin
// identity as [Start] does (through a bootstrap listener, plain HTTP on
// the host's loopback), issues every node's listener certificate (its
// address as IP SAN, and the server name) and restarts with its listener;
// each other node then joins it and is unsealed. It returns once
// autopilot reports the cluster healthy with every node a voter. The
// nodes run as ClusterUser (created when missing), so the harness needs
// root, as the fleet does.
func StartCluster(ctx context.Context, f *testhosts.Fleet, binary string) (*Cluster, error) {
	bin, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("testvault: vault binary: %w", err)
	}
	owner, group, uid, gid, err := ensureSystemUserIDs(ClusterUser)
	if err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	dir := filepath.Join(f.Dir, "controller", "vault")
	c := &Cluster{
		Fleet:      f,
		ServerName: serverName,
		Dir:        dir,
		AdminDir:   filepath.Join(dir, "tls-admin"),
		RootCAFile: filepath.Join(dir, "ca.pem"),
		Owner:      owner,
		Group:      group,
		UID:        uid,
		GID:        gid,
	}
	if err := mkdirsOwned([]ownedDir{{dir, 0o755, os.Geteuid(), os.Getegid()}, {c.AdminDir, 0o700, os.Geteuid(), os.Getegid()}}); err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	// The binary is often cached under root's home, which the Vault user
	// cannot traverse: the cluster gets a copy of its own.
	if c.binary, err = reachableCopy(bin, filepath.Join(dir, "bin", "vault")); err != nil {
		return nil, fmt.Errorf("testvault: %w", err)
	}
	for _, h := range f.Hosts {
		c.Nodes = append(c.Nodes, newNode(h))
	}
	if err := c.start(ctx); err != nil {
		var tails []string
		for _, n := range c.Nodes {
			if n.tail != nil {
				tails = append(tails, fmt.Sprintf("--- tail of %s's vault log ---\n%s", n.ID, n.tail.Tail(20)))
			}
		}
		_ = c.Stop()
		return nil, fmt.Errorf("testvault: cluster on %s: %w\n%s", f.Name, err, strings.Join(tails, "\n"))
	}
	return c, nil
}

func newNode(h *testhosts.Host) *Node {
	dir := filepath.Join(h.Dir, "vault")
	hostPort := net.JoinHostPort(h.Addr.String(), strconv.Itoa(ClusterPort))
	tlsDir := filepath.Join(dir, "tls")
	return &Node{
		Host:       h,
		ID:         "vault-" + strings.TrimPrefix(h.Name, "h"),
		Addr:       "https://" + hostPort,
		HostPort:   hostPort,
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "etc", "vault.hcl"),
		TLSDir:     tlsDir,
		CertFile:   filepath.Join(tlsDir, "tls.crt"),
		KeyFile:    filepath.Join(tlsDir, "tls.key"),
		CAFile:     filepath.Join(tlsDir, "ca.pem"),
		PIDFile:    filepath.Join(dir, "run", "vault.pid"),
		Log:        filepath.Join(dir, "vault.log"),
		dataDir:    filepath.Join(dir, "data"),
		tail:       newTailBuffer(32 << 10),
	}
}

func (c *Cluster) start(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := c.layout(n); err != nil {
			return err
		}
	}
	first := c.Nodes[0]

	// The first node alone, with its bootstrap listener only: no
	// certificate exists yet.
	boot, err := c.startNode(first, false)
	if err != nil {
		return err
	}
	if c.unsealKey, c.RootToken, err = initialise(ctx, boot, first.waitFor); err != nil {
		return fmt.Errorf("%s: %w", first.ID, err)
	}
	if err := unsealActive(ctx, boot, c.unsealKey, first.waitFor); err != nil {
		return fmt.Errorf("%s: %w", first.ID, err)
	}
	boot.SetToken(c.RootToken)
	p, err := setupPKI(ctx, boot)
	if err != nil {
		return fmt.Errorf("%s: %w", first.ID, err)
	}
	files := append(adminFiles(c.AdminDir, p.admin), ownedFile{c.RootCAFile, joinPEM(p.rootPEM), 0o644, os.Geteuid(), os.Getegid()})
	for _, n := range c.Nodes {
		server, err := issue(ctx, boot, "vault-server", map[string]any{
			"common_name": c.ServerName,
			"ip_sans":     n.Host.Addr.String(),
			"ttl":         "720h",
		})
		if err != nil {
			return err
		}
		files = append(files,
			ownedFile{n.KeyFile, joinPEM(server.key), 0o600, c.UID, c.GID},
			ownedFile{n.CertFile, joinPEM(server.cert, server.issuingCA), 0o644, c.UID, c.GID},
			ownedFile{n.CAFile, joinPEM(server.caChain...), 0o644, os.Geteuid(), c.GID},
		)
	}
	if err := writeFilesOwned(files); err != nil {
		return err
	}

	// The first node again, with its listener.
	if err := first.stop(); err != nil {
		return fmt.Errorf("%s: stopping: %w", first.ID, err)
	}
	if _, err := c.startNode(first, true); err != nil {
		return err
	}
	if err := waitSealStatus(ctx, boot, first.waitFor); err != nil {
		return fmt.Errorf("%s: %w", first.ID, err)
	}
	if err := unsealActive(ctx, boot, c.unsealKey, first.waitFor); err != nil {
		return fmt.Errorf("%s: %w", first.ID, err)
	}
	// New servers are voters once autopilot has seen them stable for this
	// long (10s by default): the bed waits for that before every test.
	if _, err := boot.Logical().WriteWithContext(ctx, "sys/storage/raft/autopilot/configuration", map[string]any{
		"server_stabilization_time": "2s",
	}); err != nil {
		return fmt.Errorf("autopilot configuration: %w", err)
	}

	// The others join it, all at once.
	others := c.Nodes[1:]
	errs := make([]error, len(others))
	var wg sync.WaitGroup
	for i, n := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.join(ctx, n, first, p); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.ID, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// layout creates a node's directories: its files below Host.Dir/vault,
// where the Vault user reaches them.
func (c *Cluster) layout(n *Node) error {
	me, mg := os.Geteuid(), os.Getegid()
	// The host's directory is root's alone; Vault must traverse it.
	if err := os.Chmod(n.Host.Dir, 0o711); err != nil {
		return err
	}
	return mkdirsOwned([]ownedDir{
		{n.Dir, 0o755, me, mg},
		{filepath.Join(n.Dir, "etc"), 0o755, me, mg},
		{n.TLSDir, 0o750, me, c.GID},
		{n.dataDir, 0o700, c.UID, c.GID},
		{filepath.Dir(n.PIDFile), 0o755, c.UID, c.GID},
	})
}

// writeConfig writes a node's configuration: the bootstrap listener, and,
// withListener, its TLS listener at its address, client certificates
// required.
func (c *Cluster) writeConfig(n *Node, withListener bool) error {
	cfg := serverConfig{
		pidFile:     n.PIDFile,
		apiAddr:     n.Addr,
		dataDir:     n.dataDir,
		nodeID:      n.ID,
		clusterAddr: "https://" + net.JoinHostPort(n.Host.Addr.String(), strconv.Itoa(ClusterPort+1)),
		listeners: []listenerConfig{
			{comment: "Bootstrap listener: the harness's back door, on the host's loopback.", address: "127.0.0.1:" + strconv.Itoa(clusterBootPort)},
		},
	}
	if withListener {
		cfg.listeners = append(cfg.listeners, listenerConfig{
			comment:      "The node's listener: mTLS required.",
			address:      n.HostPort,
			certFile:     n.CertFile,
			keyFile:      n.KeyFile,
			clientCAFile: n.CAFile,
		})
	}
	text, err := cfg.render()
	if err != nil {
		return err
	}
	return writeFileOwned(n.ConfigFile, []byte(text), 0o644, os.Geteuid(), os.Getegid())
}

// startNode writes a node's configuration (see writeConfig), starts it
// and returns a client on its bootstrap listener.
func (c *Cluster) startNode(n *Node, withListener bool) (*vaultapi.Client, error) {
	if err := c.writeConfig(n, withListener); err != nil {
		return nil, err
	}
	if err := c.spawn(n); err != nil {
		return nil, err
	}
	return n.bootstrapClient()
}

// spawn starts a node's server in its host's namespace, as the Vault user
// (setpriv, which keeps the parent-death signal across the change).
func (c *Cluster) spawn(n *Node) error {
	ip, err := testhosts.IPBinary()
	if err != nil {
		return err
	}
	_ = os.Remove(n.PIDFile)
	logFile, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(ip, "netns", "exec", n.Host.Netns,
		"setpriv", "--reuid", strconv.Itoa(c.UID), "--regid", strconv.Itoa(c.GID), "--clear-groups", "--pdeathsig", "keep",
		c.binary, "server", "-config="+n.ConfigFile)
	cmd.Dir = n.Dir
	cmd.Env = userEnv(n.Dir, c.Owner)
	out := io.MultiWriter(logFile, n.tail)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a ^C at the terminal is for the harness, which stops Vault
		Pdeathsig: syscall.SIGTERM, // no Vault outlives the harness
	}
	p, err := proc.Spawn(cmd)
	if err != nil {
		logFile.Close()
		return fmt.Errorf("%s: starting vault: %w", n.ID, err)
	}
	n.proc = p
	// Vault's output goes through a pipe the harness copies: the log stays
	// open until the process is gone.
	go func() {
		<-p.Done()
		logFile.Close()
	}()
	return nil
}

// join has node n join the cluster through leader's listener (trusting the
// root CA, presenting the admin certificate, as the listener requires a
// client certificate), then unseals it and waits until it is a standby.
func (c *Cluster) join(ctx context.Context, n, leader *Node, p *pkiSetup) error {
	boot, err := c.startNode(n, true)
	if err != nil {
		return err
	}
	if err := waitSealStatus(ctx, boot, n.waitFor); err != nil {
		return err
	}
	resp, err := boot.Sys().RaftJoinWithContext(ctx, &vaultapi.RaftJoinRequest{
		LeaderAPIAddr:    leader.Addr,
		LeaderCACert:     joinPEM(p.rootPEM),
		LeaderClientCert: joinPEM(p.admin.cert),
		LeaderClientKey:  joinPEM(p.admin.key),
	})
	if err != nil {
		return fmt.Errorf("raft join: %w", err)
	}
	if !resp.Joined {
		return errors.New("raft join: not joined")
	}
	if err := unseal(ctx, boot, c.unsealKey); err != nil && !strings.Contains(err.Error(), "still sealed") {
		return err
	}
	// Joining unseals once the node has the cluster's keyring: it answers
	// as a standby then.
	return n.waitFor(ctx, "standby", func(ctx context.Context) error {
		h, err := boot.Sys().HealthWithContext(ctx)
		if err != nil {
			return err
		}
		if h.Sealed || !h.Standby {
			return fmt.Errorf("health: sealed=%t standby=%t", h.Sealed, h.Standby)
		}
		return nil
	})
}

// waitFor polls fn until it returns nil, the node's process exits, ctx is
// done or readyTimeout passes.
func (n *Node) waitFor(ctx context.Context, what string, fn func(context.Context) error) error {
	if err := waitUntil(ctx, n.proc, fn); err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// bootstrapClient returns a client without token on the node's bootstrap
// listener, reached through its host's namespace.
func (n *Node) bootstrapClient() (*vaultapi.Client, error) {
	hc := loopbackHTTPClient(nil)
	hc.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return n.Host.Dial(ctx, network, "127.0.0.1:"+strconv.Itoa(clusterBootPort))
	}
	cl, err := vaultapi.NewClient(&vaultapi.Config{
		Address:    "http://127.0.0.1:" + strconv.Itoa(clusterBootPort),
		HttpClient: hc,
		Timeout:    30 * time.Second,
		MaxRetries: 0,
	})
	if err != nil {
		return nil, err
	}
	cl.ClearToken()
	cl.ClearNamespace()
	return cl, nil
}

// PID returns the pid of the node's Vault server.
func (n *Node) PID() int { return n.proc.PID() }

// stop ends the node's server (SIGTERM, then SIGKILL) and waits for it.
func (n *Node) stop() error {
	p := n.proc
	if p == nil {
		return nil
	}
	n.proc = nil
	return p.Terminate("vault "+n.ID, stopTimeout)
}

// Root returns a client with the root token on node's bootstrap listener;
// a standby forwards what it cannot answer to the active node.
func (c *Cluster) Root(n *Node) (*vaultapi.Client, error) {
	cl, err := n.bootstrapClient()
	if err != nil {
		return nil, err
	}
	cl.SetToken(c.RootToken)
	return cl, nil
}

// Admin returns a client logged in, with cert auth, as the admin identity
// (AdminDir) at node n's listener, reached from the fleet's controller as
// rotplan reaches it: with SNI ServerName, trusting RootCAFile alone.
func (c *Cluster) Admin(ctx context.Context, n *Node) (*vaultapi.Client, error) {
	conf, err := c.adminTLS()
	if err != nil {
		return nil, err
	}
	hc := loopbackHTTPClient(conf)
	hc.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return c.Fleet.Controller.Dial(ctx, network, n.HostPort)
	}
	cl, err := vaultapi.NewClient(&vaultapi.Config{Address: n.Addr, HttpClient: hc, Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	cl.ClearToken()
	cl.ClearNamespace()
	s, err := cl.Logical().WriteWithContext(ctx, "auth/cert/login", nil)
	if err != nil {
		return nil, fmt.Errorf("cert login at %s: %w", n.ID, err)
	}
	if s == nil || s.Auth == nil {
		return nil, fmt.Errorf("cert login at %s: no token", n.ID)
	}
	cl.SetToken(s.Auth.ClientToken)
	return cl, nil
}

// adminTLS is the TLS configuration of the admin identity towards a
// node's listener.
func (c *Cluster) adminTLS() (*tls.Config, error) {
	pool, err := loadPool(c.RootCAFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(c.AdminDir, "admin.crt"), filepath.Join(c.AdminDir, "admin.key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, ServerName: c.ServerName, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// Autopilot returns the cluster's autopilot state, asked of the first
// node that answers.
func (c *Cluster) Autopilot(ctx context.Context) (*vaultapi.AutopilotState, error) {
	var errs []error
	for _, n := range c.Nodes {
		cl, err := c.Root(n)
		if err == nil {
			var st *vaultapi.AutopilotState
			if st, err = cl.Sys().RaftAutopilotStateWithContext(ctx); err == nil && st == nil {
				err = errors.New("no autopilot state")
			}
			if err == nil {
				return st, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
	}
	return nil, errors.Join(errs...)
}

// Healthy says why st is not a healthy cluster with every node a healthy
// voter, or nil when it is.
func (c *Cluster) Healthy(st *vaultapi.AutopilotState) error {
	var problems []string
	if !st.Healthy {
		problems = append(problems, "autopilot says unhealthy")
	}
	for _, n := range c.Nodes {
		s := st.Servers[n.ID]
		switch {
		case s == nil:
			problems = append(problems, n.ID+" is not in the cluster")
		case !slices.Contains(st.Voters, n.ID):
			problems = append(problems, n.ID+" is not a voter")
		case !s.Healthy:
			problems = append(problems, n.ID+" is unhealthy")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// WaitHealthy waits until autopilot says the cluster is healthy and every
// node a healthy voter.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		st, err := c.Autopilot(ctx)
		if err == nil {
			err = c.Healthy(st)
		}
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a healthy cluster: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Active returns the node the cluster's leader is, as sys/leader says.
func (c *Cluster) Active(ctx context.Context) (*Node, error) {
	cl, err := c.Root(c.Nodes[0])
	if err != nil {
		return nil, err
	}
	l, err := cl.Sys().LeaderWithContext(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if l.LeaderAddress == n.Addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the leader's address %q is no node's", l.LeaderAddress)
}

// ServedChain dials node's listener from the fleet's controller with SNI
// ServerName and the admin client certificate, verifying the server for
// ServerName against RootCAFile only, and returns the chain it presented,
// leaf first.
func (c *Cluster) ServedChain(ctx context.Context, n *Node) ([]*x509.Certificate, error) {
	conf, err := c.adminTLS()
	if err != nil {
		return nil, err
	}
	raw, err := c.Fleet.Controller.Dial(ctx, "tcp", n.HostPort)
	if err != nil {
		return nil, fmt.Errorf("dialing %s (%s): %w", n.HostPort, n.ID, err)
	}
	defer raw.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(d)
	}
	conn := tls.Client(raw, conf)
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS with %s (%s, SNI %s): %w", n.HostPort, n.ID, c.ServerName, err)
	}
	return conn.ConnectionState().PeerCertificates, nil
}

// Stop ends every node's server, the standbys first. It can be called
// again.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		if err := c.Nodes[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PlanVars returns the variables of examples/cluster.hcl for this
// cluster, as a variable file's text: every node by its Raft id (its
// address and directory), the fleet's known_hosts and controller key,
// the first (active) node's address, the root CA, the admin identity and
// the Vault user's ids. The e2e tests and the demo run the plan with it.
func (c *Cluster) PlanVars() string {
	var nodes []string
	for _, n := range c.Nodes {
		nodes = append(nodes, fmt.Sprintf("%q = { address = %q, dir = %q }", n.ID, n.Host.Addr, n.Dir))
	}
	return fmt.Sprintf(`nodes       = { %s }
known_hosts = %q
identity    = %q
vault_addr  = %q
ca_cert     = %q
admin_dir   = %q
vault_uid   = "%d"
vault_gid   = "%d"
`, strings.Join(nodes, ", "), c.Fleet.KnownHosts, c.Fleet.ClientKey, c.Nodes[0].Addr, c.RootCAFile, c.AdminDir, c.UID, c.GID)
}
