package steps

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// Action is what a step would do to the system, as a preview shows it.
type Action string

// The actions of a preview. Their names are part of `rotplan plan -json`.
const (
	// Create: something that is not there now appears (a file, a first
	// certificate).
	Create Action = "create"
	// Replace: something in place is replaced or changed (a file's content
	// or owner, a certificate, the certificate a process serves).
	Replace Action = "replace"
	// NoChange: the system already is as the step would leave it, or the
	// step is not due (see Conditional).
	NoChange Action = "no-change"
	// Check: the step only reads (verify).
	Check Action = "check"
)

// Changes reports whether the action changes the system.
func (a Action) Changes() bool { return a == Create || a == Replace }

// Preview is what a step would do, found by reading the system, never by
// changing it.
type Preview struct {
	Action Action
	// Reason says in a few words why, where the action alone does not
	// ("612h left").
	Reason string
	// Now describes what the step acts on as it is now: a file's mode and
	// owner, a certificate's serial and expiry, the process a reload would
	// signal. Like every Fact, never a secret.
	Now []Fact
	// Outputs are the outputs Apply would return, as far as they can be
	// known before the run (a write's path and mode); cty.NilVal when none
	// is. The engine hands them to the steps that read them, so that their
	// previews can read the system too.
	Outputs cty.Value
	// Problems are what would make the run fail. Each is reported with the
	// step's location (an *AttrError: the argument's).
	Problems []error
	// Observed is what the step acts on, as it is now, in a form that
	// changes when it does and only then: a file's digest, mode and owner,
	// the serial of the certificate in use ("" when there is nothing to
	// compare). A saved plan keeps it, and `rotplan run` of that plan
	// refuses when it differs: the run would no longer do what was
	// reviewed. Like every Fact, never a secret (digests, not content).
	Observed string
	// Fields are, field by field, what the step would change in what it
	// acts on (the fields of a Vault path): each as it is now and as the
	// step would leave it. Like every Fact, never a secret: a sensitive
	// field says so and shows no value.
	Fields []FieldChange
	// Files are the files the step would create or replace. The engine
	// tells the steps previewed after it (Env.Planned), so that they can
	// tell a file the run will put in place from one that is missing.
	Files []string
}

// FieldChange is one field of what a step acts on, as a preview shows it:
// "~ token_policies: ["a"] -> ["a", "b"]".
type FieldChange struct {
	// Field names the field.
	Field string `json:"field"`
	// Action is Create for a field not there now, Replace for one the step
	// changes, NoChange for one that already has the planned value.
	Action Action `json:"action"`
	// Now and Planned are the values as they are now and as the step would
	// leave them, written for people ("" for none); both are empty for a
	// Sensitive field.
	Now     string `json:"now,omitempty"`
	Planned string `json:"planned,omitempty"`
	// Sensitive is set for a field whose values are never shown.
	Sensitive bool `json:"sensitive,omitempty"`
}

// Planner is implemented by kinds that can preview a step: say what Apply
// would do without doing any of it. Plan may read the system (stat a file,
// read a Vault role, check that a process is alive) and must never change
// it: no file written, nothing issued, no signal sent, no command run. Values
// that depend on steps not yet run are unknown in cfg. An error means the
// preview itself failed; what would make the run fail goes in Problems.
type Planner interface {
	Plan(ctx context.Context, env *Env, cfg Config) (Preview, error)
}

// CertificateFile is a certificate file a step looks after, as it is now:
// the certificate an issue step renews (its current), or the target of a
// write that holds one. It carries the certificate, never a key.
type CertificateFile struct {
	// Host is the host the file is on (host.web["a"]), "" for a file
	// where rotplan runs.
	Host string
	// Path is the file's path as the step names it.
	Path string
	// Certificate is the file's first certificate; nil when Err says why
	// there is none (errors.Is fs.ErrNotExist, fs.ErrPermission or
	// ErrNoCertificate, or another error of reading it).
	Certificate *x509.Certificate
	Err         error
	// RenewBefore is how long before its expiry the step renews the
	// certificate; 0 when the step does not say.
	RenewBefore time.Duration
}

