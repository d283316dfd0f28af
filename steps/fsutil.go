package steps

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// maxID is the largest uid or gid accepted: (uid_t)-1 means "leave unchanged"
// to chown(2), so it can never name an owner.
const maxID = 1<<32 - 2

// parseMode reads a permission mode written in octal: "0600", "600", or the
// "600" HCL makes of `mode = 0600`, which is why a string without a leading 0
// is octal too. Only permission bits are accepted: setuid, setgid and sticky
// have no business on a certificate or key file, and a typo like "4755" for
// "0755" would otherwise go through unnoticed.
func parseMode(s string) (os.FileMode, error) {
	bad := fmt.Errorf("%q is not a file mode: want octal permission bits, at most 0777, such as \"0600\" or \"0644\" (setuid, setgid and sticky are not accepted)", s)
	if s == "" {
		return 0, bad
	}
	for _, r := range s {
		if r < '0' || r > '7' {
			return 0, bad
		}
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, bad
	}
	return os.FileMode(m), nil
}

// formatMode writes a mode the way plans write it, so an output can be fed
// back into another block's mode.
func formatMode(m os.FileMode) string { return fmt.Sprintf("%04o", uint32(m.Perm())) }

// isDigits reports whether s is a non-empty run of ASCII digits: such an
// owner or group is an id, not a name (useradd refuses all-digit names).
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// parseID reads a numeric uid or gid. Ids without a passwd or group entry are
// accepted: containers and NFS mounts often use ids that have no name.
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("%s is not a valid id", s)
	}
	return int(n), nil
}

// lookupUID resolves a user name or numeric uid.
func lookupUID(s string) (int, error) {
	if isDigits(s) {
		return parseID(s)
	}
	u, err := user.Lookup(s)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("no such user %q", s)
		}
		return 0, fmt.Errorf("looking up user %q: %w", s, err)
	}
	return parseID(u.Uid)
}

// lookupGID resolves a group name or numeric gid.
func lookupGID(s string) (int, error) {
	if isDigits(s) {
		return parseID(s)
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("no such group %q", s)
		}
		return 0, fmt.Errorf("looking up group %q: %w", s, err)
	}
	return parseID(g.Gid)
}

// ownerSyntax checks a block's optional owner, group and trust_owner
// arguments without looking them up: a name, or a numeric id in range.
// Whether the name exists is the host's to say (ownership, stepTrust).
func ownerSyntax(cfg Config) error {
	var errs []error
	for _, name := range []string{"owner", "group", "trust_owner"} {
		if !cfg.Set(name) {
			continue
		}
		s, err := cfg.RequireString(name)
		switch {
		case err != nil:
			errs = append(errs, err)
		case isDigits(s):
			if _, err := parseID(s); err != nil {
				errs = append(errs, &AttrError{Path: cfg.Path(name), Err: err})
			}
		case s == "" || strings.ContainsAny(s, ": \t\n/"):
			errs = append(errs, attrErr(cfg.Path(name), "%q is not a %s name or id", s, map[string]string{"owner": "user", "group": "group", "trust_owner": "user"}[name]))
		}
	}
	return joinErrors(errs...)
}

// ownership resolves a block's optional owner and group arguments to the
// ids chown(2) takes, -1 for one that is not given (left unchanged).
func ownership(cfg Config) (uid, gid int, err error) {
	uid, gid = -1, -1
	resolve := func(name string, lookup func(string) (int, error)) (int, error) {
		if !cfg.Set(name) {
			return -1, nil
		}
		s, err := cfg.RequireString(name)
		if err != nil {
			return -1, err
		}
		id, err := lookup(s)
		if err != nil {
			return -1, &AttrError{Path: cfg.Path(name), Err: err}
		}
		return id, nil
	}
	uid, uerr := resolve("owner", lookupUID)
	gid, gerr := resolve("group", lookupGID)
	return uid, gid, joinErrors(uerr, gerr)
}

// describeOwner names an owner and group for log lines, "" for one left as
// it is.
func describeOwner(owner, group string) string {
	if owner == "" && group == "" {
		return ""
	}
	return strings.TrimSuffix(owner+":"+group, ":")
}

