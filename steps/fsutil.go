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

// contentDigest is the hex SHA-256 a write step reports for its content; the
// journal and later steps identify a key by it without holding the key.
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
		return "", 0, false, fmt.Errorf("reading %s: %w", path, err)
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
	v, ok := intent[key]
	if !ok {
		return "", fmt.Errorf("the journaled intent has no %q", key)
	}
	return v, nil
}

// intentID reads a uid or gid from an intent: a decimal id, or -1 for one
// the step leaves unchanged (as chown(2) takes it).
func intentID(intent map[string]string, key string) (int, error) {
	s, err := intentField(intent, key)
	if err != nil {
		return 0, err
	}
	if s == "-1" {
		return -1, nil
	}
	if !isDigits(s) {
		return 0, fmt.Errorf("the journaled intent's %s %q is not an id", key, s)
	}
	id, err := parseID(s)
	if err != nil {
		return 0, fmt.Errorf("the journaled intent's %s: %w", key, err)
	}
	return id, nil
}
