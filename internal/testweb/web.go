package testweb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rotplan/rotplan/internal/proc"
	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
)

// App is the name of the fleet's leaf role and site: role nginx-web
// ([testvault.LeafRole]) issues for [ServerName] only.
const App = "web"

// ServerName is the one name every host serves: web.prod.privsec.ch.
var ServerName = testvault.LeafName(App)

// Port is the port every host's nginx listens on, at the host's address.
const Port = 443

// Worker user and group of every nginx: the master reads the key as root,
// so the workers need no file of the site.
const (
	workerUser  = "nobody"
	workerGroup = "nogroup"
)

// stopTimeout bounds the wait for an nginx master after SIGTERM.
const stopTimeout = 10 * time.Second

// Site is the nginx of one host of the fleet.
type Site struct {
	Host     *testhosts.Host
	HostPort string // "10.231.X.11:443"

	Prefix     string // Host.Dir/nginx: nginx's -p
	ConfigFile string // Prefix/nginx.conf: nginx's -c (generated)
	CertFile   string // Prefix/tls/web.crt: the leaf, then the intermediate (0644 root)
	KeyFile    string // Prefix/tls/web.key (0600 root)
	PIDFile    string // Prefix/nginx.pid, written by nginx
	ErrorLog   string // Prefix/logs/error.log
	AccessLog  string // Prefix/logs/access.log
	LogFile    string // Prefix/logs/master.log: the master's stdout and stderr

	binary string
	proc   *proc.Process
}

// Web is a running fleet bed: nginx on every host of Fleet, certificates
// from Vault.
type Web struct {
	Fleet *testhosts.Fleet
	Vault *testvault.Vault
	Sites []*Site // in the order of Fleet.Hosts
	// VaultAddr is Vault's production listener as the controller reaches
	// it: "https://127.0.0.1:PORT" on the controller's loopback (the
	// forwarder); its certificate is for Vault.ServerName.
	VaultAddr string
	// Nginx is the nginx binary every host runs.
	Nginx string

	fwd      *forwarder
	stopOnce sync.Once
	stopErr  error
}

