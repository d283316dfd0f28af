package testhosts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// netnsDir is where ip netns keeps its named namespaces (bind mounts).
const netnsDir = "/run/netns"

// Namespace is a network namespace of a bed: the controller's or a host's.
type Namespace struct {
	Netns string     // its name under /run/netns, e.g. rpth-17-h1
	Addr  netip.Addr // its address on the bed's bridge (eth0)

	bridge string // the namespace holding the bridge; Netns is also the name of its port there
}

// IPBinary returns the ip command (iproute2): "ip" in PATH, else
// /usr/sbin/ip or /sbin/ip (when PATH lacks the sbin directories).
func IPBinary() (string, error) {
	if p, err := exec.LookPath("ip"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip"} {
		if executable(p) {
			return p, nil
		}
	}
	return "", errors.New("the ip command (iproute2) is not installed")
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Command returns a command that runs name with args inside the namespace
// (ip netns exec). The command gets SIGKILL when the thread that started
// it dies, so none outlives the harness.
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	ip, err := IPBinary()
	if err != nil {
		ip = "ip" // cmd.Start reports it missing
	}
	cmd := exec.CommandContext(ctx, ip, append([]string{"netns", "exec", ns.Netns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Do runs fn on an OS thread switched into the namespace and returns its
// error. Sockets fn creates belong to the namespace for their whole life;
// goroutines fn starts do not run in it. fn must not start processes (use
// [Namespace.Command]): the thread may end after fn, and a child's
// Pdeathsig fires when the thread that started it ends.
func (ns *Namespace) Do(fn func() error) error {
	return doIn(filepath.Join(netnsDir, ns.Netns), fn)
}

// doIn runs fn on a locked thread inside the network namespace bound at
// path. When the thread cannot be switched back it stays locked, so that
// the runtime ends it with the goroutine rather than reuse it.
func doIn(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		err = fn()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Dial connects from the namespace to address, an IP literal and port
// ("10.231.17.11:22"): no name is resolved, since a resolver would query
// from outside the namespace.
func (ns *Namespace) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("testhosts: dial from %s: %q is not an IP address and port: %w", ns.Netns, address, err)
	}
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Cut takes the namespace's link down at the bridge, as if its cable were
// pulled at the switch: the namespace keeps its address and its processes,
// but nothing reaches it or leaves it through the bridge until
// [Namespace.Restore]. Connections to it are not reset: their packets are
// lost, so clients see timeouts (or no route, once the controller's ARP
// entry has expired), as with a real host cut off.
func (ns *Namespace) Cut(ctx context.Context) error {
	return runIP(ctx, ns.bridge, "", "link", "set", ns.Netns, "down")
}

// Restore brings the namespace's link at the bridge up again after
// [Namespace.Cut].
func (ns *Namespace) Restore(ctx context.Context) error {
	return runIP(ctx, ns.bridge, "", "link", "set", ns.Netns, "up")
}

// route is one route as ip -j route prints it.
type route struct {
	Type    string `json:"type"`
	Dst     string `json:"dst"`
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
	Table   string `json:"table"`
}

func (r route) String() string {
	s := r.Dst
	if r.Type != "" {
		s = r.Type + " " + s
	}
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	s += " dev " + r.Dev
	if r.Table != "" {
		s += " table " + r.Table
	}
	return s
}

// routes lists every route of every table in the namespace, IPv4 then
// IPv6.
func (ns *Namespace) routes(ctx context.Context) ([]route, error) {
	var all []route
	for _, family := range []string{"-4", "-6"} {
		out, err := outputIP(ctx, ns.Netns, family, "-j", "route", "show", "table", "all")
		if err != nil {
			return nil, err
		}
		var rs []route
		if len(bytes.TrimSpace(out)) > 0 {
			if err := json.Unmarshal(out, &rs); err != nil {
				return nil, fmt.Errorf("ip -j route in %s: %w", ns.Netns, err)
			}
		}
		all = append(all, rs...)
	}
	return all, nil
}

// checkIsolated returns an error unless every route of the namespace is
// for loopback or for the bed's subnet on eth0: no default route, no
// gateway, no IPv6, so that nothing can be sent outside the bed.
func (ns *Namespace) checkIsolated(ctx context.Context, subnet netip.Prefix) error {
	rs, err := ns.routes(ctx)
	if err != nil {
		return err
	}
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	var bad []string
	for _, r := range rs {
		if !isolatedRoute(r, subnet, loopback) {
			bad = append(bad, r.String())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("namespace %s has routes leading outside the bed's subnet %s and loopback: %s", ns.Netns, subnet, strings.Join(bad, "; "))
	}
	return nil
}

func isolatedRoute(r route, subnet, loopback netip.Prefix) bool {
	if r.Gateway != "" || r.Dst == "default" {
		return false
	}
	p, err := netip.ParsePrefix(r.Dst)
	if err != nil {
		a, aerr := netip.ParseAddr(r.Dst)
		if aerr != nil {
			return false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch r.Dev {
	case "lo":
		return p.Addr().Is4() && loopback.Contains(p.Addr()) && p.Bits() >= loopback.Bits()
	case "eth0":
		return p.Addr().Is4() && subnet.Contains(p.Addr()) && p.Bits() >= subnet.Bits()
	}
	return false
}

// runIP runs ip with args, inside the namespace netns when it is not empty
// (ip -n), with input on its standard input (for -b -).
func runIP(ctx context.Context, netns, input string, args ...string) error {
	_, err := ipCommand(ctx, netns, input, args...)
	return err
}

// outputIP is runIP returning the standard output.
func outputIP(ctx context.Context, netns string, args ...string) ([]byte, error) {
	return ipCommand(ctx, netns, "", args...)
}

func ipCommand(ctx context.Context, netns, input string, args ...string) ([]byte, error) {
	ip, err := IPBinary()
	if err != nil {
		return nil, err
	}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, ip, args...)
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if input != "" {
			msg += " (batch: " + strings.Join(strings.Split(strings.TrimSpace(input), "\n"), "; ") + ")"
		}
		return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// netnsInode returns the inode of the namespace bound at /run/netns/name,
// which /proc/PID/ns/net of every process in it names ("net:[INODE]").
func netnsInode(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pidsIn returns, per namespace inode, the processes in that network
// namespace (as ip netns pids does), leaving out this process.
func pidsIn(inodes map[uint64]bool) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		var ino uint64
		if _, err := fmt.Sscanf(link, "net:[%d]", &ino); err == nil && inodes[ino] {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// bedNamespaces lists the namespaces under /run/netns named with prefix.
func bedNamespaces(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// removeNamespaces kills every process left in the named namespaces
// (SIGKILL) and deletes them; the kernel then destroys their interfaces,
// veths included. Namespaces already gone are no error.
func removeNamespaces(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	inodes := map[uint64]bool{}
	for _, n := range names {
		if ino, err := netnsInode(n); err == nil {
			inodes[ino] = true
		}
	}
	pids, err := pidsIn(inodes)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	var batch strings.Builder
	for _, n := range names {
		fmt.Fprintf(&batch, "netns del %s\n", n)
	}
	// -force: go on after a namespace that is gone already.
	err = runIP(ctx, "", batch.String(), "-force", "-b", "-")
	var left []string
	for _, n := range names {
		if _, serr := os.Lstat(filepath.Join(netnsDir, n)); serr == nil {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("deleting namespaces %s: %v", strings.Join(left, ", "), err)
	}
	return nil
}
