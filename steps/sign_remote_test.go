package steps

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/rotplan/rotplan/internal/remote"
	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sys/unix"
)

// keyWatcher records, from outside, the mode of every file that appears
// in a directory whose name starts with prefix: inotify tells it at once
// of a file created, renamed in or changed, and it lstats the file then.
type keyWatcher struct {
	fd     int
	dir    string
	prefix string
	mu     sync.Mutex
	modes  map[string][]seenMode
	done   chan struct{}
	quit   chan struct{}
}

func watchKeys(t *testing.T, dir, prefix string) *keyWatcher {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB|unix.IN_MODIFY); err != nil {
		t.Fatal(err)
	}
	w := &keyWatcher{fd: fd, dir: dir, prefix: prefix, modes: map[string][]seenMode{}, done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(w.done)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-w.quit:
				return
			default:
			}
			// Wakes up now and then to see whether to stop; an event
			// wakes it at once.
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 20)
			n, err := unix.Read(fd, buf)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if !strings.HasPrefix(name, w.prefix) {
					continue
				}
				if fi, err := os.Lstat(filepath.Join(dir, name)); err == nil {
					w.mu.Lock()
					_, gid, _ := fileOwner(fi)
					w.modes[name] = append(w.modes[name], seenMode{fi.Mode().Perm(), gid})
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

// seenMode is a file's permission bits and group at an instant.
type seenMode struct {
	perm os.FileMode
	gid  int
}

// stop ends the watch and returns what it saw.
func (w *keyWatcher) stop() map[string][]seenMode {
	close(w.quit)
	<-w.done
	unix.Close(w.fd)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.modes
}

// TestSignOnHost signs on a real sshd host of a testhosts bed against a
// real Vault, through the kind's methods: the key is made on the host,
// owner-only from its first instant, Vault gets only the CSR, the key
// matches the certificate, Done tells the states a killed run leaves, and
// rollbacks put back what was there.
func TestSignOnHost(t *testing.T) {
	v, f, env, logged := signHostBed(t)
	h := f.Hosts[0]
	base := vaultEnv(env.Log, adminConnection(v))
	ctx := context.Background()
	group, _, gid, err := testvault.Stranger()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.Home, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	keyPath, certPath := filepath.Join(dir, "server.key"), filepath.Join(dir, "server.pem")
	sign := &Sign{}
	cfgOf := func(more map[string]cty.Value) Config {
		vals := map[string]cty.Value{
			"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("sign-any"),
			"common_name": cty.StringVal("vault.prod.privsec.ch"), "ttl": cty.StringVal("24h"),
			"key_type": cty.StringVal("ec"), "key_bits": cty.NumberIntVal(384),
			"key_path": cty.StringVal(keyPath), "certificate_path": cty.StringVal(certPath),
			"key_mode": cty.StringVal("0640"), "group": cty.StringVal(group),
		}
		for k, val := range more {
			vals[k] = val
		}
		return testConfig(t, sign.Spec(), vals)
	}
	cfg := cfgOf(nil)
	if err := sign.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if err := sign.Prepare(ctx, env, cfg); err != nil {
		t.Fatal(err)
	}
	if err := sign.CheckHost(ctx, env, cfg); err != nil {
		t.Fatalf("CheckHost: %v", err)
	}
	pv, err := sign.Plan(ctx, env, cfg)
	if err != nil || len(pv.Problems) != 0 {
		t.Fatalf("preview: %+v, %v", pv, err)
	}
	if !strings.Contains(factValue(pv.Now, "key"), `generated on host.web["h1"]`) {
		t.Errorf("the preview does not say the key is generated on the host: %+v", pv.Now)
	}

	var traffic signTraffic
	traffic.watch(t, env)
	apply := func(cfg Config) (cty.Value, map[string]string, map[string]string) {
		t.Helper()
		snap, err := sign.Snapshot(ctx, env, cfg)
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		intent, err := sign.Intent(ctx, env, cfg)
		if err != nil || intent["key_path"] != keyPath || intent["group"] != group {
			t.Fatalf("Intent = %v, %v", intent, err)
		}
		watch := watchKeys(t, dir, ".server.key")
		out, err := sign.Apply(ctx, env, cfg)
		seen := watch.stop()
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if len(seen) == 0 {
			t.Error("the watcher saw no temporary key file")
		}
		// Owner-only from the first instant; the group's bit only once
		// the group is the final one.
		for name, modes := range seen {
			if modes[0].perm != 0o600 {
				t.Errorf("the temporary key %s was created %v", name, modes[0].perm)
			}
			for _, m := range modes {
				if m.perm&0o007 != 0 || (m.perm&0o070 != 0 && m.gid != gid) {
					t.Errorf("the temporary key %s was %v with group %d at some instant", name, m.perm, m.gid)
				}
			}
		}
		return out, snap, intent
	}

	// The first sign: no files before.
	out1, snap1, intent1 := apply(cfg)
	if snap1["key.existed"] != "false" || snap1["certificate.existed"] != "false" {
		t.Fatalf("snapshot %v", snap1)
	}
	keyPEM, certPEM := readPair(t, keyPath, certPath, 0o640, gid)
	if out1.GetAttr("fullchain").AsString() != string(certPEM) || !out1.GetAttr("private_key").IsNull() {
		t.Error("the certificate file is not the full chain, or the key is an output")
	}
	if len(traffic.requests) != 1 || !strings.Contains(traffic.requests[0], "CERTIFICATE REQUEST") {
		t.Fatalf("sign requests: %q", traffic.requests)
	}
	keyBody := pemBody(t, keyPEM)
	for what, text := range map[string]string{"the sign request": traffic.requests[0], "the sign response": traffic.responses[0],
		"the log": logged.String(), "the outputs": out1.GoString(), "the snapshot": mapText(snap1), "the intent": mapText(intent1)} {
		if strings.Contains(text, "PRIVATE KEY") || strings.Contains(text, keyBody) {
			t.Errorf("%s holds the private key", what)
		}
	}
	got, done, err := sign.Done(ctx, env, intent1)
	if err != nil || !done || !got.GetAttr("serial_number").RawEquals(out1.GetAttr("serial_number")) || got.GetAttr("fullchain").AsString() != string(certPEM) {
		t.Fatalf("Done after the sign: %t, %v; outputs %#v", done, err, got)
	}

	// current is read on the host: due when missing there, not due while
	// the certificate there has more than renew_before left.
	renew := func(current string) Condition {
		t.Helper()
		c, err := sign.Due(ctx, env, cfgOf(map[string]cty.Value{"renew_before": cty.StringVal("1h"), "current": cty.StringVal(current)}))
		if err != nil {
			t.Fatalf("Due: %v", err)
		}
		return c
	}
	if c := renew(certPath); !c.Set || c.Due {
		t.Errorf("Due with the certificate on the host: %+v; want not due", c)
	}
	if c := renew(certPath + ".missing"); !c.Set || !c.Due || !strings.Contains(c.Reason, "no certificate at") {
		t.Errorf("Due with no certificate on the host: %+v; want due", c)
	}
	_, err = sign.Due(ctx, env, cfgOf(map[string]cty.Value{"renew_before": cty.StringVal("1h"), "current": cty.StringVal(keyPath)}))
	wantErrContains(t, err, "holds no PEM certificate", `on host.web["h1"]`)

	// The second sign replaces the first pair, keeping copies.
	out2, snap2, intent2 := apply(cfg)
	if snap2["key.existed"] != "true" || snap2["certificate.existed"] != "true" {
		t.Fatalf("snapshot %v", snap2)
	}
	key2, cert2 := readPair(t, keyPath, certPath, 0o640, gid)
	if _, done, err := sign.Done(ctx, env, intent2); err != nil || !done {
		t.Fatalf("Done after the second sign: %t, %v", done, err)
	}

	// The states a run killed part way leaves, and what Done says of them.
	killed := []struct {
		name      string
		key, cert []byte
		wantDone  bool
	}{
		{"nothing installed: the old pair", keyPEM, certPEM, false},
		{"the new certificate, the old key", keyPEM, cert2, false},
		{"the new key, the old certificate", key2, certPEM, false},
		{"both installed", key2, cert2, true},
	}
	for _, k := range killed {
		t.Run("killed/"+k.name, func(t *testing.T) {
			putFile(t, keyPath, k.key, 0o640, 0, gid)
			putFile(t, certPath, k.cert, 0o644, 0, gid)
			if _, done, err := sign.Done(ctx, env, intent2); err != nil || done != k.wantDone {
				t.Errorf("Done = %t, %v; want %t", done, err, k.wantDone)
			}
		})
	}
	// A sign killed at each stage: Done says not done until both files
	// are in place; the resume's attempt signs anew and cleans up after
	// the killed one; the first snapshot's rollback restores the pair
	// from before.
	putFile(t, keyPath, key2, 0o640, 0, gid)
	putFile(t, certPath, cert2, 0o644, 0, gid)
	for _, k := range []struct {
		stage    string
		wantDone bool
	}{{"generated", false}, {"signed", false}, {"certificate", false}, {"installed", true}} {
		t.Run("kill at "+k.stage, func(t *testing.T) {
			snap, err := sign.Snapshot(ctx, env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			intent, _ := sign.Intent(ctx, env, cfg)
			errKilled := errors.New("killed")
			signStage = func(stage string) error {
				if stage == k.stage {
					return errKilled
				}
				return nil
			}
			_, err = sign.Apply(ctx, env, cfg)
			signStage = func(string) error { return nil }
			if !errors.Is(err, errKilled) {
				t.Fatalf("Apply: %v; want it killed", err)
			}
			if _, done, err := sign.Done(ctx, env, intent); err != nil || done != k.wantDone {
				t.Fatalf("Done = %t, %v; want %t", done, err, k.wantDone)
			}
			if !k.wantDone {
				if _, err := sign.Apply(ctx, env, cfg); err != nil {
					t.Fatalf("the resume's Apply: %v", err)
				}
				if _, done, err := sign.Done(ctx, env, intent); err != nil || !done {
					t.Fatalf("Done after the resume = %t, %v", done, err)
				}
			}
			if left := tempKeys(t, dir); len(left) != 0 {
				t.Errorf("temporary keys left: %q", left)
			}
			readPair(t, keyPath, certPath, 0o640, gid)
			if err := sign.Rollback(ctx, env, cfg, cty.UnknownVal(OutputType(sign)), snap); err == nil || !strings.Contains(err.Error(), "vault list") {
				t.Errorf("the rollback of a step whose serial was lost: %v; want how to find the certificate", err)
			}
			if k, c := readPair(t, keyPath, certPath, 0o640, gid); string(k) != string(key2) || string(c) != string(cert2) {
				t.Error("the rollback did not restore the pair from before")
			}
		})
	}

	// A run killed while it wrote the certificate leaves the write's
	// temporary file beside it (its rename never came); the resume's
	// attempt removes it, as it removes a temporary key.
	t.Run("killed while writing the certificate", func(t *testing.T) {
		snap, err := sign.Snapshot(ctx, env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		left := filepath.Join(dir, ".server.pem.rotplan-tmp-deadbeef0001")
		putFile(t, left, []byte("half a certificate\n"), 0o600, 0, 0)
		out, err := sign.Apply(ctx, env, cfg)
		if err != nil {
			t.Fatalf("the resume's Apply: %v", err)
		}
		if _, err := os.Lstat(left); !os.IsNotExist(err) {
			t.Errorf("the temporary certificate the killed write left is still there after the next sign: %v", err)
		}
		if err := sign.Rollback(ctx, env, cfg, out, snap); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		if k, c := readPair(t, keyPath, certPath, 0o640, gid); string(k) != string(key2) || string(c) != string(cert2) {
			t.Error("the rollback did not restore the pair from before")
		}
	})

	// A temporary key left by a run killed after openssl made it is
	// removed by the next attempt.
	leftover := filepath.Join(dir, ".server.key.rotplan-tmp-deadbeef0000")
	putFile(t, leftover, []byte("left\n"), 0o600, 0, 0)

	// Rolling back the second sign puts the first pair back and revokes
	// the second certificate; the first's rollback removes the files.
	if err := sign.Rollback(ctx, env, cfg, out2, snap2); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if k, c := readPair(t, keyPath, certPath, 0o640, gid); string(k) != string(keyPEM) || string(c) != string(certPEM) {
		t.Error("the rollback did not restore the first key and certificate")
	}
	if _, err := os.Lstat(leftover); !os.IsNotExist(err) {
		t.Errorf("the leftover temporary key is still there: %v", err)
	}
	if revokedAt(t, v, out2.GetAttr("serial_number").AsString()) == 0 {
		t.Error("the rollback did not revoke the second certificate")
	}
	if err := sign.Rollback(ctx, env, cfg, out1, snap1); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	for _, p := range []string{keyPath, certPath} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	wantNoKey(t, "the log", logged.String())

	// Where the files are for: a host; names must exist there.
	wantAttrErr(t, sign.CheckHost(ctx, vaultEnv(base.Log, adminConnection(v)), cfg), "key_path")
	noFiles := cfgOf(map[string]cty.Value{"key_path": cty.NullVal(cty.String), "certificate_path": cty.NullVal(cty.String),
		"key_mode": cty.NullVal(cty.String), "group": cty.NullVal(cty.String)})
	wantAttrErr(t, sign.CheckHost(ctx, env, noFiles), "key_path")
	err = sign.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"group": cty.StringVal("no-such-group-here")}))
	wantAttrErr(t, err, "group")
	wantErrContains(t, err, `no group "no-such-group-here" on`, h.Addr.String())
	wantAttrErr(t, sign.Validate(cfgOf(map[string]cty.Value{"key_mode": cty.StringVal("0644")})), "key_mode")
}