// StartWeb sets up nginx on every host of f with a leaf of v (role
// nginx-web, written by this call) and starts the forwarder to v in f's
// controller. It returns once every host completes a TLS handshake for
// ServerName from the controller. It needs root and nginx. On error
// everything it started is stopped again.
func StartWeb(ctx context.Context, f *testhosts.Fleet, v *testvault.Vault) (*Web, error) {
	bin, err := testvault.NginxBinary()
	if err != nil {
		return nil, fmt.Errorf("testweb: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("testweb: nginx's masters bind port 443 and read their keys as root: run as root")
	}
	w := &Web{Fleet: f, Vault: v, Nginx: bin}
	if err := w.start(ctx); err != nil {
		if serr := w.Stop(); serr != nil {
			err = fmt.Errorf("%w (and stopping: %v)", err, serr)
		}
		return nil, fmt.Errorf("testweb: %w", err)
	}
	return w, nil
}

func (w *Web) start(ctx context.Context) error {
	if err := w.Vault.AddLeafRole(ctx, App); err != nil {
		return err
	}
	fwd, err := forward(w.Fleet.Controller, w.Vault.HostPort)
	if err != nil {
		return fmt.Errorf("forwarder to Vault: %w", err)
	}
	w.fwd = fwd
	w.VaultAddr = "https://" + fwd.addr
	for _, h := range w.Fleet.Hosts {
		w.Sites = append(w.Sites, newSite(h, w.Nginx))
	}
	for _, s := range w.Sites {
		leaf, err := w.Vault.IssueLeaf(ctx, App)
		if err != nil {
			return err
		}
		if err := s.layout(leaf); err != nil {
			return fmt.Errorf("%s: %w", s.Host.Name, err)
		}
		if err := s.start(); err != nil {
			return fmt.Errorf("%s: starting nginx: %w", s.Host.Name, err)
		}
	}
	errs := make([]error, len(w.Sites))
	var wg sync.WaitGroup
	for i, s := range w.Sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.waitServing(ctx, s)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newSite(h *testhosts.Host, bin string) *Site {
	prefix := filepath.Join(h.Dir, "nginx")
	return &Site{
		Host:       h,
		HostPort:   netip.AddrPortFrom(h.Addr, Port).String(),
		Prefix:     prefix,
		ConfigFile: filepath.Join(prefix, "nginx.conf"),
		CertFile:   filepath.Join(prefix, "tls", App+".crt"),
		KeyFile:    filepath.Join(prefix, "tls", App+".key"),
		PIDFile:    filepath.Join(prefix, "nginx.pid"),
		ErrorLog:   filepath.Join(prefix, "logs", "error.log"),
		AccessLog:  filepath.Join(prefix, "logs", "access.log"),
		LogFile:    filepath.Join(prefix, "logs", "master.log"),
		binary:     bin,
	}
}

// layout writes the site's directories, its first leaf and its
// configuration, every file root's.
func (s *Site) layout(leaf *testvault.Leaf) error {
	for _, d := range []string{s.Prefix, filepath.Dir(s.CertFile), filepath.Dir(s.LogFile)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(s.Prefix, "tmp"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(s.KeyFile, leaf.Key, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(s.CertFile, leaf.FullChain, 0o644); err != nil {
		return err
	}
	conf, err := s.config()
	if err != nil {
		return err
	}
	return os.WriteFile(s.ConfigFile, []byte(conf), 0o644)
}

// config is the site's nginx configuration: one TLS server for
// ServerName on the host's address; other names get no certificate.
func (s *Site) config() (string, error) {
	cert, err := testvault.NginxQuote(s.CertFile)
	if err != nil {
		return "", err
	}
	key, err := testvault.NginxQuote(s.KeyFile)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
    server {
        listen %[1]s ssl default_server;
        ssl_reject_handshake on;
    }

    server {
        listen %[1]s ssl;
        server_name %[2]s;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        location / {
            return 200 "%[5]s\n";
        }
    }
`, s.HostPort, ServerName, cert, key, s.Host.Name)
	return testvault.NginxConfig(testvault.NginxMain{
		Comment:   fmt.Sprintf("nginx of web host %s (rotplan test harness, internal/testweb); generated, do not edit.", s.Host.Name),
		User:      workerUser,
		Group:     workerGroup,
		PIDFile:   s.PIDFile,
		ErrorLog:  s.ErrorLog,
		AccessLog: s.AccessLog,
		TempDir:   filepath.Join(s.Prefix, "tmp"),
	}, b.String())
}

// Args returns nginx's arguments for this site with extra before them:
// Args("-t") is the configuration test, Args("-s", "reload") the reload.
func (s *Site) Args(extra ...string) []string {
	return append(extra, "-c", s.ConfigFile, "-p", s.Prefix+"/")
}

// start starts the site's master in its host's namespace, in the
// foreground, supervised by the harness as the hosts' sshd are.
func (s *Site) start() error {
	log, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close() // nginx has its own descriptor
	ip, err := testhosts.IPBinary()
	if err != nil {
		return err
	}
	// Not Namespace.Command: that one is bound to a context, nginx
	// outlives it.
	cmd := exec.Command(ip, append([]string{"netns", "exec", s.Host.Netns, s.binary}, s.Args()...)...)
	cmd.Dir = s.Prefix
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGTERM, // no master outlives the harness
	}
	s.proc, err = proc.Spawn(cmd)
	return err
}

// PID returns the pid of the site's master, 0 when it was not started.
func (s *Site) PID() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.PID()
}

// waitServing waits until s completes a TLS handshake for ServerName from
// the controller, or its master exits.
func (w *Web) waitServing(ctx context.Context, s *Site) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := w.Served(ctx, s)
		if err == nil {
			return nil
		}
		select {
		case <-s.proc.Done():
			b, _ := os.ReadFile(s.LogFile)
			return fmt.Errorf("%s: nginx exited (%v): %s", s.Host.Name, s.proc.Err(), strings.TrimSpace(string(b)))
		case <-ctx.Done():
			return fmt.Errorf("%s: nginx does not serve at %s: %v (last: %v)", s.Host.Name, s.HostPort, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Served connects to s from the controller's namespace, as a client of
// the fleet would, with SNI ServerName, verifies the chain against the
// Vault's root CA alone, and returns what s served, leaf first.
func (w *Web) Served(ctx context.Context, s *Site) ([]*x509.Certificate, error) {
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(w.Vault.RootCAFile)
	if err != nil {
		return nil, err
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", w.Vault.RootCAFile)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := w.Fleet.Controller.Dial(ctx, "tcp", s.HostPort)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	c := tls.Client(raw, &tls.Config{ServerName: ServerName, RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("%s (SNI %s): %w", s.HostPort, ServerName, err)
	}
	return c.ConnectionState().PeerCertificates, nil
}

// Environ returns the operator's environment for Vault as rotplan in the
// controller sees it ([testvault.Vault.Environ] with VAULT_ADDR the
// forwarder).
func (w *Web) Environ() []string {
	env := w.Vault.Environ()
	for i, kv := range env {
		if strings.HasPrefix(kv, "VAULT_ADDR=") {
			env[i] = "VAULT_ADDR=" + w.VaultAddr
		}
	}
	return env
}

// Stop stops every site's nginx (SIGTERM, then SIGKILL) and the
// forwarder; the fleet and the Vault are their owners' to stop. Stop can
// be called again; it returns the first call's result.
func (w *Web) Stop() error {
	w.stopOnce.Do(func() {
		var errs []error
		for _, s := range w.Sites {
			if s.proc != nil {
				errs = append(errs, s.proc.Terminate("nginx of "+s.Host.Name, stopTimeout))
			}
		}
		if w.fwd != nil {
			errs = append(errs, w.fwd.close())
		}
		if err := errors.Join(errs...); err != nil {
			w.stopErr = fmt.Errorf("testweb: stopping: %w", err)
		}
	})
	return w.stopErr
}

// PlanVars returns the variables of examples/fleet.hcl for this bed, as a
// variable file's text: every site by its host's name (address, SSH port,
// nginx's prefix), the fleet's known_hosts and controller key, Vault's
// root CA, the nginx binary, the batch size and how often the TLS check
// tries again. The e2e tests, the benchmark and the demo run the plan
// with it.
func (w *Web) PlanVars(batch int, checkInterval string) string {
	var web []string
	for _, s := range w.Sites {
		web = append(web, fmt.Sprintf("  %s = { address = %q, ssh_port = %d, dir = %q }", s.Host.Name, s.Host.Addr, s.Host.Port, s.Prefix))
	}
	return fmt.Sprintf("web = {\n%s\n}\nknown_hosts = %q\nidentity = %q\nca_file = %q\nnginx = %q\ncheck_interval = %q\nbatch_size = %d\n",
		strings.Join(web, "\n"), w.Fleet.KnownHosts, w.Fleet.ClientKey, w.Vault.RootCAFile, w.Nginx, checkInterval, batch)
}
