package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// OwnTarget checks p before its owner changes, as a local chown checks:
// an absolute, clean path whose directories are no symbolic links (see
// prepareChange), and the entry at p neither a symbolic link (changing
// the link would not change what it names) nor, unless a directory, a
// file with other hard links, one of which may be a file elsewhere
// (/etc/shadow, linked in by whoever can write in the directory) that
// must not change hands. It returns what is at p, or an error satisfying
// errors.Is(err, fs.ErrNotExist) when nothing is.
//
// SFTP's attributes (version 3) carry no link count, so the count is read
// on the host with stat(1) ("stat -c %h"), a second request after the
// lstat: like the checks on the directories, it protects against a link
// that was there before, not against one made in between.
func (c *Conn) OwnTarget(ctx context.Context, p string) (fs.FileInfo, error) {
	_, fi, err := c.prepareChange(ctx, p)
	switch {
	case err != nil:
		return nil, err
	case fi == nil:
		return nil, fmt.Errorf("%s on %s: %w", p, c.host, fs.ErrNotExist)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fi, fmt.Errorf("%s on %s is a symbolic link; refusing to change its owner (give the path it points to instead)", p, c.host)
	case fi.IsDir():
		return fi, nil
	}
	res, err := c.Run(ctx, []string{"stat", "-c", "%h", "--", p})
	if err != nil {
		return fi, fmt.Errorf("counting the hard links of %s on %s: %w", p, c.host, err)
	}
	links, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	switch {
	case err != nil || links < 1:
		return fi, fmt.Errorf("counting the hard links of %s on %s: stat printed %q, not a count", p, c.host, tail(res.Stdout, 64))
	case links > 1:
		return fi, fmt.Errorf("%s on %s has %d hard links, and another of them may be a file elsewhere that must not change hands; refusing to change its owner (give it a link of its own: cp -p, then mv)", p, c.host, links)
	}
	return fi, nil
}

// Chown gives p the owner uid and group gid (-1 leaves one as it is),
// with chown(1) on the host: "chown -h", so that a symbolic link swapped
// in since OwnTarget's check changes owner itself, never what it points
// to (SFTP's setstat follows links). Call OwnTarget first.
func (c *Conn) Chown(ctx context.Context, p string, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return fmt.Errorf("chown %s on %s: neither owner nor group to give", p, c.host)
	}
	owner := ""
	if uid >= 0 {
		owner = strconv.Itoa(uid)
	}
	if gid >= 0 {
		owner += ":" + strconv.Itoa(gid)
	}
	if _, err := c.Run(ctx, []string{"chown", "-h", "--", owner, p}); err != nil {
		return fmt.Errorf("chown %s on %s: %w", p, c.host, err)
	}
	return nil
}

// LookupID resolves the user (db "passwd") or group (db "group") name on
// the host, as the host's own name service sees it (getent(1)), to its
// id. A name the host does not know is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (c *Conn) LookupID(ctx context.Context, db, name string) (int, error) {
	what := map[string]string{"passwd": "user", "group": "group"}[db]
	if what == "" {
		return 0, fmt.Errorf("looking up %q on %s: no database %q", name, c.host, db)
	}
	if name == "" || strings.ContainsAny(name, ":\n") || name[0] == '-' {
		return 0, fmt.Errorf("%q is not a %s name", name, what)
	}
	res, err := c.Run(ctx, []string{"getent", "--", db, name})
	var exit *ExitError
	switch {
	case errors.As(err, &exit) && exit.Status == 2: // getent: not found
		return 0, fmt.Errorf("no %s %q on %s: %w", what, name, c.host, fs.ErrNotExist)
	case err != nil:
		return 0, fmt.Errorf("looking up %s %q on %s: %w", what, name, c.host, err)
	}
	fields := strings.Split(strings.SplitN(string(res.Stdout), "\n", 2)[0], ":")
	if len(fields) < 3 || fields[0] != name {
		return 0, fmt.Errorf("looking up %s %q on %s: getent printed %q", what, name, c.host, tail(res.Stdout, 200))
	}
	id, err := strconv.ParseUint(fields[2], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("looking up %s %q on %s: getent printed the id %q", what, name, c.host, fields[2])
	}
	return int(id), nil
}
