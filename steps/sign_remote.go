package steps

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// What a sign does when its step has `on`: the key is generated on that
// host, by openssl(1) run over the SSH connection, and never leaves it.
// openssl writes it into a temporary file beside key_path that mktemp(1)
// created owner-only (umask 077 besides), and prints only its public half;
// rotplan makes the CSR (the same one as for a local sign: the names are
// rotplan's) and has the host sign it with the key (openssl pkeyutl, the
// CSR's digest in, the signature out), sends the CSR to MOUNT/sign/ROLE,
// writes the certificate (leaf and issuing CA) at certificate_path with
// the remote atomic write, and renames the key into place, owner and mode
// set before the rename (remote.Conn.Install). Vault sees the CSR alone;
// the key's bytes are in no request, journal record, log line, error or
// command output rotplan reads. A host needs openssl, mktemp and base64
// (Debian's openssl and coreutils).
//
// Resume: the intent names the files, their modes and owners, the common
// name and the key; Done finds the step done when the certificate at
// certificate_path is for the common name and for the key at key_path
// (whose public half openssl prints there), both as the step leaves them,
// and the certificate is none of the copies the snapshot kept (the files
// the step replaced): a run killed part way leaves the old pair, or a new
// certificate with the old key, and perhaps a temporary key or a
// temporary certificate whose write never reached its rename; the step
// then runs again, and removes those first. Rollback restores both files from those copies (or removes them)
// and revokes the certificate as a local sign's does.

// signStage is a test hook, called as a sign on a host passes each stage
// ("generated": the temporary key is there; "signed": Vault signed;
// "certificate": the certificate is in place, the key not yet;
// "installed": both are). An error ends Apply there as a kill would: what
// it left on the host stays.
var signStage = func(stage string) error { return nil }

// signFiles are where a sign on a host puts the key and the certificate.
type signFiles struct {
	key, cert         string
	keyMode, certMode os.FileMode
}

// signFileArgs are the arguments that only a sign on a host takes.
var signFileArgs = []string{"key_path", "certificate_path", "key_mode", "certificate_mode", "owner", "group"}

// parseSignFiles reads key_path, certificate_path and their modes; set
// reports whether the block gives any of the file arguments.
func parseSignFiles(cfg Config) (f signFiles, set bool, err error) {
	for _, a := range signFileArgs {
		set = set || cfg.Set(a)
	}
	if !set {
		return f, false, nil
	}
	var errs []error
	abs := func(attr string) string {
		if !cfg.Set(attr) {
			errs = append(errs, attrErr(cfg.Path(attr), "a sign on a host needs key_path and certificate_path"))
			return ""
		}
		p, err := cfg.RequireString(attr)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !path.IsAbs(p) || path.Clean(p) != p || p == "/":
			errs = append(errs, attrErr(cfg.Path(attr), "%q is not an absolute, clean path to a file: a file on a host is named from its root", p))
		}
		return p
	}
	f.key, f.cert = abs("key_path"), abs("certificate_path")
	if f.key != "" && f.key == f.cert {
		errs = append(errs, attrErr(cfg.Path("certificate_path"), "the certificate and the key need files of their own"))
	}
	mode := func(attr string, def os.FileMode, secret bool) os.FileMode {
		if !cfg.Set(attr) {
			return def
		}
		s, err := cfg.RequireString(attr)
		if err != nil {
			errs = append(errs, err)
			return def
		}
		m, err := parseMode(s)
		switch {
		case err != nil:
			errs = append(errs, &AttrError{Path: cfg.Path(attr), Err: err})
		case secret && m&0o007 != 0:
			errs = append(errs, attrErr(cfg.Path(attr), "%s would let every user on the host read or change the private key: give no permission to others, as in \"0600\" or \"0640\"", formatMode(m)))
		}
		return m
	}
	f.keyMode = mode("key_mode", 0o600, true)
	f.certMode = mode("certificate_mode", 0o644, false)
	errs = append(errs, ownerSyntax(cfg))
	return f, true, joinErrors(errs...)
}