// CertificateHolder is implemented by kinds whose steps look after
// certificate files, so that what they keep in place can be watched (its
// expiry exported as metrics) without knowing the kind. Certificates reads
// the files the step names and changes nothing. The engine asks it for every
// step a preview evaluates, also for one that is not due: that is when the
// certificates in place matter most. Values known only after the run are
// unknown in cfg; a file whose path is unknown is left out. env is the
// step's: a file on its host is read there.
type CertificateHolder interface {
	Certificates(ctx context.Context, env *Env, cfg Config) []CertificateFile
}

// ErrNoCertificate is what the error of a certificate file that holds no
// certificate (or is no regular file) wraps.
var ErrNoCertificate = errors.New("no PEM certificate")

// noCertificateError is a file that holds no certificate, in the words
// previews have always used for it.
type noCertificateError string

func (e noCertificateError) Error() string { return string(e) }

// Is makes errors.Is(err, ErrNoCertificate) true.
func (noCertificateError) Is(target error) bool { return target == ErrNoCertificate }

// Condition says whether a step is due.
type Condition struct {
	// Set is false when the block sets no condition: the step is then due
	// unless every step it depends on was skipped.
	Set bool
	// Due is whether the step must be carried out now; Reason says why or
	// why not ("612h left").
	Due    bool
	Reason string
}

// Conditional is implemented by kinds whose block may say when the step is
// due, such as an issue step with renew_before: a step that is not due is
// skipped, with every step that depends on nothing else. Due reads the
// system and never changes it; the run and the preview both ask it.
type Conditional interface {
	Due(ctx context.Context, env *Env, cfg Config) (Condition, error)
}

// maxPEMRead bounds what a preview reads of a file to describe it: keys and
// certificate chains are a few kilobytes.
const maxPEMRead = 1 << 20

// readSmallFile reads a regular file of at most maxPEMRead bytes; ok is false
// (and err nil) for anything else, which a preview describes by its type.
// O_NONBLOCK keeps a named pipe at the path (current = a FIFO, by mistake)
// from blocking the open.
func readSmallFile(path string) (b []byte, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxPEMRead {
		return nil, false, err
	}
	b, err = io.ReadAll(io.LimitReader(f, maxPEMRead+1))
	if err != nil {
		return nil, false, err
	}
	return b, len(b) <= maxPEMRead, nil
}

// firstCertificate returns the first certificate of PEM data; nil when there
// is none.
func firstCertificate(b []byte) *x509.Certificate {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			return c
		}
	}
}

// readCertificateFile reads the first certificate of a PEM file.
func readCertificateFile(path string) (*x509.Certificate, error) {
	b, ok, err := readSmallFile(path)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, noCertificateError(fmt.Sprintf("%s is not a regular file of at most %d bytes", path, maxPEMRead))
	}
	c := firstCertificate(b)
	if c == nil {
		return nil, noCertificateError(path + " holds no PEM certificate")
	}
	return c, nil
}

