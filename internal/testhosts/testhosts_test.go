package testhosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// requireClients ends the test unless OpenSSH's ssh and sftp are there
// (see Unavailable).
func requireClients(t *testing.T) {
	t.Helper()
	for _, c := range []string{"ssh", "sftp"} {
		if _, err := exec.LookPath(c); err != nil {
			Unavailable(t, fmt.Errorf("the OpenSSH client %s is not installed (apt-get install openssh-client): %w", c, err))
		}
	}
}

// sshTo returns ssh from the controller's namespace with the bed's
// ssh_config, then args (options, a host, a command).
func sshTo(ctx context.Context, f *Fleet, args ...string) *exec.Cmd {
	return f.Controller.Command(ctx, "ssh", append([]string{"-F", f.SSHConfig}, args...)...)
}

// run runs cmd and returns its standard output and error output.
func run(cmd *exec.Cmd) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// exitCode is the exit status of a command that ran, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// wantNetns logs in to h (by name in the ssh_config, plus extra options)
// and checks that the command runs in h's namespace.
func wantNetns(t *testing.T, ctx context.Context, f *Fleet, target string, h *Host, extra ...string) {
	t.Helper()
	args := append(extra, target, "ip netns identify")
	out, errOut, err := run(sshTo(ctx, f, args...))
	if err != nil {
		t.Fatalf("ssh %s from %s: %v\n%s", target, f.Controller.Netns, err, errOut)
	}
	if got := strings.TrimSpace(out); got != h.Netns {
		t.Fatalf("ssh %s ran in namespace %q, want %q (stderr %q)", target, got, h.Netns, errOut)
	}
}