// signOnHost reads the file arguments of a sign for where it runs: on a
// host they are required, elsewhere refused.
func signOnHost(env *Env, cfg Config) (f signFiles, onHost bool, err error) {
	f, set, err := parseSignFiles(cfg)
	_, onHost = env.Host()
	switch {
	case onHost && !set:
		return f, true, attrErr(cfg.Path("key_path"), "a sign on a host generates its key there and keeps it there: give key_path and certificate_path, the files it goes to")
	case !onHost && set:
		for _, a := range signFileArgs {
			if cfg.Set(a) {
				return f, false, attrErr(cfg.Path(a), "only a sign on a host (with on) takes %s: without on, the key is an output (private_key) for a write to put where it belongs", a)
			}
		}
	}
	return f, onHost, err
}

// keyGenArgs are openssl genpkey's arguments for the key k: the types and
// sizes a local sign generates.
func (k keySpec) genpkeyArgs() []string {
	switch k.typ {
	case "rsa":
		return []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:" + strconv.Itoa(k.bits)}
	case "ec":
		return []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-" + strconv.Itoa(k.bits), "-pkeyopt", "ec_param_enc:named_curve"}
	case "ed25519":
		return []string{"-algorithm", "ED25519"}
	}
	panic(fmt.Sprintf("steps: generating a key of type %q", k.typ))
}

// genKeyScript makes the key on the host: a temporary file from the
// template $1, created owner-only by mktemp (and umask 077 for anything
// openssl creates), filled by openssl genpkey (arguments $2...), whose
// standard output goes nowhere; it prints the file's path, then the key's
// public half. The file is removed when anything fails.
const genKeyScript = `umask 077
t=$(mktemp -- "$1") || exit 1
shift
openssl genpkey "$@" -out "$t" >/dev/null || { rm -f -- "$t"; exit 1; }
printf '%s\n' "$t"
openssl pkey -in "$t" -pubout || { rm -f -- "$t"; exit 1; }`

// generateOnHost generates the key k for keyPath on the host and returns
// the temporary file that holds it and its public half.
func generateOnHost(ctx context.Context, c *remote.Conn, keyPath string, k keySpec) (string, crypto.PublicKey, error) {
	argv := append([]string{"sh", "-c", genKeyScript, "rotplan-genkey", remote.TempPattern(keyPath)}, k.genpkeyArgs()...)
	res, err := c.Run(ctx, argv)
	if err != nil {
		return "", nil, fmt.Errorf("generating the %s key on %s: %w", k, c.Host(), err)
	}
	tmp, rest, _ := strings.Cut(string(res.Stdout), "\n")
	pub, err := parsePublicKey([]byte(rest))
	if err == nil {
		err = k.matches(pub)
	}
	if err != nil {
		return tmp, nil, fmt.Errorf("generating the %s key on %s: %w", k, c.Host(), err)
	}
	return tmp, pub, nil
}

// hostPublicKey is the public half of the key at p on the host, as openssl
// prints it there: the key itself never leaves.
func hostPublicKey(ctx context.Context, c *remote.Conn, p string) (crypto.PublicKey, error) {
	res, err := c.Run(ctx, []string{"openssl", "pkey", "-in", p, "-pubout"})
	if err != nil {
		return nil, err
	}
	return parsePublicKey(res.Stdout)
}

