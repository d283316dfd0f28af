package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// HostRunner is implemented by kinds whose steps can run on another host,
// named by the step's `on` meta-argument (`on = host.web["a"]`): their
// methods find the host in their Env (see Env.On) and act there. A step
// of any other kind with `on` is refused when the plan is compiled.
type HostRunner interface {
	// RunsOnHost marks the kind.
	RunsOnHost()
}

// HostSetting is the block type of the host settings blocks
// (`host "web" { ... }`): labelled, with for_each or count, each instance
// a host that steps name with `on`.
const HostSetting = "host"

// hostSettings is the Setting of host blocks: how to reach a host over
// SSH. The engine evaluates each instance with this schema and hands it,
// unopened, to the steps that name it (Env.On).
type hostSettings struct{}

var _ Setting = hostSettings{}

// hostBlock is what a kind that runs on hosts returns as its Settings.
func hostBlock() Settings { return Settings{HostSetting: hostSettings{}} }

// Spec implements Setting.
func (hostSettings) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"address":       &hcldec.AttrSpec{Name: "address", Type: cty.String, Required: true},
		"port":          &hcldec.AttrSpec{Name: "port", Type: cty.Number},
		"user":          &hcldec.AttrSpec{Name: "user", Type: cty.String},
		"known_hosts":   &hcldec.AttrSpec{Name: "known_hosts", Type: cty.String, Required: true},
		"identity_file": &hcldec.AttrSpec{Name: "identity_file", Type: cty.String},
		"agent":         &hcldec.AttrSpec{Name: "agent", Type: cty.Bool},
		// How long a host that does not answer is waited for: a
		// host cut off fails its step within these bounds instead of
		// holding the run for ever.
		"connect_timeout":     &hcldec.AttrSpec{Name: "connect_timeout", Type: cty.String},
		"keepalive_interval":  &hcldec.AttrSpec{Name: "keepalive_interval", Type: cty.String},
		"keepalive_count_max": &hcldec.AttrSpec{Name: "keepalive_count_max", Type: cty.Number},
	}
}

// Summary implements Setting.
func (hostSettings) Summary() string { return "Invalid host" }

// Check implements Setting: an instance says where the host is, which
// known_hosts file vouches for its key, and how to log in. An empty cfg
// (the engine's call for a plan without host blocks) is fine.
func (hostSettings) Check(cfg Config) error {
	if !cfg.Set("address") {
		return nil
	}
	_, err := readHost("", cfg)
	return err
}

// Open implements Setting. The hosts' connections are made on first use,
// one per host, and closed by Env.Disconnect; each instance reaches its
// steps through Env.On, so there is nothing to open here.
func (hostSettings) Open(*Env, Config) error { return nil }

// hostTarget is an evaluated host instance, read: the host and how to
// reach it.
type hostTarget struct {
	host remote.Host
	cfg  remote.Config
}

// readHost reads an evaluated host instance; name names it in messages
// (host.web["a"]).
func readHost(name string, cfg Config) (hostTarget, error) {
	var t hostTarget
	var errs []error
	need := func(attr string) string {
		s, err := cfg.RequireString(attr)
		if err != nil {
			errs = append(errs, err)
		} else if s == "" {
			errs = append(errs, attrErr(cfg.Path(attr), "must not be empty"))
		}
		return s
	}
	t.host = remote.Host{Name: name, Address: need("address"), User: "root", Port: 22}
	if port, set, err := cfg.Int("port"); err != nil {
		errs = append(errs, err)
	} else if set && (port < 1 || port > 65535) {
		errs = append(errs, attrErr(cfg.Path("port"), "%d is not a TCP port (1 to 65535)", port))
	} else if set {
		t.host.Port = int(port)
	}
	if cfg.Set("user") {
		t.host.User = need("user")
	}
	t.cfg.KnownHosts = need("known_hosts")
	if t.cfg.KnownHosts != "" && !filepath.IsAbs(t.cfg.KnownHosts) {
		errs = append(errs, attrErr(cfg.Path("known_hosts"), "%q is not an absolute path", t.cfg.KnownHosts))
	}
	if cfg.Set("identity_file") {
		key := need("identity_file")
		if key != "" && !filepath.IsAbs(key) {
			errs = append(errs, attrErr(cfg.Path("identity_file"), "%q is not an absolute path", key))
		}
		t.cfg.KeyFiles = []string{key}
	}
	agent, err := cfg.Bool("agent", false)
	if err != nil {
		errs = append(errs, err)
	}
	t.cfg.Agent = agent
	// Unset, each is 0: remote's defaults (10s; 15s and 3).
	for attr, d := range map[string]*time.Duration{"connect_timeout": &t.cfg.ConnectTimeout, "keepalive_interval": &t.cfg.KeepAliveInterval} {
		if *d, err = cfg.Duration(attr, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if n, set, err := cfg.Int("keepalive_count_max"); err != nil {
		errs = append(errs, err)
	} else if set && (n < 1 || n > 1000) {
		errs = append(errs, attrErr(cfg.Path("keepalive_count_max"), "%d is not a number of probes (1 to 1000)", n))
	} else {
		t.cfg.KeepAliveMax = int(n)
	}
	if len(errs) == 0 && len(t.cfg.KeyFiles) == 0 && !t.cfg.Agent {
		errs = append(errs, attrErr(cfg.Path("identity_file"), "no way to log in: give identity_file, or agent = true to use the ssh-agent at SSH_AUTH_SOCK"))
	}
	return t, joinErrors(errs...)
}

// poolKey tells apart the ways of reaching hosts (the keys and the
// timeouts): one Pool each.
func (t hostTarget) poolKey() string {
	return fmt.Sprintf("%q %q %t %s %s %d", t.cfg.KnownHosts, strings.Join(t.cfg.KeyFiles, "\x00"), t.cfg.Agent,
		t.cfg.ConnectTimeout, t.cfg.KeepAliveInterval, t.cfg.KeepAliveMax)
}

// hostSession holds the connections to hosts of a run or a preview: a
// remote.Pool per way of reaching them (known_hosts, key, agent), each
// keeping one connection per host, made on first use.
type hostSession struct {
	mu     sync.Mutex
	pools  map[string]*remote.Pool
	closed bool
	// ids caches the owner and group names looked up on hosts (hostID),
	// by host, database and name.
	ids map[string]idAnswer
}

// idAnswer is what a host said of a name: its id, or why there is none.
type idAnswer struct {
	id  int
	err error
}

// pool returns the pool for t, made on first use.
func (s *hostSession) pool(t hostTarget) (*remote.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("the run's connections to hosts are closed")
	}
	if s.pools == nil {
		s.pools = map[string]*remote.Pool{}
	}
	p := s.pools[t.poolKey()]
	if p == nil {
		p = remote.NewPool(t.cfg)
		s.pools[t.poolKey()] = p
	}
	return p, nil
}

// close closes every pool; later uses fail.
func (s *hostSession) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	keys := make([]string, 0, len(s.pools))
	for k := range s.pools {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		errs = append(errs, s.pools[k].Close())
	}
	s.pools = nil
	return errors.Join(errs...)
}

