package remote

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshdBin is Debian's OpenSSH server.
const sshdBin = "/usr/sbin/sshd"

// testSSHD is a real OpenSSH sshd a test started on loopback addresses,
// with a host key and a client key the test generated.
type testSSHD struct {
	dir        string
	port       int
	addrs      []string   // the loopback addresses it listens on, each a "host"
	hostKey    ssh.Signer // its host key
	keyFile    string     // the client's private key file
	knownHosts string     // a known_hosts file with hostKey for every address
	log        string     // its log (sshd -e), written as it goes
}

// startSSHD starts sshd on 127.0.0.1 and the given number of further
// loopback addresses (127.0.0.2, ...), all on one free port, logging in
// root with a key of the test's. It skips the test when sshd is missing
// or the test is not root (sshd needs root to change to the user).
func startSSHD(t testing.TB, hosts int) *testSSHD {
	t.Helper()
	if _, err := os.Stat(sshdBin); err != nil {
		t.Skipf("%s is missing (apt-get install openssh-server): the remote tests need a real OpenSSH server", sshdBin)
	}
	if os.Geteuid() != 0 {
		t.Skip("the remote tests start sshd, which must run as root")
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &testSSHD{dir: t.TempDir()}
	s.hostKey, _ = writeKey(t, filepath.Join(s.dir, "host_ed25519"))
	_, clientPub := writeKey(t, filepath.Join(s.dir, "client_ed25519"))
	s.keyFile = filepath.Join(s.dir, "client_ed25519")
	if err := os.WriteFile(filepath.Join(s.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	s.port = freePort(t)
	var listen []string
	for i := 1; i <= hosts; i++ {
		a := fmt.Sprintf("127.0.0.%d", i)
		s.addrs = append(s.addrs, a)
		listen = append(listen, "ListenAddress "+net.JoinHostPort(a, strconv.Itoa(s.port)))
	}
	s.knownHosts = s.writeKnownHosts(t, "known_hosts", s.hostKey.PublicKey())
	config := filepath.Join(s.dir, "sshd_config")
	// The SFTP server's umask is set to the usual 022 explicitly, so
	// that a create without a mode shows as 0644 whatever the test
	// process's umask.
	conf := strings.Join(append(listen,
		"HostKey "+filepath.Join(s.dir, "host_ed25519"),
		"PidFile none",
		"AuthorizedKeysFile "+filepath.Join(s.dir, "authorized_keys"),
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"LogLevel VERBOSE",
		"Subsystem sftp internal-sftp -u 022",
	), "\n") + "\n"
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.log = filepath.Join(s.dir, "sshd.log")
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(sshdBin, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test binary die without its cleanups (a timeout), sshd
	// dies with it rather than listen on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("sshd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range s.addrs {
		for {
			c, err := net.Dial("tcp", net.JoinHostPort(a, strconv.Itoa(s.port)))
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(s.log)
				t.Fatalf("sshd does not listen on %s:%d: %v\n%s", a, s.port, err, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return s
}

// writeKeyFile writes a new ed25519 private key in OpenSSH's format,
// owner-only, and returns it.
func writeKey(t testing.TB, path string) (ssh.Signer, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, signer.PublicKey()
}

// writeKnownHosts writes a known_hosts file naming every address of s
// with key.
func (s *testSSHD) writeKnownHosts(t testing.TB, name string, key ssh.PublicKey) string {
	t.Helper()
	var addrs []string
	for _, a := range s.addrs {
		addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(s.port)))
	}
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(knownhosts.Line(addrs, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// host is the i-th address of s as a Host, logging in as root.
func (s *testSSHD) host(i int) Host {
	return Host{Name: fmt.Sprintf("host%d", i+1), Address: s.addrs[i], Port: s.port, User: "root"}
}

// config reaches s with the client key.
func (s *testSSHD) config() Config {
	return Config{KnownHosts: s.knownHosts, KeyFiles: []string{s.keyFile}}
}

// dial connects to the first host of s, closing the connection when the
// test ends.
func (s *testSSHD) dial(t testing.TB) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), s.config(), s.host(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// logLines returns the lines of sshd's log holding substr.
func (s *testSSHD) logLines(t testing.TB, substr string) []string {
	t.Helper()
	f, err := os.Open(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// freePort returns a TCP port free on loopback just now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
