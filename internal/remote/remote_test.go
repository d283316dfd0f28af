package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// TestHostKeyRefused: a host whose key known_hosts does not hold, or holds
// another key for, is refused before any login, and the error names the
// host, the key offered and the file.
func TestHostKeyRefused(t *testing.T) {
	s := startSSHD(t, 1)
	other, _ := writeKey(t, filepath.Join(s.dir, "other_ed25519"))
	offered := ssh.FingerprintSHA256(s.hostKey.PublicKey())
	empty := filepath.Join(s.dir, "known_hosts_empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		knownHosts string
		want       []string
		mismatch   bool
	}{
		{name: "mismatch", knownHosts: s.writeKnownHosts(t, "known_hosts_other", other.PublicKey()), mismatch: true,
			want: []string{"host1", "127.0.0.1", "ssh-ed25519", offered, ssh.FingerprintSHA256(other.PublicKey()), "known_hosts_other"}},
		{name: "unknown host", knownHosts: empty,
			want: []string{"host1", "127.0.0.1", "ssh-ed25519", offered, "not in known_hosts", "known_hosts_empty"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := s.config()
			cfg.KnownHosts = c.knownHosts
			p := NewPool(cfg)
			defer p.Close()
			called := false
			err := p.Do(context.Background(), s.host(0), func(*Conn) error { called = true; return nil })
			var hk *HostKeyError
			if !errors.As(err, &hk) {
				t.Fatalf("got %v, want a *HostKeyError", err)
			}
			if called || (len(hk.Known) > 0) != c.mismatch {
				t.Errorf("called %v, known %v", called, hk.Known)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not name %q: %v", w, err)
				}
			}
		})
	}
	if got := s.logLines(t, "Accepted publickey"); len(got) > 0 {
		t.Errorf("a refused host was logged in to: %q", got)
	}
}

// TestWriteFileAtomicReplace: a reader of the file, looping while it is
// replaced many times, only ever reads one whole version, and one who
// had the old file open keeps reading the old file.
func TestWriteFileAtomicReplace(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "cert.pem")
	versions := [][]byte{bytes.Repeat([]byte("a"), 100<<10), bytes.Repeat([]byte("b"), 70<<10)}
	if err := c.WriteFile(ctx, target, versions[0], 0o644, -1, -1); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	var reads, torn atomic.Int64
	const writes = 30
	writeWhileLooking(t, c, target, versions, 0o644, -1, -1, writes, func() {
		b, err := os.ReadFile(target)
		reads.Add(1)
		if err != nil || (!bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1])) {
			torn.Add(1)
		}
	})
	t.Logf("%d reads during %d writes", reads.Load(), writes)
	if torn.Load() > 0 || reads.Load() == 0 {
		t.Errorf("%d of %d reads saw a missing or partial file", torn.Load(), reads.Load())
	}
	head := make([]byte, 4)
	if _, err := old.Read(head); err != nil || string(head) != "aaaa" {
		t.Errorf("the old file, open before the writes, reads %q (%v): it was written in place", head, err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"cert.pem"}) {
		t.Errorf("the directory holds %q", got)
	}
}

// TestWriteFileModeOwner: the file gets exactly the mode and owner asked
// for, whatever the server's umask and what it replaces, and nothing is
// left beside it.
func TestWriteFileModeOwner(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	_, uid, gid, err := testvault.Stranger()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		existing         bool
		mode             fs.FileMode
		uid, gid         int
		wantUID, wantGID int
	}{
		{name: "new file given away", mode: 0o640, uid: uid, gid: gid, wantUID: uid, wantGID: gid},
		{name: "replaces root's file", existing: true, mode: 0o440, uid: uid, gid: gid, wantUID: uid, wantGID: gid},
		{name: "group only", mode: 0o640, uid: -1, gid: gid, wantUID: 0, wantGID: gid},
		{name: "owner left as created", existing: true, mode: 0o604, uid: -1, gid: -1, wantUID: 0, wantGID: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "server.key")
			if tc.existing {
				if err := os.WriteFile(target, []byte("old, and longer than the new content"), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.WriteFile(context.Background(), target, []byte("new\n"), tc.mode, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			checkFile(t, target, "new\n", tc.mode, tc.wantUID, tc.wantGID)
			if got := dirNames(t, dir); !slices.Equal(got, []string{"server.key"}) {
				t.Errorf("the directory holds %q", got)
			}
		})
	}
}

