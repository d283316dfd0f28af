package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host is a host to reach: where its SSH server listens and whom to log in
// as.
type Host struct {
	// Name names the host in messages (the plan's name for it); Address
	// is used when it is empty.
	Name string
	// Address is the host name or IP address to connect to.
	Address string
	// Port is the SSH server's port, 22 when 0.
	Port int
	// User is the user to log in as.
	User string
}

// addr is host:port as dialled and as known_hosts is searched for it.
func (h Host) addr() string {
	port := h.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port))
}

// String names the host for messages: "web1 (10.0.0.5:22)", or the
// address alone when the host has no other name.
func (h Host) String() string {
	if h.Name == "" || h.Name == h.Address {
		return h.addr()
	}
	return h.Name + " (" + h.addr() + ")"
}

// Subject is the host as the subject of a message: its String, with
// "host" before a bare address ("host 10.0.0.1:22 stopped answering");
// a plan's name says it already ("host.web[\"a\"] (10.0.0.1:22) ...").
func (h Host) Subject() string {
	if h.Name == "" || h.Name == h.Address {
		return "host " + h.addr()
	}
	return h.String()
}

// key tells hosts apart in a Pool: one connection per address and user.
func (h Host) key() string { return h.User + "@" + h.addr() }

// Config says how to reach hosts. KnownHosts and at least one way to
// authenticate (KeyFiles or Agent) are required. There is deliberately no
// way to skip the host key check: a test that needs a throwaway host
// writes a known_hosts file for it.
type Config struct {
	// KnownHosts is the known_hosts file every host key is checked
	// against (OpenSSH's format, hashed names included).
	KnownHosts string
	// KeyFiles are private key files to offer, in order. A key
	// protected by a passphrase must be loaded into an agent instead:
	// rotplan never asks for or holds a passphrase.
	KeyFiles []string
	// Agent offers the keys of the ssh-agent at $SSH_AUTH_SOCK, after
	// those of KeyFiles.
	Agent bool
	// ConnectTimeout bounds the TCP connect, the SSH handshake and the
	// login together; 10 seconds when 0.
	ConnectTimeout time.Duration
	// KeepAliveInterval is how often a connection is probed
	// (keepalive@openssh.com, as ssh's ServerAliveInterval); a
	// connection that leaves KeepAliveMax probes in a row unanswered
	// is closed, failing what was under way on it with a *LostError:
	// within (KeepAliveMax+1) intervals of the host's last answer. 15
	// seconds and 3 when 0.
	KeepAliveInterval time.Duration
	// KeepAliveMax: see KeepAliveInterval.
	KeepAliveMax int
	// MaxHosts bounds how many hosts a Pool keeps connected at once; 8
	// when 0.
	MaxHosts int
	// MaxSessions bounds the commands run at once on one connection;
	// 8 when 0. OpenSSH's sshd allows 10 sessions per connection
	// (MaxSessions) and the SFTP client holds one.
	MaxSessions int
}

// withDefaults fills in what was left 0.
func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = 15 * time.Second
	}
	if c.KeepAliveMax <= 0 {
		c.KeepAliveMax = 3
	}
	if c.MaxHosts <= 0 {
		c.MaxHosts = 8
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 8
	}
	return c
}

// dialFunc opens the TCP connection; tests replace it to count
// connections.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dial connects to h and logs in. The host key is checked against
// cfg.KnownHosts before anything else is sent: a host that is unknown or
// offers another key than the file holds is refused with a *HostKeyError.
func Dial(ctx context.Context, cfg Config, h Host) (*Conn, error) {
	return dial(ctx, cfg.withDefaults(), h, nil)
}

func dial(ctx context.Context, cfg Config, h Host, dialer dialFunc) (*Conn, error) {
	if h.Address == "" || h.User == "" {
		return nil, fmt.Errorf("%s: an address and a user are required", h.Subject())
	}
	if cfg.KnownHosts == "" {
		return nil, fmt.Errorf("connecting to %s: no known_hosts file given; rotplan always checks host keys", h)
	}
	known, err := knownhosts.New(cfg.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: reading known_hosts file: %w", h, err)
	}
	auth, closeAgent, err := authMethods(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", h, err)
	}
	defer closeAgent()

	addr := h.addr()
	// The host key error is kept as the callback returned it: the ssh
	// package wraps it in "ssh: handshake failed".
	var hostKeyErr error
	sshCfg := &ssh.ClientConfig{
		User: h.User,
		Auth: auth,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if err := known(hostname, remote, key); err != nil {
				hostKeyErr = newHostKeyError(h, cfg.KnownHosts, key, err)
				return hostKeyErr
			}
			return nil
		},
		HostKeyAlgorithms: knownAlgorithms(known, addr),
		Timeout:           cfg.ConnectTimeout,
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if dialer == nil {
		dialer = (&net.Dialer{}).DialContext
	}
	tcp, err := dialer(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", h, err)
	}
	// The handshake and login honour ctx (and so the timeout): closing
	// the connection makes them return.
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(tcp, addr, sshCfg)
	interrupted := !stop()
	switch {
	case hostKeyErr != nil:
		tcp.Close()
		return nil, hostKeyErr
	case err != nil:
		tcp.Close()
		if interrupted {
			return nil, fmt.Errorf("connecting to %s: %w", h, context.Cause(ctx))
		}
		return nil, fmt.Errorf("connecting to %s: %w", h, err)
	case interrupted:
		sc.Close()
		return nil, fmt.Errorf("connecting to %s: %w", h, context.Cause(ctx))
	}
	return newConn(h, cfg, ssh.NewClient(sc, chans, reqs)), nil
}