// stepHost is the host a step's Env is for (Env.On).
type stepHost struct {
	name string
	cfg  Config
}

// On returns a copy of e for a step that runs on a host: name is the
// host instance's address (host.web["a"]), cfg its evaluated block. The
// engine calls it, never looking into cfg; the kind finds the host with
// Env.Host.
func (e *Env) On(name string, cfg Config) *Env {
	c := *e
	c.host = &stepHost{name: name, cfg: cfg}
	return &c
}

// Host returns the address of the host the step is for (host.web["a"]),
// and false for a step that runs where rotplan runs.
func (e *Env) Host() (string, bool) {
	if e == nil || e.host == nil {
		return "", false
	}
	return e.host.name, true
}

// onHost runs fn with the connection to the step's host, made on first
// use and kept for the rest of the run. It must be called only when
// Env.Host says there is one.
func (e *Env) onHost(ctx context.Context, fn func(*remote.Conn) error) error {
	t, err := readHost(e.host.name, e.host.cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", e.host.name, err)
	}
	if e.hosts == nil {
		return fmt.Errorf("%s: this environment cannot reach hosts", e.host.name)
	}
	pool, err := e.hosts.pool(t)
	if err != nil {
		return err
	}
	return pool.Do(ctx, t.host, fn)
}

// hostID resolves a user (db "passwd") or group (db "group") on the
// host c is connected to: a numeric id as it is, a name as the host's name
// service says (remote.Conn.LookupID), asked once per host, name and run.
func (e *Env) hostID(ctx context.Context, c *remote.Conn, db, name string) (int, error) {
	if isDigits(name) {
		return parseID(name)
	}
	key := c.Host().String() + "\x00" + db + "\x00" + name
	s := e.hosts
	s.mu.Lock()
	a, ok := s.ids[key]
	s.mu.Unlock()
	if ok {
		return a.id, a.err
	}
	id, err := c.LookupID(ctx, db, name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err // not an answer: the next step asks again
	}
	s.mu.Lock()
	if s.ids == nil {
		s.ids = map[string]idAnswer{}
	}
	s.ids[key] = idAnswer{id, err}
	s.mu.Unlock()
	return id, err
}

// hostOwners resolves on the host c is connected to the owner and group
// a block names (names or ids; ownerSyntax checks their form), -1 for one
// the block leaves out. The errors point at the arguments.
func (e *Env) hostOwners(ctx context.Context, c *remote.Conn, cfg Config) (uid, gid int, err error) {
	uid, gid = -1, -1
	var errs []error
	for _, a := range []struct {
		attr, db string
		dst      *int
	}{{"owner", "passwd", &uid}, {"group", "group", &gid}} {
		if !cfg.Set(a.attr) {
			continue
		}
		name, err := cfg.RequireString(a.attr)
		if err == nil {
			*a.dst, err = e.hostID(ctx, c, a.db, name)
		}
		switch {
		case err == ErrUnknown:
			errs = append(errs, err)
		case err != nil:
			*a.dst = -1
			errs = append(errs, &AttrError{Path: cfg.Path(a.attr), Err: err})
		}
	}
	return uid, gid, joinErrors(errs...)
}

// Disconnect closes the connections to hosts the Env made. A run, a
// resume and a preview call it at their end; later steps on a host fail.
func (e *Env) Disconnect() error {
	if e.hosts == nil {
		return nil
	}
	return e.hosts.close()
}