func TestFleet(t *testing.T) {
	f := Start(t, 3)
	requireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("ssh logs in to every host with the bed's key and known_hosts", func(t *testing.T) {
		for _, h := range f.Hosts {
			t.Run(h.Name, func(t *testing.T) {
				t.Parallel()
				wantNetns(t, ctx, f, h.Name, h)
			})
		}
		// By address, as rotplan will: the known_hosts entry is the address.
		t.Run("by address", func(t *testing.T) {
			t.Parallel()
			h := f.Hosts[0]
			wantNetns(t, ctx, f, User+"@"+h.Addr.String(), h)
		})
	})

	t.Run("StrictModes refuses an authorized keys file others can write", func(t *testing.T) {
		if !f.StrictModes {
			t.Fatalf("StrictModes is off for the bed in %s, want on", f.Dir)
		}
		h := f.Hosts[2]
		// World-writable: Debian's sshd lets a group write when the group
		// holds only the owner (its user-group-modes patch), as root's does.
		if err := os.Chmod(h.AuthorizedKeys, 0o602); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := run(sshTo(ctx, f, h.Name, "true"))
		if err := os.Chmod(h.AuthorizedKeys, 0o600); err != nil {
			t.Fatal(err)
		}
		if code := exitCode(err); code != 255 || !strings.Contains(errOut, "Permission denied (publickey)") {
			t.Errorf("ssh with a world-writable authorized_keys: exit %d (%v), %q; want 255 and permission denied", code, err, errOut)
		}
		if log := tail(h.Log, 20); !strings.Contains(log, "bad ownership or modes for file "+h.AuthorizedKeys) {
			t.Errorf("sshd's log does not say why:\n%s", log)
		}
		wantNetns(t, ctx, f, h.Name, h)
	})

	t.Run("routes lead nowhere but the subnet and loopback", func(t *testing.T) {
		for _, ns := range append([]*Namespace{f.Controller}, &f.Hosts[0].Namespace) {
			rs, err := ns.routes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var main []string
			for _, r := range rs {
				if r.Table == "" {
					main = append(main, r.String())
				}
			}
			want := []string{f.Subnet.String() + " dev eth0"}
			if strings.Join(main, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: main table %q, want %q (every route: %v)", ns.Netns, main, want, rs)
			}
			if err := ns.checkIsolated(ctx, f.Subnet); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("a host key that does not match is refused before the command runs", func(t *testing.T) {
		h1, h2 := f.Hosts[0], f.Hosts[1]
		dir := t.TempDir()
		for _, tc := range []struct {
			name, knownHosts, want string
		}{
			{"another host's key", KnownHostsLine(h1.Addr.String(), h1.Port, h2.HostKey), "REMOTE HOST IDENTIFICATION HAS CHANGED"},
			{"no entry", "", "No ED25519 host key is known for " + h1.Addr.String()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				known := filepath.Join(dir, "known_hosts")
				if err := os.WriteFile(known, []byte(tc.knownHosts), 0o644); err != nil {
					t.Fatal(err)
				}
				marker := filepath.Join(dir, "ran")
				_, errOut, err := run(sshTo(ctx, f, "-o", "UserKnownHostsFile="+known, h1.Name, "touch "+marker))
				if code := exitCode(err); code != 255 {
					t.Errorf("ssh exit code %d (%v), want 255\n%s", code, err, errOut)
				}
				if !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "Host key verification failed") {
					t.Errorf("ssh said %q, want %q and host key verification failed", errOut, tc.want)
				}
				if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the command ran on %s despite the mismatch (%v)", h1.Name, err)
				}
			})
		}
	})

	t.Run("sftp puts and gets files", func(t *testing.T) {
		h := f.Hosts[2]
		dir := t.TempDir()
		local, back, remote := filepath.Join(dir, "up.txt"), filepath.Join(dir, "back.txt"), filepath.Join(h.Dir, "uploaded.txt")
		content := "written over sftp to " + h.Netns + "\n"
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		batch := filepath.Join(dir, "batch")
		script := fmt.Sprintf("put %s %s\nchmod 600 %s\nget %s %s\n", local, remote, remote, remote, back)
		if err := os.WriteFile(batch, []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := run(f.Controller.Command(ctx, "sftp", "-F", f.SSHConfig, "-b", batch, h.Name))
		if err != nil {
			t.Fatalf("sftp: %v\n%s%s", err, out, errOut)
		}
		for _, p := range []string{remote, back} {
			got, err := os.ReadFile(p)
			if err != nil || string(got) != content {
				t.Errorf("%s: %q, %v; want %q", p, got, err, content)
			}
		}
		if fi, err := os.Stat(remote); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s after chmod 600: %v, %v", remote, fi.Mode(), err)
		}
	})

	t.Run("a cut host cannot be reached until its link is restored", func(t *testing.T) {
		h1, h2 := f.Hosts[0], f.Hosts[1]
		if err := h2.Cut(ctx); err != nil {
			t.Fatal(err)
		}
		restored := false
		defer func() {
			if !restored {
				_ = h2.Restore(ctx)
			}
		}()
		_, errOut, err := run(sshTo(ctx, f, "-o", "ConnectTimeout=1", h2.Name, "true"))
		if code := exitCode(err); code != 255 {
			t.Errorf("ssh to the cut %s: exit code %d (%v), want 255\n%s", h2.Name, code, err, errOut)
		}
		if !strings.Contains(errOut, "timed out") && !strings.Contains(errOut, "No route to host") {
			t.Errorf("ssh to the cut %s said %q, want a timeout or no route", h2.Name, errOut)
		}
		wantNetns(t, ctx, f, h1.Name, h1) // the others still answer
		if err := h2.Restore(ctx); err != nil {
			t.Fatal(err)
		}
		restored = true
		wantNetns(t, ctx, f, h2.Name, h2)
	})

	t.Run("Dial from the controller reaches sshd and resolves no names", func(t *testing.T) {
		c, err := f.Controller.Dial(ctx, "tcp", f.Hosts[0].HostPort())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if _, err := f.Controller.Dial(ctx, "tcp", "localhost:22"); err == nil {
			t.Error("Dial to a name succeeded, want an error")
		}
	})
}