// parsePublicKey reads the one PEM public key openssl printed. What else
// it printed is not shown: it has no business being there.
func parsePublicKey(b []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("openssl did not print one PEM public key")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// matches reports a public key of another type or size than k.
func (k keySpec) matches(pub crypto.PublicKey) error {
	typ, bits := "", 0
	switch p := pub.(type) {
	case *rsa.PublicKey:
		typ, bits = "rsa", p.N.BitLen()
	case *ecdsa.PublicKey:
		typ, bits = "ec", p.Curve.Params().BitSize
	case ed25519.PublicKey:
		typ = "ed25519"
	}
	if typ != k.typ || bits != k.bits {
		return fmt.Errorf("the key is %s, not %s", keySpec{typ: typ, bits: bits}, k)
	}
	return nil
}

// hostSigner signs with the key in the file key on the host: the data goes
// there, the signature comes back.
type hostSigner struct {
	ctx context.Context
	c   *remote.Conn
	key string
	pub crypto.PublicKey
}

// Public implements crypto.Signer.
func (s hostSigner) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer with openssl pkeyutl on the host: an RSA
// key signs the digest as PKCS #1 v1.5 with its DigestInfo, an EC key signs
// the digest (ASN.1 signature, as Go's), an Ed25519 key the whole message.
func (s hostSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	args := []string{"-sign", "-inkey", s.key}
	switch s.pub.(type) {
	case *rsa.PublicKey:
		if _, pss := opts.(*rsa.PSSOptions); pss {
			return nil, errors.New("signing with PSS on a host is not supported")
		}
		name := map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384", crypto.SHA512: "sha512"}[opts.HashFunc()]
		if name == "" {
			return nil, fmt.Errorf("signing a %v digest on a host is not supported", opts.HashFunc())
		}
		args = append(args, "-pkeyopt", "digest:"+name)
	case ed25519.PublicKey:
		args = append(args, "-rawin")
	}
	res, err := s.c.Run(s.ctx, append([]string{"sh", "-c", signScript, "rotplan-sign", base64.StdEncoding.EncodeToString(digest)}, args...))
	if err != nil {
		return nil, fmt.Errorf("signing the CSR with the key on %s: %w", s.c.Host(), err)
	}
	return res.Stdout, nil
}

// signScript signs the data $1 (base64) with openssl pkeyutl and the
// arguments after it. The data goes through a file, not a pipe: openssl
// signs Ed25519 in one shot and needs its size. It is the CSR's digest or
// body, nothing secret.
const signScript = `d=$1; shift
m=$(mktemp) || exit 1
trap 'rm -f -- "$m"' EXIT
printf '%s' "$d" | base64 -d > "$m" && openssl pkeyutl -in "$m" "$@"`

// certificateContent is what a sign on a host writes at certificate_path:
// the certificate and the issuing CA, as servers load them.
func (c issuedCertificate) fileContent() []byte {
	return []byte(c.certificate + c.issuingCA)
}

// checkSignRemote is Sign.CheckHost's look at the host: openssl is there,
// the directories are, the files are regular files or absent, the owner
// and group exist there.
func checkSignRemote(ctx context.Context, env *Env, cfg Config, f signFiles) error {
	var errs []error
	err := env.onHost(ctx, func(c *remote.Conn) error {
		for _, program := range []string{"openssl", "mktemp", "base64"} {
			if err := remoteLookPath(ctx, c, program); err != nil {
				errs = append(errs, fmt.Errorf("%w: a sign on a host generates its key there with openssl (Debian: apt-get install openssl)", err))
			}
		}
		for _, a := range []struct{ attr, p string }{{"key_path", f.key}, {"certificate_path", f.cert}} {
			if _, err := checkRemoteTarget(ctx, c, a.p); err != nil {
				errs = append(errs, &AttrError{Path: cfg.Path(a.attr), Err: err})
			}
		}
		_, _, err := env.hostOwners(ctx, c, cfg)
		errs = append(errs, err)
		return nil
	})
	return joinErrors(append(errs, err)...)
}

// applySignRemote is Sign.Apply on the step's host.
func applySignRemote(ctx context.Context, env *Env, cfg Config, req certRequest, f signFiles) (out cty.Value, err error) {
	host, _ := env.Host()
	err = env.onHost(ctx, func(c *remote.Conn) error {
		uid, gid, err := env.hostOwners(ctx, c, cfg)
		if err != nil {
			return err
		}
		for _, p := range []string{f.key, f.cert} {
			if _, err := checkRemoteTarget(ctx, c, p); err != nil {
				return fmt.Errorf("signing for %s: %w", p, err)
			}
		}
		// What an attempt cut short left: a key openssl made, or the
		// temporary file of a certificate whose write never reached its
		// rename (rotplan killed).
		for _, p := range []string{f.key, f.cert} {
			if err := removeRemoteLeftovers(ctx, env, c, p); err != nil {
				return err
			}
		}
		tmp, pub, err := generateOnHost(ctx, c, f.key, *req.key)
		installed, killed := false, false
		defer func() {
			if !installed && !killed && tmp != "" {
				c.RemoveLeftovers(context.WithoutCancel(ctx), f.key)
			}
		}()
		if err != nil {
			return err
		}
		stage := func(name string) error {
			err := signStage(name)
			killed = err != nil
			return err
		}
		if err := stage("generated"); err != nil {
			return err
		}
		env.Log.Debug("generated the key on the host", "host", host, "key", req.key.String(), "temporary_file", tmp)
		csrPEM, err := req.csr(hostSigner{ctx: ctx, c: c, key: tmp, pub: pub})
		if err != nil {
			return err
		}
		args := req.arguments()
		args["csr"] = csrPEM
		signed, err := signKind.obtainWith(ctx, env, cfg, req, args, func(data map[string]any) (issuedCertificate, error) {
			return readSigned(data, pub, req.key.typ)
		})
		if err != nil {
			return err
		}
		if err := stage("signed"); err != nil {
			return err
		}
		if err := c.WriteFile(ctx, f.cert, signed.fileContent(), f.certMode, uid, gid); err != nil {
			return err
		}
		if err := stage("certificate"); err != nil {
			return err
		}
		if err := c.Install(ctx, tmp, f.key, f.keyMode, uid, gid); err != nil {
			return err
		}
		installed = true
		if err := stage("installed"); err != nil {
			return err
		}
		env.Log.Info("installed the key and certificate on the host", "host", host, "key_path", f.key, "certificate_path", f.cert, "serial", signed.serial)
		outs := signed.outputs()
		outs["private_key"] = cty.NullVal(cty.String)
		outs["csr"] = cty.StringVal(csrPEM)
		out = cty.ObjectVal(outs)
		return nil
	})
	if err != nil {
		return cty.NilVal, err
	}
	return out, nil
}

// signIntent is Sign.Intent for a sign on a host: the files, their modes,
// the owner and group as the block names them (resolved on the host by
// Done), the common name and the key.
func signIntent(cfg Config) (map[string]string, error) {
	f, set, err := parseSignFiles(cfg)
	if !set {
		return nil, nil
	}
	if err != nil {
		return nil, mustBeKnown(err)
	}
	req, err := parseSign(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	intent := map[string]string{
		"key_path": f.key, "certificate_path": f.cert,
		"key_mode": formatMode(f.keyMode), "certificate_mode": formatMode(f.certMode),
		"common_name": req.commonName, "key_type": req.key.typ, "key_bits": strconv.Itoa(req.key.bits),
	}
	for _, a := range []string{"owner", "group"} {
		if cfg.Set(a) {
			intent[a] = cfg.String(a)
		}
	}
	return intent, nil
}

// doneSignRemote is Sign.Done on the step's host.
func doneSignRemote(ctx context.Context, env *Env, intent map[string]string) (out cty.Value, done bool, err error) {
	var f signFiles
	var k keySpec
	fields := map[string]*string{"key_path": &f.key, "certificate_path": &f.cert, "key_type": &k.typ}
	for name, dst := range fields {
		if *dst, err = intentField(intent, name); err != nil {
			return cty.NilVal, false, fmt.Errorf("sign: %w", err)
		}
	}
	cn, err := intentField(intent, "common_name")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("sign: %w", err)
	}
	var bad []error
	for _, m := range []struct {
		name string
		dst  *os.FileMode
	}{{"key_mode", &f.keyMode}, {"certificate_mode", &f.certMode}} {
		s, err := intentField(intent, m.name)
		if err == nil {
			*m.dst, err = parseMode(s)
		}
		bad = append(bad, err)
	}
	bits, err := intentField(intent, "key_bits")
	if err == nil {
		k.bits, err = strconv.Atoi(bits)
	}
	if err := joinErrors(append(bad, err)...); err != nil {
		return cty.NilVal, false, fmt.Errorf("sign: the journaled intent: %w", err)
	}
	if !path.IsAbs(f.key) || !path.IsAbs(f.cert) {
		return cty.NilVal, false, errors.New("sign: the journaled intent's paths are not absolute")
	}
	host, _ := env.Host()
	notDone := func(why string) error {
		env.Log.Debug("the key and certificate are not as the sign would leave them", "host", host, "key_path", f.key, "certificate_path", f.cert, "reason", why)
		return nil
	}
	err = env.onHost(ctx, func(c *remote.Conn) error {
		uid, gid := -1, -1
		for _, o := range []struct {
			name, db string
			dst      *int
		}{{"owner", "passwd", &uid}, {"group", "group", &gid}} {
			if name, ok := intent[o.name]; ok {
				id, err := env.hostID(ctx, c, o.db, name)
				if err != nil {
					return err
				}
				*o.dst = id
			}
		}
		for _, p := range []struct {
			path string
			mode os.FileMode
		}{{f.key, f.keyMode}, {f.cert, f.certMode}} {
			fi, err := remoteLstat(ctx, c, p.path)
			switch {
			case err != nil:
				return err
			case fi == nil:
				return notDone(p.path + " missing")
			case !fi.Mode().IsRegular():
				return notDone(p.path + " not a regular file")
			case !remoteMeta(fi, p.mode, uid, gid):
				return notDone(p.path + ": mode or owner differs")
			case fi.Size() > maxResumeRead:
				return notDone(p.path + " too large to be a key or certificate")
			}
		}
		content, err := c.ReadFile(ctx, f.cert, maxResumeRead)
		if err != nil {
			return err
		}
		leaf := firstCertificate(content)
		switch {
		case leaf == nil:
			return notDone("no certificate at " + f.cert)
		case leaf.Subject.CommonName != cn:
			return notDone("the certificate is for " + leaf.Subject.CommonName)
		}
		if replaced, err := isBackedUp(ctx, c, f.cert, contentDigest(content)); err != nil || replaced {
			if err != nil {
				return err
			}
			return notDone("the certificate is one the step replaced")
		}
		pub, err := hostPublicKey(ctx, c, f.key)
		if err != nil {
			return notDone("openssl cannot read the key: " + err.Error())
		}
		if k.matches(pub) != nil {
			return notDone("the key is not of the type the step generates")
		}
		if lk, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !lk.Equal(pub) {
			return notDone("the certificate is not for the key")
		}
		out, done = signOutputsFromFile(content, k.typ), true
		return nil
	})
	if err != nil {
		return cty.NilVal, false, err
	}
	return out, done, nil
}

// isBackedUp reports whether a copy backupRemote kept of p (in
// remoteBackupDir beside it, as p's name or that name with a counter) has
// the digest.
func isBackedUp(ctx context.Context, c *remote.Conn, p, digest string) (bool, error) {
	dir := path.Join(path.Dir(p), remoteBackupDir)
	for i := 0; i < 1000; i++ {
		name := path.Join(dir, path.Base(p))
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		fi, err := c.Lstat(ctx, name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		case err != nil:
			return false, err
		case !fi.Mode().IsRegular() || fi.Size() > maxResumeRead:
			continue
		}
		b, err := c.ReadFile(ctx, name, maxResumeRead)
		if err != nil {
			return false, err
		}
		if contentDigest(b) == digest {
			return true, nil
		}
	}
	return false, nil
}

// signOutputsFromFile are the outputs Done gives for the certificate file
// a sign on a host wrote (leaf, then issuing CA): the chain is what the
// file holds after the leaf, and the CSR, which is nowhere on the host,
// is null.
func signOutputsFromFile(content []byte, keyType string) cty.Value {
	var blocks []string
	var leaf *x509.Certificate
	for rest := content; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if leaf == nil {
			leaf, _ = x509.ParseCertificate(b.Bytes)
		}
		blocks = append(blocks, string(pem.EncodeToMemory(b)))
	}
	c := issuedCertificate{certificate: blocks[0], privateKeyType: keyType}
	if len(blocks) > 1 {
		c.issuingCA, c.caChain = blocks[1], blocks[1:]
	}
	c.serial = SerialHex(leaf)
	c.fingerprint = contentDigest(leaf.Raw)
	c.expiration = leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z07:00")
	outs := c.outputs()
	outs["private_key"] = cty.NullVal(cty.String)
	outs["csr"] = cty.NullVal(cty.String)
	return cty.ObjectVal(outs)
}