// ownerOnly is the check that a temporary file grants nothing to group or
// others.
func ownerOnly(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is %v", filepath.Base(path), fi.Mode())
	}
	return nil
}

// TestTempFileNeverReadable: the temporary file is owner-only from the
// instant the SFTP open creates it until its final owner and mode are set,
// on a server whose umask would make a new file 0644; the same check
// catches a write that creates it with the server's default mode.
func TestTempFileNeverReadable(t *testing.T) {
	s := startSSHD(t, 1)
	_, uid, gid, err := testvault.Stranger()
	if err != nil {
		t.Fatal(err)
	}
	// observe writes a key through c and returns what the check found at
	// each stage before the final mode.
	observe := func(t *testing.T, c *Conn) map[string]error {
		seen := map[string]error{}
		c.hook = func(stage, tmp string) { seen[stage] = ownerOnly(tmp) }
		target := filepath.Join(t.TempDir(), "server.key")
		if err := c.WriteFile(context.Background(), target, []byte("key\n"), 0o644, uid, gid); err != nil {
			t.Fatal(err)
		}
		checkFile(t, target, "key\n", 0o644, uid, gid)
		return seen
	}
	t.Run("at every stage", func(t *testing.T) {
		seen := observe(t, s.dial(t))
		for _, stage := range []string{"created", "written", "synced", "owned"} {
			err, ok := seen[stage]
			if !ok || err != nil {
				t.Errorf("%s: seen %v, %v", stage, ok, err)
			}
		}
	})
	t.Run("the broken variant is caught", func(t *testing.T) {
		c := s.dial(t)
		c.rawCreates = true
		seen := observe(t, c)
		if err := seen["created"]; err == nil || !strings.Contains(err.Error(), "-rw-r--r--") {
			t.Errorf("a temporary file created with the server's default mode passed the check: %v", err)
		}
	})
	t.Run("polled", func(t *testing.T) {
		c := s.dial(t)
		dir := t.TempDir()
		target := filepath.Join(dir, "server.key")
		var seen atomic.Int64
		writeWhileLooking(t, c, target, [][]byte{[]byte("key\n")}, 0o600, uid, gid, 30, func() {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !strings.Contains(e.Name(), tempInfix) {
					continue
				}
				seen.Add(1)
				if err := ownerOnly(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Error(err)
				}
			}
		})
		t.Logf("the poller saw a temporary file %d times", seen.Load())
	})
}

// TestSymlinkRefused: a symbolic link on the way to the file, or at the
// file, is refused, and nothing is written where it points.
func TestSymlinkRefused(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "other"), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "other"), filepath.Join(real, "pointer")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"a directory on the way", filepath.Join(dir, "link", "server.key"), "link is a symbolic link"},
		{"the file itself", filepath.Join(real, "pointer"), "pointer is a symbolic link"},
		{"a relative path", "real/server.key", "not an absolute, clean path"},
		{"a path with ..", filepath.Join(dir, "link") + "/../real/server.key", "not an absolute, clean path"},
		{"a missing directory", filepath.Join(dir, "missing", "server.key"), "missing does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.WriteFile(ctx, tc.path, []byte("key"), 0o600, -1, -1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if err := c.Remove(ctx, filepath.Join(dir, "link", "other")); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("removing through a link: %v", err)
	}
	if got := dirNames(t, real); !slices.Equal(got, []string{"other", "pointer"}) {
		t.Errorf("the linked directory holds %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(real, "other")); string(b) != "other" {
		t.Errorf("the file a link points to was changed: %q", b)
	}
}

// countingDialer counts the TCP connections open at once.
type countingDialer struct {
	mu         sync.Mutex
	open, most int
	dials      map[string]int
}

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open++
	d.most = max(d.most, d.open)
	if d.dials == nil {
		d.dials = map[string]int{}
	}
	d.dials[addr]++
	return &countedConn{Conn: c, d: d}, nil
}

