package testhosts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
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
	sleeper, err := startSleep(&f.Hosts[1].Namespace, nil)
	if err != nil {
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

	if pids := lockHolders(t, bedNumber(f.Name)); !slices.Contains(pids, os.Getpid()) {
		t.Fatalf("the lock of the running bed %s is held by %v, not this process (%d)", f.Name, pids, os.Getpid())
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
		if running(pid) {
			t.Errorf("sshd pid %d still runs", pid)
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
	if pids := lockHolders(t, bedNumber(f.Name)); slices.Contains(pids, os.Getpid()) {
		t.Errorf("the lock of %s is still held after Stop", f.Name)
	}
	if err := f.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestFailedStartLeavesNothing starts a bed whose sshd cannot run: the
// error says why, and nothing of the bed is left.
func TestFailedStartLeavesNothing(t *testing.T) {
	if err := Check(""); err != nil {
		Unavailable(t, err)
	}
	dir := t.TempDir()
	sshd := filepath.Join(dir, "sshd")
	if err := os.WriteFile(sshd, []byte("#!/bin/sh\necho 'no sshd here' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := StartFleet(ctx, Options{Hosts: 2, Sshd: sshd, Dir: filepath.Join(dir, "bed")})
	if err == nil {
		f.Stop()
		t.Fatal("StartFleet with an sshd that exits 1 succeeded")
	}
	for _, want := range []string{"sshd of h1 exited (exit status 1)", "no sshd here"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	bed := regexp.MustCompile(`bed (` + Prefix + `[0-9]+)`).FindStringSubmatch(err.Error())
	if bed == nil {
		t.Fatalf("error %q names no bed", err)
	}
	holders := lockHolders(t, bedNumber(bed[1]))
	if slices.Contains(holders, os.Getpid()) {
		t.Errorf("the lock of %s is still held", bed[1])
	}
	// Unless a test binary running beside this one took the number since.
	if left, err := bedNamespaces(bed[1] + "-"); err != nil || len(left) > 0 && len(holders) == 0 {
		t.Errorf("namespaces left: %v (%v)", left, err)
	}
}

// lockHolders returns the processes holding the flock of bed number x,
// from /proc/locks ("1: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF").
func lockHolders(t *testing.T, x int) []int {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(StateDir, Prefix+strconv.Itoa(x)+".lock"), &st); err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == file {
			pid, _ := strconv.Atoi(f[4])
			pids = append(pids, pid)
		}
	}
	return pids
}

// bedNumber is the X of bed rpth-X.
func bedNumber(bed string) int {
	x, _ := strconv.Atoi(strings.TrimPrefix(bed, Prefix))
	return x
}

// startSleep starts sleep 600 in ns (with attr when not nil instead of
// Command's) and returns once it runs there: until ip netns exec has
// switched namespaces and run sleep, a sweep or Stop would not find it.
func startSleep(ns *Namespace, attr *syscall.SysProcAttr) (*exec.Cmd, error) {
	cmd := ns.Command(context.Background(), "sleep", "600")
	if attr != nil {
		cmd.SysProcAttr = attr
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	comm := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "comm")
	for range 3000 {
		if b, err := os.ReadFile(comm); err == nil && string(b) == "sleep\n" {
			return cmd, nil
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("ip netns exec %s sleep 600 does not run sleep", ns.Netns)
}

// TestStaleBedIsSwept abandons a bed as a killed run would (lock released,
// nothing stopped) and checks that the next bed removes it, and leaves a
// live bed alone.
func TestStaleBedIsSwept(t *testing.T) {
	live := Start(t, 1)
	stale := Start(t, 1)
	sleeper, err := startSleep(&stale.Hosts[0].Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	slept := make(chan struct{})
	go func() { sleeper.Wait(); close(slept) }()
	if err := stale.lock.Close(); err != nil {
		t.Fatal(err)
	}
	stale.lock = nil

	f := Start(t, 1)
	if left, err := bedNamespaces(stale.Name + "-"); err != nil {
		t.Fatal(err)
	} else if len(left) > 0 && len(lockHolders(t, bedNumber(stale.Name))) == 0 {
		t.Errorf("namespaces of the stale bed %s left: %v", stale.Name, left)
	}
	waitGone(t, stale.Hosts[0].proc.Done(), "the stale bed's sshd")
	waitGone(t, slept, "the sleep in the stale bed's host")
	if err := f.Controller.banner(context.Background(), f.Hosts[0].HostPort()); err != nil {
		t.Errorf("the new bed's sshd: %v", err)
	}
	if err := live.Controller.banner(context.Background(), live.Hosts[0].HostPort()); err != nil {
		t.Errorf("the live bed %s was swept: %v", live.Name, err)
	}
}

// waitGone fails the test unless done is closed soon: a process that was
// killed is reaped within moments, one that was not runs on.
func waitGone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s still runs", what)
	}
}

// waitNoProcess waits until the process pid has exited (a zombie waiting
// for its new parent, init, to reap it counts as exited), failing the test
// when it runs on.
func waitNoProcess(t *testing.T, pid int, what string) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !running(pid) {
			return
		}
	}
	t.Errorf("%s (pid %d) still runs", what, pid)
}

// running reports whether the process pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// childEnv marks the test binary re-run by TestKilledRunIsSwept.
const childEnv = "ROTPLAN_TESTHOSTS_KILLED_CHILD"

// TestKilledRunIsSwept starts a bed in a child process, with a stray
// process in a host's namespace that nothing will stop (as an ssh session
// would leave), and kills the child with SIGKILL. Its sshd dies with it
// (Pdeathsig); its namespaces and the stray process stay, until the next
// bed starts and sweeps them.
func TestKilledRunIsSwept(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		killedChild()
		return
	}
	if err := Check(""); err != nil {
		Unavailable(t, err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestKilledRunIsSwept$", "-test.count=1")
	child.Env = append(os.Environ(), childEnv+"=1")
	var errOut bytes.Buffer
	child.Stderr = &errOut
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var bed string
	var sshd, stray int
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "bed %s sshd %d stray %d", &bed, &sshd, &stray); err != nil || serr != nil {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("the child said %q (%v, %v)\n%s", line, err, serr, errOut.String())
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	var f *Fleet
	t.Cleanup(func() {
		// Whatever happened below, nothing of the child's stays, its
		// directory included (unless a new bed of the same number has it).
		if err := sweep(context.Background(), ""); err != nil {
			t.Error(err)
		}
		if f == nil || f.Name != bed {
			os.RemoveAll(filepath.Join(StateDir, bed))
		}
	})

	waitNoProcess(t, sshd, "the killed run's sshd")
	// The namespaces and the stray process stay until a bed starts: this
	// test's, or one of a test binary running beside this one.
	if left, err := bedNamespaces(bed + "-"); err != nil {
		t.Fatal(err)
	} else if len(left) == 3 != running(stray) {
		t.Errorf("namespaces of the killed run's bed %v, stray process running %t: want both or neither", left, running(stray))
	}

	f = Start(t, 1)
	if left, err := bedNamespaces(bed + "-"); err != nil {
		t.Fatal(err)
	} else if len(left) > 0 && len(lockHolders(t, bedNumber(bed))) == 0 {
		t.Errorf("namespaces of the killed run's bed %s left: %v", bed, left)
	}
	waitNoProcess(t, stray, "the stray process of the killed run")
}

// killedChild is TestKilledRunIsSwept's child: it starts a bed and a stray
// process, says so on stdout, and waits to be killed.
func killedChild() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := StartFleet(ctx, Options{Hosts: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// No Pdeathsig: it outlives the child.
	stray, err := startSleep(&f.Hosts[0].Namespace, &syscall.SysProcAttr{Setsid: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("bed %s sshd %d stray %d\n", f.Name, f.Hosts[0].PID(), stray.Process.Pid)
	select {}
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