// tempKeys lists the temporary keys in dir.
func tempKeys(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	for _, name := range dirNames(t, dir) {
		if strings.HasPrefix(name, ".server.key.rotplan-tmp-") {
			names = append(names, name)
		}
	}
	return names
}

// signHostBed starts a Vault with the sign roles and a bed of one host,
// and returns an Env for steps on that host (host.web["h1"]) that reaches
// the Vault, connected from the bed's controller, and its log.
func signHostBed(t *testing.T) (*testvault.Vault, *testhosts.Fleet, *Env, *strings.Builder) {
	t.Helper()
	requireRoot(t, "the host bed needs network namespaces")
	v := testvault.StartT(t)
	signRoles(t, v)
	f := testhosts.Start(t, 1)
	base, logged := testEnv(t)
	env := onTestHost(t, f, vaultEnv(base.Log, adminConnection(v)))
	// The connection is made from the bed's controller, and kept.
	if err := f.Controller.Do(func() error { return env.onHost(context.Background(), func(*remote.Conn) error { return nil }) }); err != nil {
		t.Fatal(err)
	}
	return v, f, env, logged
}

// readPair reads the key and certificate files, checks their modes (the
// key's keyMode, the certificate's 0644) and group, and that the key is the
// certificate's. The key is never printed.
func readPair(t *testing.T, keyPath, certPath string, keyMode os.FileMode, gid int) (key, cert []byte) {
	t.Helper()
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{keyPath, keyMode}, {certPath, 0o644}} {
		fi, err := os.Lstat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		uid, fgid, _ := fileOwner(fi)
		if fi.Mode().Perm() != f.mode || uid != 0 || fgid != gid {
			t.Fatalf("%s: %v %d:%d, want %v 0:%d", f.path, fi.Mode().Perm(), uid, fgid, f.mode, gid)
		}
	}
	var err error
	if key, err = os.ReadFile(keyPath); err != nil {
		t.Fatal(err)
	}
	if cert, err = os.ReadFile(certPath); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		t.Fatal("the key is not the certificate's")
	}
	return key, cert
}

