package testhosts

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// writeKeyPair generates an ed25519 key pair and writes the private key
// in OpenSSH's format to path (mode 0600) and the public key to path.pub
// (0644), with comment.
func writeKeyPair(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := writeFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := writeFile(path+".pub", []byte(authorizedLine(sshPub, comment)), 0o644); err != nil {
		return nil, err
	}
	return sshPub, nil
}

// authorizedLine is key as a line of an authorized_keys file (or a .pub
// file), with comment.
func authorizedLine(key ssh.PublicKey, comment string) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n") + " " + comment + "\n"
}

// KnownHostsLine returns the known_hosts line for a host at addr:port
// with key: the address alone for port 22, [address]:port otherwise, as
// OpenSSH writes it.
func KnownHostsLine(addr string, port int, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("[%s]:%d", addr, port))}, key) + "\n"
}

// writeFile writes data to path with mode, whatever the umask, replacing
// what was there.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// configPath rejects a path sshd and ssh would read differently from what
// it says: configuration values are split at white space and quotes, and
// AuthorizedKeysFile expands % tokens.
func configPath(path string) error {
	if strings.ContainsAny(path, " \t\n\"'%#\\") {
		return fmt.Errorf("testhosts: the bed's directory %q holds a character sshd's configuration would misread (white space, a quote, %%, # or a backslash)", path)
	}
	return nil
}

// directive is one keyword and value of an sshd_config or ssh_config.
type directive struct{ keyword, value string }

// configText renders directives, one a line after indent, below comment
// lines.
func configText(comment []string, indent string, ds []directive) string {
	var b strings.Builder
	for _, c := range comment {
		b.WriteString("# " + c + "\n")
	}
	for _, d := range ds {
		b.WriteString(indent + d.keyword + " " + d.value + "\n")
	}
	return b.String()
}

// sshdConfig is the configuration of host h's sshd.
func (f *Fleet) sshdConfig(h *Host) string {
	strict := "no"
	if f.StrictModes {
		strict = "yes"
	}
	return configText([]string{
		fmt.Sprintf("rotplan testhosts: host %s of bed %s (network namespace %s), run as", h.Name, f.Name, h.Netns),
		fmt.Sprintf("  ip netns exec %s %s -D -e -f %s", h.Netns, f.sshd, h.Config),
	}, "", []directive{
		{"ListenAddress", h.HostPort()},
		{"HostKey", h.HostKeyFile},
		{"PidFile", h.PIDFile},
		{"AuthorizedKeysFile", h.AuthorizedKeys},
		{"AuthorizedPrincipalsFile", "none"},
		{"PermitRootLogin", "prohibit-password"},
		{"AllowUsers", User},
		{"PubkeyAuthentication", "yes"},
		{"PasswordAuthentication", "no"},
		{"KbdInteractiveAuthentication", "no"},
		{"HostbasedAuthentication", "no"},
		{"UsePAM", "no"},
		{"StrictModes", strict},
		{"Subsystem", "sftp internal-sftp"},
		// A home of the host's own: sessions read its shell startup
		// files, not those of the machine's root.
		{"SetEnv", "HOME=" + h.Home},
		{"UseDNS", "no"},
		{"PrintMotd", "no"},
		{"PrintLastLog", "no"},
		{"X11Forwarding", "no"},
		{"LogLevel", "VERBOSE"},
	})
}

// sshConfig is the controller's ssh_config, for humans and tests.
func (f *Fleet) sshConfig() string {
	var b strings.Builder
	b.WriteString(configText([]string{
		fmt.Sprintf("rotplan testhosts: bed %s (subnet %s). ssh works from the controller's", f.Name, f.Subnet),
		"network namespace only, e.g.",
		fmt.Sprintf("  ip netns exec %s ssh -F %s %s", f.Controller.Netns, f.SSHConfig, f.Hosts[0].Name),
	}, "", nil))
	for _, h := range f.Hosts {
		b.WriteString("\nHost " + h.Name + "\n")
		b.WriteString(configText(nil, "    ", []directive{{"HostName", h.Addr.String()}, {"Port", strconv.Itoa(h.Port)}}))
	}
	b.WriteString("\nHost *\n")
	b.WriteString(configText(nil, "    ", []directive{
		{"User", User},
		{"Port", strconv.Itoa(f.Hosts[0].Port)},
		{"IdentityFile", f.ClientKey},
		{"IdentitiesOnly", "yes"},
		{"IdentityAgent", "none"},
		{"UserKnownHostsFile", f.KnownHosts},
		{"GlobalKnownHostsFile", "/dev/null"},
		{"StrictHostKeyChecking", "yes"},
		{"UpdateHostKeys", "no"},
		{"BatchMode", "yes"},
		{"ConnectTimeout", "10"},
	}))
	return b.String()
}

// writeHostFiles writes host h's key pair, authorized keys, sshd
// configuration, under h.Dir.
func (f *Fleet) writeHostFiles(h *Host) error {
	if err := os.MkdirAll(h.Home, 0o700); err != nil {
		return err
	}
	key, err := writeKeyPair(h.HostKeyFile, "root@"+h.Name)
	if err != nil {
		return fmt.Errorf("host key of %s: %w", h.Name, err)
	}
	h.HostKey = key
	if err := writeFile(h.AuthorizedKeys, []byte(authorizedLine(f.ClientPublicKey, "rotplan-testhosts-controller@"+f.Name)), 0o600); err != nil {
		return err
	}
	return writeFile(h.Config, []byte(f.sshdConfig(h)), 0o644)
}

// writeControllerFiles writes the controller's client key pair under
// dir/controller.
func (f *Fleet) writeControllerFiles() error {
	dir := filepath.Dir(f.ClientKey)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	key, err := writeKeyPair(f.ClientKey, "rotplan-testhosts-controller@"+f.Name)
	if err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	f.ClientPublicKey = key
	return nil
}

// writeKnownHosts writes the known_hosts file and the ssh_config, once
// every host key is known.
func (f *Fleet) writeKnownHosts() error {
	var b strings.Builder
	for _, h := range f.Hosts {
		b.WriteString(KnownHostsLine(h.Addr.String(), h.Port, h.HostKey))
	}
	if err := writeFile(f.KnownHosts, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return writeFile(f.SSHConfig, []byte(f.sshConfig()), 0o644)
}

// strictModesHold reports whether sshd's StrictModes check passes for the
// file at path read for uid: the file and every directory above it up to
// / are owned by uid or root and writable by nobody else.
func strictModesHold(path string, uid int) bool {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(p)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || (st.Uid != 0 && int(st.Uid) != uid) || fi.Mode().Perm()&0o022 != 0 {
			return false
		}
		if p == "/" {
			return true
		}
		p = filepath.Dir(p)
	}
}
