package steps

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
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