// putFile writes a file with a mode and owner, as a killed run may leave.
func putFile(t *testing.T, p string, content []byte, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// pemBody is a line from the middle of a PEM block's base64, which no
// text should hold.
func pemBody(t *testing.T, b []byte) string {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("not PEM")
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[1]
}

// factValue is the value of the fact named name, "" when there is none.
func factValue(facts []Fact, name string) string {
	for _, f := range facts {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// mapText writes a journaled map as text, for looking for a secret in it.
func mapText(m map[string]string) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String()
}

// TestSignOnHostKeyTypes: every key type and size a local sign makes is
// made on the host, and the host signs the CSR with it (openssl pkeyutl:
// PKCS #1 v1.5 with the digest's DigestInfo for RSA, the digest for EC,
// the whole request for Ed25519).
func TestSignOnHostKeyTypes(t *testing.T) {
	_, f, env, _ := signHostBed(t)
	h := f.Hosts[0]
	ctx := context.Background()
	sign := &Sign{}
	for _, k := range []struct {
		typ  string
		bits int
	}{{"ec", 256}, {"ec", 521}, {"rsa", 2048}, {"rsa", 3072}, {"ed25519", 0}} {
		t.Run(fmt.Sprintf("%s %d", k.typ, k.bits), func(t *testing.T) {
			dir := filepath.Join(h.Home, fmt.Sprintf("%s-%d", k.typ, k.bits))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			bits := cty.NumberIntVal(int64(k.bits))
			if k.bits == 0 {
				bits = cty.NullVal(cty.Number)
			}
			cfg := testConfig(t, sign.Spec(), map[string]cty.Value{
				"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("sign-any"),
				"common_name": cty.StringVal("vault.prod.privsec.ch"), "ttl": cty.StringVal("1h"),
				"alt_names": cty.ListVal([]cty.Value{cty.StringVal("vault.prod.privsec.ch")}),
				"ip_sans":   cty.ListVal([]cty.Value{cty.StringVal("127.0.0.1")}),
				"key_type":  cty.StringVal(k.typ), "key_bits": bits,
				"key_path": cty.StringVal(filepath.Join(dir, "k.pem")), "certificate_path": cty.StringVal(filepath.Join(dir, "c.pem")),
			})
			if err := sign.Prepare(ctx, env, cfg); err != nil {
				t.Fatal(err)
			}
			out, err := sign.Apply(ctx, env, cfg)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			key, cert := readPair(t, filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.pem"), 0o600, 0)
			if out.GetAttr("private_key_type").AsString() != k.typ || !strings.Contains(string(key), "PRIVATE KEY") {
				t.Errorf("private_key_type %s", out.GetAttr("private_key_type").AsString())
			}
			leaf := parseOne(t, string(cert))
			if err := (keySpec{typ: k.typ, bits: k.bits}).matches(leaf.PublicKey); err != nil {
				t.Error(err)
			}
			if len(leaf.IPAddresses) != 1 || leaf.Subject.CommonName != "vault.prod.privsec.ch" {
				t.Errorf("leaf %s, IPs %v", leaf.Subject, leaf.IPAddresses)
			}
		})
	}
}