// maxResumeRead bounds how much of a file a Resumer's Done reads to hash it.
// Certificates and keys are a few kilobytes: a larger file is not what a
// write step put there, and an intent from a damaged journal must not make
// rotplan read a disk image.
const maxResumeRead = 16 << 20

// contentDigest is the hex SHA-256 rotplan reports for content: a write
// step's file (the journal and later steps identify a key by it without
// holding the key) and a certificate's fingerprint.
func contentDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// isHexDigest reports whether s is a SHA-256 as contentDigest writes it:
// exactly 64 lower-case hex digits, so a digest from the journal compares
// with a fresh one as plain strings.
func isHexDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// isMissing reports whether a stat error means nothing is at the path: a
// parent that is now a file (ENOTDIR) counts, since the file is just as
// absent.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// fileOwner returns the uid and gid of a file as Lstat or Stat described it.
func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// fileDigest hashes the regular file at path that Lstat described as fi,
// reading at most limit bytes. ok is false when the path no longer names
// that file (it was swapped, for a symlink say, since the Lstat) or the file
// holds more than limit bytes: either way it is not the file asked about.
// O_NONBLOCK keeps a named pipe swapped in from blocking the open.
func fileDigest(path string, fi fs.FileInfo, limit int64) (digest string, size int64, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	switch {
	case isMissing(err), errors.Is(err, syscall.ELOOP):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, err
	}
	defer f.Close()
	return fileDigestOf(f, fi, limit)
}

// fileDigestOf is fileDigest for a file already opened (not following a
// link) by its caller.
func fileDigestOf(f *os.File, fi fs.FileInfo, limit int64) (digest string, size int64, ok bool, err error) {
	now, err := f.Stat()
	if err != nil {
		return "", 0, false, err
	}
	if !now.Mode().IsRegular() || !os.SameFile(fi, now) {
		return "", 0, false, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, limit+1))
	if err != nil {
		return "", 0, false, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if n > limit {
		return "", 0, false, nil
	}
	return hex.EncodeToString(h.Sum(nil)), n, true, nil
}

// intentField returns a key of an intent that must be there. The intent
// comes from the journal, so a missing key is a damaged journal, never
// something to default.
func intentField(intent map[string]string, key string) (string, error) {
	return journaledField(intent, "intent", key)
}

// intentID reads a uid or gid from an intent: a decimal id, or -1 for one
// the step leaves unchanged (as chown(2) takes it).
func intentID(intent map[string]string, key string) (int, error) {
	return journaledID(intent, "intent", key, true)
}

// snapshotField returns a key of a Rollbacker's snapshot that must be there;
// like an intent, a snapshot comes back from the journal.
func snapshotField(snapshot map[string]string, key string) (string, error) {
	return journaledField(snapshot, "snapshot", key)
}

// journaledField returns a key of a map the journal kept (what names it:
// "intent", "snapshot") that must be there.
func journaledField(m map[string]string, what, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", fmt.Errorf("the journaled %s has no %q", what, key)
	}
	return v, nil
}

// journaledID reads a decimal uid or gid from a map the journal kept; -1,
// for an id the step leaves unchanged, only when unsetOK.
func journaledID(m map[string]string, what, key string, unsetOK bool) (int, error) {
	s, err := journaledField(m, what, key)
	if err != nil {
		return 0, err
	}
	if s == "-1" && unsetOK {
		return -1, nil
	}
	if !isDigits(s) {
		return 0, fmt.Errorf("the journaled %s's %s %q is not an id", what, key, s)
	}
	id, err := parseID(s)
	if err != nil {
		return 0, fmt.Errorf("the journaled %s's %s: %w", what, key, err)
	}
	return id, nil
}