// certificateFacts describes a certificate by what an operator compares:
// subject, names, issuer, serial and expiry, with the time left as of now.
// prefix names the facts ("current " for an issue step's current
// certificate).
func certificateFacts(prefix string, c *x509.Certificate, now time.Time) []Fact {
	facts := []Fact{
		{Name: prefix + "subject", Value: c.Subject.String()},
	}
	var sans []string
	sans = append(sans, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	sans = append(sans, c.EmailAddresses...)
	if len(sans) > 0 {
		facts = append(facts, Fact{Name: prefix + "sans", Value: strings.Join(sans, ", ")})
	}
	facts = append(facts,
		Fact{Name: prefix + "issuer", Value: c.Issuer.String()},
		Fact{Name: prefix + "serial", Value: SerialHex(c)},
		Fact{Name: prefix + "not_after", Value: c.NotAfter.UTC().Format(time.RFC3339) + " (" + describeLeft(c.NotAfter.Sub(now)) + ")"},
	)
	return facts
}

// describeLeft says how long a certificate has left, in whole hours as
// renew_before is usually written: "612h left", or "expired 3h ago".
func describeLeft(left time.Duration) string {
	if left <= 0 {
		return fmt.Sprintf("expired %dh ago", int64(-left/time.Hour))
	}
	return fmt.Sprintf("%dh left", int64(left/time.Hour))
}

// describeFile gives a file's facts as a preview shows them: type, mode,
// owner and size and, for a PEM certificate, what certificateFacts says; for
// a private key, its type and which certificate in the same directory it
// belongs to. The key itself is never part of a fact.
func describeFile(path string, fi fs.FileInfo, now time.Time) []Fact {
	facts := []Fact{{Name: "file", Value: describeExisting(fi)}}
	if !fi.Mode().IsRegular() {
		return facts
	}
	b, ok, err := readSmallFile(path)
	if err != nil || !ok {
		return facts
	}
	if c := firstCertificate(b); c != nil {
		return append(facts, certificateFacts("", c, now)...)
	}
	if key := parsePrivateKeyPEM(b); key != nil {
		return append(facts, Fact{Name: "key", Value: describeKey(path, key)})
	}
	return facts
}

// observeFile describes a file for Preview.Observed: its type, digest,
// mode and owner, "absent" when there is none.
func observeFile(path string) string {
	fi, err := os.Lstat(path)
	switch {
	case isMissing(err):
		return "absent"
	case err != nil:
		return "unreadable: " + err.Error()
	case !fi.Mode().IsRegular():
		return fileType(fi.Mode())
	}
	digest, _, ok, err := fileDigest(path, fi, maxPEMRead)
	if err != nil || !ok {
		digest = "unread"
	}
	uid, gid, _ := fileOwner(fi)
	return fmt.Sprintf("sha256=%s mode=%s owner=%d:%d", digest, formatMode(fi.Mode()), uid, gid)
}

// describeExisting says what is at a path: "0600 root:root, 227 bytes".
func describeExisting(fi fs.FileInfo) string {
	kind := ""
	if !fi.Mode().IsRegular() {
		kind = fileType(fi.Mode()) + ", "
	}
	owner := "?"
	if uid, gid, ok := fileOwner(fi); ok {
		owner = userName(uid) + ":" + groupName(gid)
	}
	return fmt.Sprintf("%s%s %s, %d bytes", kind, formatMode(fi.Mode()), owner, fi.Size())
}

// userName and groupName give an id's name, or the number when it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// parsePrivateKeyPEM parses the first private key of PEM data; nil when
// there is none.
func parsePrivateKeyPEM(b []byte) crypto.Signer {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		var key any
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		}
		if signer, ok := key.(crypto.Signer); err == nil && ok {
			return signer
		}
	}
}

// describeKey names a private key's type and the certificates in its
// directory whose public key it is: a key that matches none is the
// half-rotated state the seed warns about.
func describeKey(path string, key crypto.Signer) string {
	what := fmt.Sprintf("%T", key.Public())
	switch {
	case strings.Contains(what, "ecdsa"):
		what = "EC private key"
	case strings.Contains(what, "rsa"):
		what = "RSA private key"
	case strings.Contains(what, "ed25519"):
		what = "Ed25519 private key"
	default:
		what = "private key"
	}
	matches := matchingCertificates(filepath.Dir(path), key)
	if len(matches) == 0 {
		return what + ", matching no certificate in " + filepath.Dir(path)
	}
	return what + ", matching " + strings.Join(matches, ", ")
}

// matchingCertificates lists the PEM files in dir whose first certificate
// has key's public key.
func matchingCertificates(dir string, key crypto.Signer) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, ok, err := readSmallFile(filepath.Join(dir, e.Name()))
		if err != nil || !ok {
			continue
		}
		if c := firstCertificate(b); c != nil && pub.Equal(c.PublicKey) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// checkWritableDir reports whether the process may create files in dir, as
// an atomic write must (its temporary file lives beside the target).
func checkWritableDir(dir string) error {
	const wOK = 2 // W_OK of access(2)
	if err := syscall.Access(dir, wOK|1); err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("directory %s is not writable by uid %d: %v", dir, os.Geteuid(), err)
		}
		return fmt.Errorf("directory %s: %v", dir, err)
	}
	return nil
}

// checkCanOwn reports whether this process may give a file to uid:gid (-1
// leaves one alone): only root may give a file away.
func checkCanOwn(path string, uid, gid int) error {
	if os.Geteuid() == 0 {
		return nil
	}
	if uid != -1 && uid != os.Geteuid() {
		return fmt.Errorf("giving %s to uid %d needs root; rotplan runs as uid %d", path, uid, os.Geteuid())
	}
	if gid != -1 && gid != os.Getegid() {
		groups, _ := os.Getgroups()
		for _, g := range groups {
			if g == gid {
				return nil
			}
		}
		return fmt.Errorf("giving %s to gid %d needs root or membership of that group", path, gid)
	}
	return nil
}