type countedConn struct {
	net.Conn
	d    *countingDialer
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.d.mu.Lock()
		c.d.open--
		c.d.mu.Unlock()
	})
	return c.Conn.Close()
}

// TestPool: operations on one host share one connection (sshd logs one
// login), and with more hosts than MaxHosts at most MaxHosts are connected
// at once, every host still served.
func TestPool(t *testing.T) {
	s := startSSHD(t, 4)
	ctx := context.Background()
	dir := t.TempDir()
	work := func(p *Pool, h Host, i int) error {
		return p.Do(ctx, h, func(c *Conn) error {
			if _, err := c.Run(ctx, []string{"true"}); err != nil {
				return err
			}
			return c.WriteFile(ctx, filepath.Join(dir, fmt.Sprintf("%s-%d", h.Address, i)), []byte("x"), 0o644, -1, -1)
		})
	}
	run := func(t *testing.T, p *Pool, hosts, per int) {
		var wg sync.WaitGroup
		for h := range hosts {
			for i := range per {
				wg.Go(func() {
					if err := work(p, s.host(h), i); err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
	}
	t.Run("one connection per host", func(t *testing.T) {
		before := len(s.logLines(t, "Accepted publickey"))
		p := NewPool(s.config())
		d := &countingDialer{}
		p.dial = d.dial
		run(t, p, 1, 20)
		p.Close()
		if got := len(s.logLines(t, "Accepted publickey")) - before; got != 1 || d.dials[s.host(0).addr()] != 1 {
			t.Errorf("20 operations on one host made %d logins and %d connections, want 1", got, d.dials[s.host(0).addr()])
		}
	})
	t.Run("bounded hosts", func(t *testing.T) {
		cfg := s.config()
		cfg.MaxHosts = 2
		p := NewPool(cfg)
		d := &countingDialer{}
		p.dial = d.dial
		run(t, p, 4, 5)
		p.Close()
		t.Logf("connections per address: %v", d.dials)
		if d.most > 2 || len(d.dials) != 4 || d.open != 0 {
			t.Errorf("%d connections open at once (%d hosts reached, %d left open), want at most 2, 4 and 0", d.most, len(d.dials), d.open)
		}
	})
	t.Run("a lost connection is dialled again", func(t *testing.T) {
		p := NewPool(s.config())
		defer p.Close()
		d := &countingDialer{}
		p.dial = d.dial
		// Closing the TCP connection under the SSH client is what a
		// host cut off looks like once the keepalive gives up.
		if err := p.Do(ctx, s.host(0), func(c *Conn) error {
			c.client.Conn.Close()
			<-c.done
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := work(p, s.host(0), 0); err != nil || d.dials[s.host(0).addr()] != 2 {
			t.Errorf("after the connection was lost: %v, %d connections", err, d.dials[s.host(0).addr()])
		}
	})
	t.Run("a closed pool refuses", func(t *testing.T) {
		p := NewPool(s.config())
		p.Close()
		if err := work(p, s.host(0), 0); !errors.Is(err, errClosed) {
			t.Errorf("got %v", err)
		}
	})
}

// TestRun: exit status, output, quoting, the output bound, cancellation.
func TestRun(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	t.Run("exit status", func(t *testing.T) {
		res, err := c.Run(ctx, []string{"sh", "-c", "echo out; echo err >&2; exit 3"})
		var exit *ExitError
		if !errors.As(err, &exit) || exit.Status != 3 || res.ExitStatus != 3 || !strings.Contains(err.Error(), "status 3: err") {
			t.Errorf("got %v, %+v", err, exit)
		}
		if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
			t.Errorf("stdout %q, stderr %q", res.Stdout, res.Stderr)
		}
		if res, err := c.Run(ctx, []string{"true"}); err != nil || res.ExitStatus != 0 {
			t.Errorf("true: %v, %d", err, res.ExitStatus)
		}
	})
	t.Run("quoting", func(t *testing.T) {
		words := []string{"a b", "$HOME", "it's", "`id`", "x;y", "", `back\slash`, "*", "new\nline", "'", "\"q\""}
		res, err := c.Run(ctx, append([]string{"printf", `%s|`}, words...))
		if want := strings.Join(words, "|") + "|"; err != nil || string(res.Stdout) != want {
			t.Errorf("printed %q (%v), want %q", res.Stdout, err, want)
		}
	})
	t.Run("output bound", func(t *testing.T) {
		res, err := c.Run(ctx, []string{"head", "-c", strconv.Itoa(OutputLimit + 1000), "/dev/zero"})
		if err != nil || len(res.Stdout) != OutputLimit || !res.StdoutTruncated || res.StderrTruncated {
			t.Errorf("kept %d bytes, truncated %v (%v)", len(res.Stdout), res.StdoutTruncated, err)
		}
	})
	t.Run("cancellation kills the command", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "pid")
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := c.Run(ctx, []string{"sh", "-c", `echo $$ > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 600`, "sh", pidFile})
			done <- err
		}()
		pid := 0
		waitFor(t, "the command to start", func() bool {
			b, err := os.ReadFile(pidFile)
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return err == nil && pid > 0
		})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
		waitFor(t, "the remote command to die", func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || isZombie(pid)
		})
	})
}

// TestSecretsNotInErrors: no error holds the content being written or a
// private key.
func TestSecretsNotInErrors(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	// A private key made now, its DER cut short: a PEM block that looks
	// like a key and parses as none. marker is a line of it.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der[:len(der)-8]})
	marker := strings.Split(string(secret), "\n")[1]
	dir := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	keyBody := strings.Split(string(keyPEM), "\n")[1] // a line of the key itself
	readable := filepath.Join(dir, "readable_key")
	if err := os.WriteFile(readable, keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage_key")
	if err := os.WriteFile(garbage, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	unauthorized := filepath.Join(dir, "unauthorized_key")
	writeKey(t, unauthorized)
	unauthorizedPEM, _ := os.ReadFile(unauthorized)

	var errs []error
	errs = append(errs,
		c.WriteFile(ctx, filepath.Join(dir, "missing", "k"), secret, 0o600, -1, -1),
		c.WriteFile(ctx, filepath.Join(dir, "link"), secret, 0o600, -1, -1),
		c.WriteFile(ctx, dir, secret, 0o600, -1, -1),
	)
	for _, key := range []string{readable, garbage, unauthorized} {
		cfg := s.config()
		cfg.KeyFiles = []string{key}
		_, err := Dial(ctx, cfg, s.host(0))
		errs = append(errs, err)
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d did not fail", i)
			continue
		}
		msg := err.Error()
		for _, secret := range []string{marker, keyBody, strings.Split(string(unauthorizedPEM), "\n")[1]} {
			if strings.Contains(msg, secret) {
				t.Errorf("case %d's error holds a secret: %v", i, err)
			}
		}
		t.Logf("case %d: %v", i, err)
	}
}

// TestBackupRestoreRemove: a copy kept on the host puts the file back with
// its mode and owner; the copy and its directory are owner-only.
func TestBackupRestoreRemove(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	_, uid, gid, err := testvault.Stranger()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "server.key")
	if err := c.WriteFile(ctx, target, []byte("old key\n"), 0o640, uid, gid); err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(dir, "backups")
	saved, err := c.Backup(ctx, target, backups)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, saved.Path, "old key\n", 0o600, 0, 0)
	if fi, err := os.Stat(backups); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the backup directory is %v (%v), want 0700 from its creation", fi.Mode(), err)
	}
	again, err := c.Backup(ctx, target, backups)
	if err != nil || again.Path != saved.Path+".1" {
		t.Errorf("a second copy went to %q (%v)", again.Path, err)
	}
	if err := c.WriteFile(ctx, target, []byte("new key\n"), 0o600, -1, -1); err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(ctx, saved, target); err != nil {
		t.Fatal(err)
	}
	checkFile(t, target, "old key\n", 0o640, uid, gid)

	damaged := saved
	damaged.SHA256 = strings.Repeat("0", 64)
	if err := c.Restore(ctx, damaged, target); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("restoring from a copy that does not match: %v", err)
	}

	leftover := filepath.Join(dir, ".server.key"+tempInfix+"0123")
	if err := os.WriteFile(leftover, []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	removed, err := c.RemoveLeftovers(ctx, target)
	if err != nil || !slices.Equal(removed, []string{leftover}) {
		t.Errorf("removed %q (%v)", removed, err)
	}
	if err := c.Remove(ctx, target); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing it again: %v", err)
	}
	if err := c.Remove(ctx, backups); err == nil {
		t.Error("a directory was removed")
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"backups"}) {
		t.Errorf("the directory holds %q", got)
	}
}