// authMethods loads the key files and connects to the agent. closeAgent
// is to be called once the login is over.
func authMethods(cfg Config) (methods []ssh.AuthMethod, closeAgent func(), err error) {
	closeAgent = func() {}
	var signers []ssh.Signer
	for _, path := range cfg.KeyFiles {
		s, err := loadKey(path)
		if err != nil {
			return nil, closeAgent, err
		}
		signers = append(signers, s)
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if cfg.Agent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return nil, closeAgent, errors.New("the ssh-agent is to be used, but SSH_AUTH_SOCK is not set")
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, closeAgent, fmt.Errorf("connecting to the ssh-agent at %s: %w", sock, err)
		}
		closeAgent = func() { c.Close() }
		methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(c).Signers))
	}
	if len(methods) == 0 {
		return nil, closeAgent, errors.New("no key file and no ssh-agent to log in with")
	}
	return methods, closeAgent, nil
}

// loadKey reads a private key file. Like ssh, it refuses a key that
// others may read. Its errors name the file, never what is in it.
func loadKey(path string) (ssh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is accessible by others (mode %04o); make it owner-only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, fmt.Errorf("key file %s is protected by a passphrase; load it into ssh-agent (ssh-add %s) and use the agent instead", path, path)
	case err != nil:
		// The parser's messages describe the format, not the bytes.
		return nil, fmt.Errorf("key file %s is not a private key rotplan can read: %v", path, err)
	}
	return s, nil
}

// placeholderKey is a key no known_hosts file holds: checking it yields
// the keys the file knows for a host.
var placeholderKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// knownAlgorithms returns the host key algorithms of the keys known_hosts
// holds for addr, so that the server is asked for a key of a type the
// file has (a server with an ed25519 and an ECDSA key, known by its
// ed25519 key alone, would otherwise show its ECDSA key and be refused as
// changed). nil, the ssh package's defaults, when the host is unknown.
func knownAlgorithms(known ssh.HostKeyCallback, addr string) []string {
	var keyErr *knownhosts.KeyError
	if err := known(addr, &net.TCPAddr{IP: net.IPv4zero}, placeholderKey()); !errors.As(err, &keyErr) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range keyErr.Want {
		t := k.Key.Type()
		if seen[t] {
			continue
		}
		seen[t] = true
		if t == ssh.KeyAlgoRSA {
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		}
		algos = append(algos, t)
	}
	return algos
}

// HostKeyError is a host refused because of its key: unknown to the
// known_hosts file, different from the key the file holds for it, or
// revoked there. Nothing was sent to the host beyond the key exchange.
type HostKeyError struct {
	// Host is the host refused.
	Host Host
	// KnownHosts is the file its key was checked against.
	KnownHosts string
	// KeyType and Fingerprint (SHA256:..., as ssh-keygen -l prints it)
	// describe the key the host offered.
	KeyType, Fingerprint string
	// Known holds what the file has for the host instead ("ssh-ed25519
	// SHA256:... (line 3)"); empty when the host is unknown.
	Known []string
	// Revoked is set when the file marks the offered key @revoked.
	Revoked bool
}

func newHostKeyError(h Host, file string, key ssh.PublicKey, err error) *HostKeyError {
	e := &HostKeyError{Host: h, KnownHosts: file, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key)}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &keyErr):
		for _, k := range keyErr.Want {
			e.Known = append(e.Known, fmt.Sprintf("%s %s (line %d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Line))
		}
	case errors.As(err, &revoked):
		e.Revoked = true
	}
	return e
}

// Error says what was offered, what was expected, and what to do.
func (e *HostKeyError) Error() string {
	offered := e.KeyType + " " + e.Fingerprint
	switch {
	case e.Revoked:
		return fmt.Sprintf("%s offered the key %s, which known_hosts file %s marks as revoked; refusing to connect", e.Host.Subject(), offered, e.KnownHosts)
	case len(e.Known) == 0:
		return fmt.Sprintf("%s is not in known_hosts file %s (it offered %s); refusing to connect: compare that fingerprint with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub, run on the host), then add its key to the file", e.Host.Subject(), e.KnownHosts, offered)
	}
	return fmt.Sprintf("%s offered the key %s, but known_hosts file %s has %s for it; refusing to connect: someone may be intercepting the connection, or the host was reinstalled; compare the fingerprint with the host's own before changing the file", e.Host.Subject(), offered, e.KnownHosts, strings.Join(e.Known, ", "))
}