// TestStopLeavesNothing checks that after Stop no namespace, process or
// link of the bed is left, and its lock is free; on a port other than 22,
// which the known_hosts entries name.
func TestStopLeavesNothing(t *testing.T) {
	f := start(t, Options{Hosts: 2, Port: 2222})
	requireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	known, err := os.ReadFile(f.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[" + f.Hosts[0].Addr.String() + "]:2222 ssh-ed25519 "; !strings.HasPrefix(string(known), want) {
		t.Errorf("known_hosts begins %q, want %q", known, want)
	}
	wantNetns(t, ctx, f, f.Hosts[0].Name, f.Hosts[0])

	// A process of a host's other than sshd, as a session or a test leaves.
	sleeper := f.Hosts[1].Command(context.Background(), "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	inodes := map[uint64]bool{}
	for _, n := range f.Namespaces() {
		ino, err := netnsInode(n)
		if err != nil {
			t.Fatal(err)
		}
		inodes[ino] = true
	}
	var sshds []int
	for _, h := range f.Hosts {
		sshds = append(sshds, h.PID())
	}

	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Wait(); err == nil {
		t.Error("the sleep in a host's namespace exited 0 after Stop, want killed")
	}
	if left, err := bedNamespaces(f.Name + "-"); err != nil || len(left) > 0 {
		t.Errorf("namespaces left: %v (%v)", left, err)
	}
	if pids, err := pidsIn(inodes); err != nil || len(pids) > 0 {
		t.Errorf("processes left in the bed's namespaces: %v (%v)", pids, err)
	}
	for _, pid := range sshds {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("sshd pid %d: kill 0: %v, want no such process", pid, err)
		}
	}
	if out, err := exec.Command("pgrep", "-a", "-f", f.Dir).Output(); err == nil {
		t.Errorf("processes naming %s left:\n%s", f.Dir, out)
	}
	links, err := outputIP(ctx, "", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(links), f.Name+"-") {
		t.Errorf("links of %s in the root namespace:\n%s", f.Name, links)
	}
	x, _ := strconv.Atoi(strings.TrimPrefix(f.Name, Prefix))
	lock, err := tryLock(x)
	if err != nil || lock == nil {
		t.Fatalf("the lock of %s is still held after Stop (%v)", f.Name, err)
	}
	lock.Close()
	if err := f.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStaleBedIsSwept abandons a bed as a killed run would (lock released,
// nothing stopped) and checks that the next bed removes it.
func TestStaleBedIsSwept(t *testing.T) {
	stale := Start(t, 1)
	sleeper := stale.Hosts[0].Command(context.Background(), "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	if err := stale.lock.Close(); err != nil {
		t.Fatal(err)
	}
	stale.lock = nil

	f := Start(t, 1)
	if left, err := bedNamespaces(stale.Name + "-"); err != nil {
		t.Fatal(err)
	} else if f.Name != stale.Name && len(left) > 0 {
		t.Errorf("namespaces of the stale bed %s left: %v", stale.Name, left)
	}
	select {
	case <-stale.Hosts[0].proc.done:
	default:
		t.Errorf("the stale bed's sshd (pid %d) still runs", stale.Hosts[0].PID())
	}
	if err := sleeper.Wait(); err == nil {
		t.Error("the sleep in the stale bed exited 0, want killed")
	}
}

// TestEightHosts measures a bed of 8 hosts (logged, never asserted) and
// logs in to every host at once.
func TestEightHosts(t *testing.T) {
	begin := time.Now()
	f := Start(t, 8)
	up := time.Since(begin)
	requireClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := parallel(len(f.Hosts), func(i int) error {
		h := f.Hosts[i]
		out, errOut, err := run(sshTo(ctx, f, h.Name, "ip netns identify"))
		if err != nil || strings.TrimSpace(out) != h.Netns {
			return fmt.Errorf("ssh %s: %q, %v\n%s", h.Name, out, err, errOut)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("8 hosts: start %s, stop %s", up.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}

func TestKnownHostsLine(t *testing.T) {
	key := mustKey(t)
	for _, tc := range []struct {
		port int
		want string
	}{
		{22, "10.231.5.11 ssh-ed25519 "},
		{2222, "[10.231.5.11]:2222 ssh-ed25519 "},
	} {
		t.Run(strconv.Itoa(tc.port), func(t *testing.T) {
			if got := KnownHostsLine("10.231.5.11", tc.port, key); !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "\n") {
				t.Errorf("got %q, want %q...", got, tc.want)
			}
		})
	}
}

func mustKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	k, err := writeKeyPair(filepath.Join(t.TempDir(), "k"), "test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIsolatedRoute(t *testing.T) {
	subnet := netip.MustParsePrefix("10.231.5.0/24")
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	for _, tc := range []struct {
		r    route
		want bool
	}{
		{route{Dst: "10.231.5.0/24", Dev: "eth0"}, true},
		{route{Type: "local", Dst: "10.231.5.2", Dev: "eth0", Table: "local"}, true},
		{route{Type: "broadcast", Dst: "10.231.5.255", Dev: "eth0", Table: "local"}, true},
		{route{Type: "local", Dst: "127.0.0.0/8", Dev: "lo", Table: "local"}, true},
		{route{Type: "local", Dst: "127.0.0.1", Dev: "lo", Table: "local"}, true},
		{route{Dst: "default", Gateway: "10.231.5.1", Dev: "eth0"}, false},
		{route{Dst: "default", Dev: "eth0"}, false},
		{route{Dst: "10.0.0.0/8", Dev: "eth0"}, false},
		{route{Dst: "192.0.2.0/24", Gateway: "10.231.5.1", Dev: "eth0"}, false},
		{route{Dst: "10.231.5.0/24", Dev: "eth1"}, false},
		{route{Dst: "fe80::/64", Dev: "eth0"}, false},
		{route{Type: "local", Dst: "::1", Dev: "lo", Table: "local"}, false},
	} {
		t.Run(tc.r.String(), func(t *testing.T) {
			if got := isolatedRoute(tc.r, subnet, loopback); got != tc.want {
				t.Errorf("isolatedRoute(%s) = %t, want %t", tc.r, got, tc.want)
			}
		})
	}
}