// chmodMode writes a file's permission bits, with its setuid, setgid and
// sticky bits, the way chmod(1) and install -m take them ("0640", "2750").
// A snapshot records the mode this way, not with formatMode, because a
// rollback must put back the mode a file had, including bits that a write
// block may not ask for. For a plain mode it reads as formatMode does.
func chmodMode(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// parseChmodMode reads back what chmodMode writes.
func parseChmodMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 || !isDigits(s) {
		return 0, fmt.Errorf("%q is not a file mode in octal, at most 07777", s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// maxBackupName bounds the target's name in a backup's name, so that the
// counter saveBackup may add keeps it within NAME_MAX (255).
const maxBackupName = 200

// savedFile is what saveBackup found and kept of a file.
type savedFile struct {
	backup   string // the copy's path
	sha256   string // of the content, as contentDigest writes it
	mode     fs.FileMode
	uid, gid int
}

// saveBackup copies the regular file name of d into a new file in dir, named
// after it ("server.key", or "server.key.1" and on when that is taken, as
// when two steps replace files of the same name), and returns the copy's
// path with the digest, mode and owner of the original. The copy is created
// exclusively (never a file or link someone planted under the name) and is
// owner-only from its first instant, since what it holds may be a private
// key; it and the directory are flushed, so a snapshot the journal records
// never names a copy a crash lost. The original is read through the
// descriptor it was checked on: if it is swapped for a symbolic link or a
// pipe, the copy fails instead of following it.
func saveBackup(dir string, d *stepDir, name string) (saved savedFile, err error) {
	// Created on first use: most writes of a rotation replace nothing.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return saved, fmt.Errorf("creating the backup directory: %w", err)
	}
	path := d.join(name)
	src, err := d.open(name)
	if errors.Is(err, syscall.ELOOP) {
		return saved, fmt.Errorf("%s is a symbolic link; refusing to replace it (give the path it points to instead)", path)
	}
	if err != nil {
		return saved, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return saved, err
	}
	if !fi.Mode().IsRegular() {
		return saved, fmt.Errorf("%s is not a regular file (%s); refusing to replace it", path, fileType(fi.Mode()))
	}
	uid, gid, ok := fileOwner(fi)
	if !ok {
		return saved, fmt.Errorf("%s: no owner information on this system", path)
	}

	dst, err := createBackup(dir, filepath.Base(path))
	if err != nil {
		return saved, fmt.Errorf("creating a backup in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			dst.Close()
			os.Remove(dst.Name())
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(dst, h), src); err != nil {
		return saved, fmt.Errorf("copying %s to %s: %w", path, dst.Name(), err)
	}
	if err := dst.Sync(); err != nil {
		return saved, fmt.Errorf("flushing %s: %w", dst.Name(), err)
	}
	if err := dst.Close(); err != nil {
		return saved, fmt.Errorf("writing %s: %w", dst.Name(), err)
	}
	if err := syncDir(dir); err != nil {
		return saved, fmt.Errorf("flushing directory %s: %w", dir, err)
	}
	return savedFile{
		backup: dst.Name(),
		sha256: hex.EncodeToString(h.Sum(nil)),
		mode:   fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
		uid:    uid,
		gid:    gid,
	}, nil
}

// createBackup creates a new, empty file named base, or base with a counter,
// in dir: exclusively, not following a link, and mode 0600 whatever the
// umask (which can only take bits away; the fchmod puts back any it took
// from the owner, so the operator can read the copy to restore it by hand).
func createBackup(dir, base string) (*os.File, error) {
	if len(base) > maxBackupName {
		base = strings.ToValidUTF8(base[:maxBackupName], "")
	}
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		switch {
		case err == nil:
			if err := f.Chmod(0o600); err != nil {
				f.Close()
				os.Remove(f.Name())
				return nil, err
			}
			return f, nil
		case !errors.Is(err, fs.ErrExist) || i >= 10000:
			return nil, err
		}
	}
}

// readBackup reads a copy saveBackup made. Its path comes from the journal,
// so it must still be a regular file (not a link, a pipe or a device) for it
// to be read at all.
func readBackup(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("backup %s is a symbolic link", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("backup %s is not a regular file (%s)", path, fileType(fi.Mode()))
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading backup %s: %w", path, err)
	}
	return b, nil
}