// snapshotSignRemote is Sign.Snapshot on the step's host: the local one
// (what finds the certificate in Vault), and copies of the key and the
// certificate kept beside them (backupRemote), under "key." and
// "certificate.".
func snapshotSignRemote(ctx context.Context, env *Env, cfg Config, snap map[string]string, f signFiles) (map[string]string, error) {
	host, _ := env.Host()
	err := env.onHost(ctx, func(c *remote.Conn) error {
		for _, file := range []struct{ prefix, p string }{{"key.", f.key}, {"certificate.", f.cert}} {
			saved, err := backupRemote(ctx, env, c, file.p, "signing for")
			if err != nil {
				return err
			}
			for k, v := range saved {
				snap[file.prefix+k] = v
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	snap["host"] = host
	return snap, nil
}

// rollbackSignRemote restores the files a sign on a host replaced: the
// certificate, then the key (and whatever an attempt cut short left of a
// new one).
func rollbackSignRemote(ctx context.Context, env *Env, snapshot map[string]string) error {
	var errs []error
	for _, prefix := range []string{"certificate.", "key."} {
		sub := map[string]string{}
		for k, v := range snapshot {
			if rest, ok := strings.CutPrefix(k, prefix); ok {
				sub[rest] = v
			}
		}
		if len(sub) == 0 {
			continue // a snapshot taken before the files were looked at
		}
		if prefix == "key." && sub["existed"] == "true" {
			if p := sub["path"]; path.IsAbs(p) {
				errs = append(errs, env.onHost(ctx, func(c *remote.Conn) error {
					_, err := c.RemoveLeftovers(ctx, p)
					return err
				}))
			}
		}
		errs = append(errs, restoreRemote(ctx, env, "sign", sub))
	}
	return errors.Join(errs...)
}

// planSignRemote is Sign.Plan's look at the host: where the key is made,
// the files as they are there now, and what CheckHost would refuse.
func planSignRemote(ctx context.Context, env *Env, cfg Config, f signFiles, pv *Preview) {
	host, _ := env.Host()
	for i, fact := range pv.Now {
		if fact.Name == "key" {
			req, _ := parseSign(cfg)
			pv.Now[i].Value = fmt.Sprintf("%s, generated on %s with openssl; it never leaves the host: Vault signs a CSR and never sees the key", req.key, host)
		}
	}
	pv.Now = append(pv.Now, Fact{Name: "host", Value: host})
	var observed []string
	err := env.onHost(ctx, func(c *remote.Conn) error {
		for _, a := range []struct{ attr, p string }{{"key_path", f.key}, {"certificate_path", f.cert}} {
			fi, err := checkRemoteTarget(ctx, c, a.p)
			switch {
			case err != nil:
				pv.Problems = append(pv.Problems, &AttrError{Path: cfg.Path(a.attr), Err: err})
			case fi == nil:
				pv.Now = append(pv.Now, Fact{Name: a.attr, Value: a.p + " does not exist"})
				observed = append(observed, a.p+": absent")
			default:
				fuid, fgid, _ := remote.Owner(fi)
				pv.Now = append(pv.Now, Fact{Name: a.attr, Value: fmt.Sprintf("%s, mode %s, owner %d:%d, %d bytes", a.p, formatMode(fi.Mode()), fuid, fgid, fi.Size())})
				observed = append(observed, fmt.Sprintf("%s: %d bytes", a.p, fi.Size()))
			}
		}
		for _, program := range []string{"openssl", "mktemp", "base64"} {
			if err := remoteLookPath(ctx, c, program); err != nil {
				pv.Problems = append(pv.Problems, err)
			}
		}
		if _, _, err := env.hostOwners(ctx, c, cfg); err != nil && err != ErrUnknown {
			pv.Problems = append(pv.Problems, err)
		}
		return nil
	})
	if err != nil {
		pv.Problems = append(pv.Problems, err)
	}
	if len(observed) > 0 {
		pv.Observed = strings.TrimPrefix(pv.Observed+"; "+strings.Join(observed, "; "), "; ")
	}
}

// currentReader reads a sign's current certificate: on its host when it
// has one (readCertificateFile's answers, read there), else where rotplan
// runs.
func currentReader(ctx context.Context, env *Env) func(string) (*x509.Certificate, error) {
	if _, ok := env.Host(); !ok {
		return readCertificateFile
	}
	return func(p string) (c *x509.Certificate, err error) {
		err = env.onHost(ctx, func(conn *remote.Conn) error {
			fi, err := conn.Stat(ctx, p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("%s on %s: %w", p, conn.Host(), fs.ErrNotExist)
			case err != nil:
				return err
			case !fi.Mode().IsRegular() || fi.Size() > maxPEMRead:
				return noCertificateError(fmt.Sprintf("%s on %s is not a regular file of at most %d bytes", p, conn.Host(), maxPEMRead))
			}
			b, err := conn.ReadFile(ctx, p, maxPEMRead)
			if err != nil {
				return err
			}
			if c = firstCertificate(b); c == nil {
				return noCertificateError(fmt.Sprintf("%s on %s holds no PEM certificate", p, conn.Host()))
			}
			return nil
		})
		return c, err
	}
}