// writeWhileLooking writes target the given number of times, taking the
// versions in turn, while look runs over and over in another goroutine.
func writeWhileLooking(t *testing.T, c *Conn, target string, versions [][]byte, mode fs.FileMode, uid, gid, writes int, look func()) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				look()
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for i := 1; i <= writes; i++ {
		if err := c.WriteFile(context.Background(), target, versions[i%len(versions)], mode, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFile checks content, mode and owner of the file at path.
func checkFile(t *testing.T, path, content string, mode fs.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s is %v %d:%d, want %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != content {
		t.Errorf("%s holds %q (%v), want %q", path, b, err, content)
	}
}

// dirNames lists a directory.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// waitFor polls cond until it holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isZombie reports whether pid has exited and awaits its parent's wait.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// BenchmarkWriteFile measures one atomic replace of a 4 KiB file over a
// loopback connection, directory sync included.
func BenchmarkWriteFile(b *testing.B) {
	s := startSSHD(b, 1)
	c, err := Dial(context.Background(), s.config(), s.host(0))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	target := filepath.Join(b.TempDir(), "server.key")
	data := bytes.Repeat([]byte("k"), 4<<10)
	for b.Loop() {
		if err := c.WriteFile(context.Background(), target, data, 0o600, -1, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// silencedConn drops what is written once silenced, as a link cut off
// does: the host never hears, so never answers.
type silencedConn struct {
	net.Conn
	silenced atomic.Bool
}

func (c *silencedConn) Write(b []byte) (int, error) {
	if c.silenced.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// TestKeepAlive: a connection whose host stops answering is closed after
// KeepAliveMax unanswered probes, and an operation waiting on it fails
// instead of waiting for ever.
func TestKeepAlive(t *testing.T) {
	s := startSSHD(t, 1)
	cfg := s.config()
	cfg.KeepAliveInterval, cfg.KeepAliveMax = 50*time.Millisecond, 2
	var link *silencedConn
	c, err := dial(context.Background(), cfg.withDefaults(), s.host(0), func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		link = &silencedConn{Conn: conn}
		return link, err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Run(context.Background(), []string{"true"}); err != nil {
		t.Fatal(err)
	}
	link.silenced.Store(true)
	if _, err := c.Run(context.Background(), []string{"sleep", "600"}); err == nil {
		t.Error("a command on a host that stopped answering succeeded")
	}
	// The connection's end is noticed by a goroutine of its own.
	waitFor(t, "the connection to be closed", c.broken)
}

// silencedPool returns a pool that dials with cfg through a silencedConn,
// closed at the test's end; *link is the last connection it made.
func silencedPool(t *testing.T, cfg Config) (p *Pool, link **silencedConn) {
	t.Helper()
	link = new(*silencedConn)
	p = NewPool(cfg)
	p.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		*link = &silencedConn{Conn: conn}
		return *link, err
	}
	t.Cleanup(func() { p.Close() })
	return p, link
}

// TestKeepAliveSFTP: a file operation on a host that stops answering
// fails once the keepalive probes go unanswered, as a command does: the
// SFTP client's end must not wait for the host to close its side.
func TestKeepAliveSFTP(t *testing.T) {
	s := startSSHD(t, 1)
	cfg := s.config()
	cfg.KeepAliveInterval, cfg.KeepAliveMax = 50*time.Millisecond, 2
	p, link := silencedPool(t, cfg)
	dir := t.TempDir()
	var c *Conn
	if err := p.Do(context.Background(), s.host(0), func(conn *Conn) error {
		c = conn
		_, err := c.Stat(context.Background(), dir)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	(*link).silenced.Store(true)
	failed := make(chan error, 1)
	go func() {
		failed <- p.Do(context.Background(), s.host(0), func(c *Conn) error {
			return c.WriteFile(context.Background(), filepath.Join(dir, "server.key"), []byte("k"), 0o600, -1, -1)
		})
	}()
	var werr error
	waitFor(t, "the write to fail", func() bool {
		select {
		case werr = <-failed:
			return true
		default:
			return false
		}
	})
	if werr == nil {
		t.Fatal("a write to a host that stopped answering succeeded")
	}
	if !strings.Contains(werr.Error(), "stopped answering (no answer to 2 keepalive probes") {
		t.Errorf("the write's error does not say the host stopped answering: %v", werr)
	}
	waitFor(t, "the connection to be closed", c.broken)
}

// TestLostAfterRename: a host that stops answering once the new file is
// renamed into place (before its directory is flushed) fails the write
// with an error that says the file may be in place, so that the step is
// undone; one lost before the rename says nothing of the kind.
func TestLostAfterRename(t *testing.T) {
	s := startSSHD(t, 1)
	for _, stage := range []string{"owned", "renamed"} {
		t.Run(stage, func(t *testing.T) {
			cfg := s.config()
			cfg.KeepAliveInterval, cfg.KeepAliveMax = 50*time.Millisecond, 2
			p, link := silencedPool(t, cfg)
			target := filepath.Join(t.TempDir(), "server.key")
			err := p.Do(context.Background(), s.host(0), func(c *Conn) error {
				c.hook = func(at, _ string) {
					if at == stage {
						(*link).silenced.Store(true)
					}
				}
				return c.WriteFile(context.Background(), target, []byte("new"), 0o600, -1, -1)
			})
			var lost *LostError
			if !errors.As(err, &lost) {
				t.Fatalf("the write on a host lost after %s: %v, want a LostError", stage, err)
			}
			_, statErr := os.Stat(target)
			if got, want := MayBeInPlace(err), stage == "renamed"; got != want || (statErr == nil) != want {
				t.Errorf("lost after %s: MayBeInPlace %t, want %t; the file: %v", stage, got, want, statErr)
			}
		})
	}
}

// TestAgent: the keys of the ssh-agent at $SSH_AUTH_SOCK log in, and an
// agent asked for but not there is a clear error.
func TestAgent(t *testing.T) {
	s := startSSHD(t, 1)
	pem, err := os.ReadFile(s.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParseRawPrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	cfg := s.config()
	cfg.KeyFiles, cfg.Agent = nil, true
	t.Setenv("SSH_AUTH_SOCK", sock)
	c, err := Dial(context.Background(), cfg, s.host(0))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := Dial(context.Background(), cfg, s.host(0)); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK is not set") {
		t.Errorf("without an agent: %v", err)
	}
}

// TestBackupsIntoNewDirConcurrently backs up several files of one
// directory at once, over one connection, into a backup directory none of
// them finds: as the write steps of one host do when they start together.
// Every backup gets its copy, whichever of them created the directory
// (OpenSSH's SFTP server answers a mkdir of a directory that exists with a
// bare failure, not "exists").
func TestBackupsIntoNewDirConcurrently(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	const files = 6
	for round := range 10 {
		dir := t.TempDir()
		var targets []string
		for i := range files {
			target := filepath.Join(dir, fmt.Sprintf("f%d.pem", i))
			if err := os.WriteFile(target, []byte(target), 0o644); err != nil {
				t.Fatal(err)
			}
			targets = append(targets, target)
		}
		backups := filepath.Join(dir, ".rotplan-backups")
		errs := make([]error, files)
		var wg sync.WaitGroup
		for i, target := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.Backup(ctx, target, backups)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, file %d: %v", round, i, err)
			}
		}
		if t.Failed() {
			return
		}
		if got := len(dirNames(t, backups)); got != files {
			t.Errorf("round %d: %d copies, want %d", round, got, files)
		}
	}
}
