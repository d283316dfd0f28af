package remote

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/pkg/sftp"
	"github.com/rotplan/rotplan/internal/command"
)

// OpenSSH's SFTP extensions WriteFile needs.
const (
	extFsync       = "fsync@openssh.com"
	extPosixRename = "posix-rename@openssh.com"
)

// tempInfix marks the temporary files WriteFile creates:
// ".BASE.rotplan-tmp-RANDOM", hidden, and never matching a pattern such
// as *.pem or *.conf that a service may load.
const tempInfix = ".rotplan-tmp-"

// WriteFile replaces the file at path, an absolute path on the host, with
// data, owned by uid and gid (-1 leaves one as created: the SSH user's)
// with exactly mode. A reader on the host sees the old file or the whole
// new one, never part of either, and never a file readable by anyone the
// final mode and owner do not allow:
//
//   - no symbolic link is followed on the way: every directory on the path
//     is checked (lstat) to be a directory, and the target to be a regular
//     file or absent (see the package doc for what a check over SFTP
//     cannot promise);
//   - the content goes to a temporary file beside the target, created
//     exclusively (O_EXCL: never a file or link someone planted) and 0600
//     from its first instant (ownerOnlyCreates);
//   - it is flushed (fsync@openssh.com: without it, the write fails before
//     anything changed, since a rename of a file that may not be on disk
//     can leave an empty file after a crash), then given its owner, then
//     its mode;
//   - it is renamed over the target with posix-rename@openssh.com, rename(2)
//     on the host, which replaces the target atomically (SFTP's own rename
//     refuses to replace an existing file);
//   - the directory is flushed by running sync(1) on it ("sync -- DIR",
//     coreutils 8.24 or later), since SFTP has no way to fsync a directory.
//     Where the host does not allow that (an SFTP-only account, no sync),
//     the file is in place and WriteFile returns a *NotFlushedError.
//
// When the write fails before the rename, the temporary file is removed
// and nothing changed. A write cut short (the connection lost) may leave
// the temporary file, owner-only; RemoveLeftovers removes it.
func (c *Conn) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode, uid, gid int) (err error) {
	sc, target, err := c.prepareChange(ctx, p)
	if err != nil {
		return err
	}
	if target != nil && !target.Mode().IsRegular() {
		return fmt.Errorf("writing %s on %s: %w", p, c.host, notRegular(p, target))
	}
	for _, ext := range []string{extFsync, extPosixRename} {
		if _, ok := sc.HasExtension(ext); !ok {
			return fmt.Errorf("writing %s on %s: the SFTP server does not offer %s, which an atomic, durable replace needs (OpenSSH 6.5 or later offers it)", p, c.host, ext)
		}
	}
	dir, base := path.Split(p)
	tmp := dir + "." + base + tempInfix + randomSuffix()
	fail := func(what string, err error) error {
		return fmt.Errorf("writing %s on %s: %s: %w", p, c.host, what, err)
	}
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fail("creating the temporary file "+tmp, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			sc.Remove(tmp)
		}
	}()
	c.stage("created", tmp)
	if _, err := f.Write(data); err != nil {
		return fail("writing the temporary file", err)
	}
	c.stage("written", tmp)
	if err := c.finish(ctx, sc, f, tmp, p, mode, uid, gid); err != nil {
		return fmt.Errorf("writing %s on %s: %w", p, c.host, err)
	}
	renamed = true
	return c.syncDir(ctx, dir, p)
}

// finish is the end of a write: the temporary file tmp, open as f, is
// flushed, given its owner and then its mode, closed, and renamed over p.
// The caller removes tmp when finish fails.
func (c *Conn) finish(ctx context.Context, sc *sftp.Client, f *sftp.File, tmp, p string, mode fs.FileMode, uid, gid int) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flushing the temporary file: %w", err)
	}
	c.stage("synced", tmp)
	if uid != -1 || gid != -1 {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("setting owner %d and group %d: %w", uid, gid, err)
		}
	}
	c.stage("owned", tmp)
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("setting mode %04o: %w", uint32(mode.Perm()), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing the temporary file: %w", err)
	}
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("before renaming it into place: %w", err)
	}
	if err := sc.PosixRename(tmp, p); err != nil {
		var status *sftp.StatusError
		if !errors.As(err, &status) {
			// No answer: the host may have renamed it.
			err = &unconfirmedRenameError{err}
		}
		return fmt.Errorf("renaming the temporary file into place: %w", err)
	}
	c.stage("renamed", tmp)
	return nil
}

// Install renames tmp, a regular file that a command made on the host
// beside p (a key openssl generated there, owner-only), over p as WriteFile
// ends a write: flushed, given its owner and then its mode, renamed
// atomically, and the directory flushed. tmp must be named as WriteFile's
// temporary files are (TempPattern), so that RemoveLeftovers finds it when
// an Install is cut short; it is removed when Install fails before the
// rename.
func (c *Conn) Install(ctx context.Context, tmp, p string, mode fs.FileMode, uid, gid int) error {
	sc, target, err := c.prepareChange(ctx, p)
	if err != nil {
		return err
	}
	fail := func(what string, err error) error {
		sc.Remove(tmp)
		return fmt.Errorf("installing %s on %s: %s%w", p, c.host, what, err)
	}
	switch dir, base := path.Split(p); {
	case target != nil && !target.Mode().IsRegular():
		return fail("", notRegular(p, target))
	case path.Dir(tmp) != path.Clean(dir) || !strings.HasPrefix(path.Base(tmp), "."+base+tempInfix):
		return fmt.Errorf("installing %s on %s: %s is not a temporary file of it", p, c.host, tmp)
	}
	for _, ext := range []string{extFsync, extPosixRename} {
		if _, ok := sc.HasExtension(ext); !ok {
			return fail("", fmt.Errorf("the SFTP server does not offer %s, which an atomic, durable replace needs (OpenSSH 6.5 or later offers it)", ext))
		}
	}
	ti, err := sc.Lstat(tmp)
	switch {
	case err != nil:
		return fmt.Errorf("installing %s on %s: %w", p, c.host, err)
	case !ti.Mode().IsRegular():
		return fail("", notRegular(tmp, ti))
	}
	f, err := sc.OpenFile(tmp, os.O_RDONLY)
	if err != nil {
		return fail("opening "+tmp+": ", err)
	}
	if err := c.finish(ctx, sc, f, tmp, p, mode, uid, gid); err != nil {
		f.Close()
		return fail("", err)
	}
	return c.syncDir(ctx, path.Dir(p), p)
}

// TempPattern is the name, beside p, of a temporary file for p with its
// random part as the trailing Xs of mktemp(1)'s templates: a file a command
// on the host creates under it is one RemoveLeftovers finds and Install
// accepts.
func TempPattern(p string) string {
	dir, base := path.Split(p)
	return dir + "." + base + tempInfix + "XXXXXXXXXXXX"
}

// unconfirmedRenameError is a rename asked for whose answer never came
// (the connection lost): the host may have done it.
type unconfirmedRenameError struct{ err error }

func (e *unconfirmedRenameError) Error() string { return e.err.Error() }
func (e *unconfirmedRenameError) Unwrap() error { return e.err }

// MayBeInPlace reports whether err, from WriteFile, may have left the new
// file in place: the rename was asked for and its answer lost (the host
// cut off), or it was done and the directory could not be flushed (a
// *NotFlushedError). Any other error from WriteFile left the target as
// it was.
func MayBeInPlace(err error) bool {
	var unconfirmed *unconfirmedRenameError
	var notFlushed *NotFlushedError
	return errors.As(err, &unconfirmed) || errors.As(err, &notFlushed)
}

// stage calls the test hook, if any.
func (c *Conn) stage(name, tmp string) {
	if c.hook != nil {
		c.hook(name, tmp)
	}
}

// randomSuffix makes a temporary file's name unique. A fixed name, as the
// local write step uses, lets the next write find what one cut short left;
// but over SFTP there is no lock to tell a write under way from a dead
// one, and removing another writer's file and creating one under the same
// name would let that writer rename this one's half-written file into
// place. With unique names, a leftover removed under a write makes that
// write's rename fail, and nothing half-written is ever renamed.
func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NotFlushedError is a change made (the file is in place, or removed)
// whose directory could not be flushed, so the change may not survive a
// crash of the host.
type NotFlushedError struct {
	// Host, Path and Dir say what was changed where.
	Host      Host
	Path, Dir string
	// Err says why the directory could not be flushed.
	Err error
}

// Error says what was done and what was not.
func (e *NotFlushedError) Error() string {
	return fmt.Sprintf("changed %s on %s but could not flush directory %s (sync -- %s): %v", e.Path, e.Host, e.Dir, command.ShellWord(e.Dir), e.Err)
}

// Unwrap returns why the directory could not be flushed.
func (e *NotFlushedError) Unwrap() error { return e.Err }

// syncDir flushes the directory dir after a change to p in it, by running
// sync(1) on it: SFTP cannot fsync a directory (OpenSSH's fsync@openssh.com
// takes a file handle, and a directory handle is not one), while sync with
// an argument opens and fsyncs just that directory. "sync -f", syncing the
// whole file system, would do too, at a cost other writers on the host pay.
func (c *Conn) syncDir(ctx context.Context, dir, p string) error {
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "/"
	}
	if _, err := c.Run(ctx, []string{"sync", "--", dir}); err != nil {
		return &NotFlushedError{Host: c.host, Path: p, Dir: dir, Err: err}
	}
	return nil
}

// prepareChange checks path p before a change: absolute and clean, every
// directory on the way a directory (no symbolic link), and returns what
// is at p now (lstat; nil when nothing is).
func (c *Conn) prepareChange(ctx context.Context, p string) (*sftp.Client, fs.FileInfo, error) {
	if err := context.Cause(ctx); err != nil {
		return nil, nil, err
	}
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return nil, nil, fmt.Errorf("%q on %s is not an absolute, clean path to a file", p, c.host)
	}
	sc, err := c.sftpClient()
	if err != nil {
		return nil, nil, err
	}
	fi, err := checkPath(sc, p)
	if err != nil {
		return nil, nil, fmt.Errorf("%s on %s: %w", p, c.host, err)
	}
	return sc, fi, nil
}

// checkPath lstats every directory leading to p, and p, all at once (one
// round trip, not one per component): each directory must be one, not a
// symbolic link. It returns what is at p (nil when nothing is).
func checkPath(sc *sftp.Client, p string) (fs.FileInfo, error) {
	var paths []string
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		paths = append([]string{d}, paths...)
	}
	paths = append(paths, p)
	type answer struct {
		fi  fs.FileInfo
		err error
	}
	answers := make([]chan answer, len(paths))
	for i, q := range paths {
		answers[i] = make(chan answer, 1)
		go func() {
			fi, err := sc.Lstat(q)
			answers[i] <- answer{fi, err}
		}()
	}
	got := make([]answer, len(paths))
	for i := range paths {
		got[i] = <-answers[i]
	}
	for i, q := range paths[:len(paths)-1] {
		a := got[i]
		switch {
		case errors.Is(a.err, fs.ErrNotExist):
			return nil, fmt.Errorf("directory %s does not exist", q)
		case a.err != nil:
			return nil, fmt.Errorf("checking directory %s: %w", q, a.err)
		case a.fi.Mode()&fs.ModeSymlink != 0:
			return nil, fmt.Errorf("%s is a symbolic link; rotplan does not follow symbolic links on the way to a file it changes, since whoever can re-point one decides where the file goes: give the real path", q)
		case !a.fi.IsDir():
			return nil, fmt.Errorf("%s is not a directory", q)
		}
	}
	last := got[len(got)-1]
	switch {
	case errors.Is(last.err, fs.ErrNotExist):
		return nil, nil
	case last.err != nil:
		return nil, last.err
	}
	return last.fi, nil
}

// notRegular refuses to replace or remove what is not a regular file: a
// symbolic link may have been planted to send a key elsewhere.
func notRegular(p string, fi fs.FileInfo) error {
	m := fi.Mode()
	what := "not a regular file (" + m.Type().String() + ")"
	switch {
	case m&fs.ModeSymlink != 0:
		what = "a symbolic link"
	case m.IsDir():
		what = "a directory"
	}
	return fmt.Errorf("%s is %s; refusing to replace it", p, what)
}

// ReadFile returns the content of the file at p, at most limit bytes: a
// larger file is an error, not a truncated read. It reads as the SSH user
// can, following symbolic links: it is for looking, not for changing.
func (c *Conn) ReadFile(ctx context.Context, p string, limit int64) ([]byte, error) {
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	sc, err := c.sftpClient()
	if err != nil {
		return nil, err
	}
	f, err := sc.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s on %s: %w", p, c.host, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s on %s: %w", p, c.host, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("reading %s on %s: it holds more than %d bytes", p, c.host, limit)
	}
	return b, nil
}

// Stat describes the file at p, following a symbolic link. Owner reads
// its owner and group.
func (c *Conn) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	return c.stat(ctx, p, (*sftp.Client).Stat)
}

// Lstat describes the file at p; a symbolic link is described, not
// followed.
func (c *Conn) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	return c.stat(ctx, p, (*sftp.Client).Lstat)
}

func (c *Conn) stat(ctx context.Context, p string, stat func(*sftp.Client, string) (fs.FileInfo, error)) (fs.FileInfo, error) {
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	sc, err := c.sftpClient()
	if err != nil {
		return nil, err
	}
	fi, err := stat(sc, p)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", p, c.host, err)
	}
	return fi, nil
}

// Owner returns the uid and gid of a file Stat or Lstat described.
func Owner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*sftp.FileStat)
	if !ok {
		return 0, 0, false
	}
	return int(st.UID), int(st.GID), true
}

// Remove removes the file at p, which must not be a directory (a symbolic
// link is removed, not what it points to), through directories that are
// no symbolic links, then flushes the directory as WriteFile does. A file
// that is not there is an error satisfying errors.Is(err, fs.ErrNotExist).
func (c *Conn) Remove(ctx context.Context, p string) error {
	sc, fi, err := c.prepareChange(ctx, p)
	switch {
	case err != nil:
		return err
	case fi == nil:
		return fmt.Errorf("removing %s on %s: %w", p, c.host, fs.ErrNotExist)
	case fi.IsDir():
		return fmt.Errorf("removing %s on %s: it is a directory; refusing to remove it", p, c.host)
	}
	if err := sc.Remove(p); err != nil {
		return fmt.Errorf("removing %s on %s: %w", p, c.host, err)
	}
	return c.syncDir(ctx, path.Dir(p), p)
}

// RemoveLeftovers removes the temporary files that writes of p cut short
// left beside it, and returns their paths. A write of p under way at the
// same time then fails at its rename, having changed nothing.
func (c *Conn) RemoveLeftovers(ctx context.Context, p string) ([]string, error) {
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	sc, err := c.sftpClient()
	if err != nil {
		return nil, err
	}
	dir, base := path.Split(p)
	entries, err := sc.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("looking for leftovers of %s on %s: %w", p, c.host, err)
	}
	var removed []string
	for _, e := range entries {
		if !e.Mode().IsRegular() || !strings.HasPrefix(e.Name(), "."+base+tempInfix) {
			continue
		}
		q := dir + e.Name()
		if err := sc.Remove(q); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("removing %s on %s, left by a write cut short: %w", q, c.host, err)
		}
		removed = append(removed, q)
	}
	return removed, nil
}

// Saved is a copy of a file Backup kept on the host, and what the file was.
type Saved struct {
	// Path is the copy's path on the host.
	Path string
	// SHA256 is the content's digest in lower-case hex; Size, its
	// length.
	SHA256 string
	Size   int64
	// Mode, UID and GID are the original's.
	Mode     fs.FileMode
	UID, GID int
}

// maxBackup bounds the file Backup copies: certificates and keys are a
// few kilobytes.
const maxBackup = 16 << 20

// Backup copies the regular file at p into the directory dir on the same
// host (created 0700 when missing; its parent must exist) under p's base
// name, or that name with a counter when taken, and returns where, with
// the original's digest, mode and owner, so that Restore can put it back.
// The copy is created exclusively and owner-only, and is flushed with its
// directory; the content crosses the SSH channel twice and is written
// nowhere but on the host.
func (c *Conn) Backup(ctx context.Context, p, dir string) (Saved, error) {
	var s Saved
	sc, fi, err := c.prepareChange(ctx, p)
	switch {
	case err != nil:
		return s, err
	case fi == nil:
		return s, fmt.Errorf("backing up %s on %s: %w", p, c.host, fs.ErrNotExist)
	case !fi.Mode().IsRegular():
		return s, fmt.Errorf("backing up %s on %s: %w", p, c.host, notRegular(p, fi))
	}
	uid, gid, _ := Owner(fi)
	content, err := c.ReadFile(ctx, p, maxBackup)
	if err != nil {
		return s, err
	}
	if err := c.backupDir(ctx, sc, dir); err != nil {
		return s, fmt.Errorf("backing up %s: %w", p, err)
	}
	f, name, err := createExclusive(sc, dir, path.Base(p))
	if err != nil {
		return s, fmt.Errorf("backing up %s on %s: %w", p, c.host, err)
	}
	fail := func(err error) (Saved, error) {
		f.Close()
		sc.Remove(name)
		return Saved{}, fmt.Errorf("backing up %s on %s to %s: %w", p, c.host, name, err)
	}
	if _, err := f.Write(content); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	sum := sha256.Sum256(content)
	s = Saved{Path: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content)),
		Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), UID: uid, GID: gid}
	return s, c.syncDir(ctx, dir, name)
}

// backupDir makes sure dir is a directory, creating it when missing.
// Steps of one host back up at once over one connection, so another may
// create dir between the look and the mkdir; OpenSSH's SFTP server then
// answers a bare failure, not "exists", so a failed mkdir looks again, and
// what is there now must pass the same checks.
func (c *Conn) backupDir(ctx context.Context, sc *sftp.Client, dir string) error {
	for again := false; ; again = true {
		_, di, err := c.prepareChange(ctx, dir)
		switch {
		case err != nil:
			return err
		case di != nil && !di.IsDir():
			return fmt.Errorf("%s on %s is not a directory", dir, c.host)
		case di != nil:
			return nil
		}
		err = sc.Mkdir(dir)
		if err == nil || errors.Is(err, fs.ErrExist) {
			return nil
		}
		if again {
			return fmt.Errorf("creating %s on %s: %w", dir, c.host, err)
		}
	}
}

// createExclusive creates base, or base.1 and on, in dir: exclusively,
// and owner-only (ownerOnlyCreates).
func createExclusive(sc *sftp.Client, dir, base string) (*sftp.File, string, error) {
	for i := 0; i < 1000; i++ {
		name := path.Join(dir, base)
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		f, err := sc.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err == nil {
			return f, name, nil
		}
		if !errors.Is(err, fs.ErrExist) && !isFailure(err) {
			return nil, "", err
		}
		// OpenSSH reports an existing file as a plain failure: tell
		// that from other failures by looking.
		if _, serr := sc.Lstat(name); serr != nil {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("creating a copy of %s in %s: too many copies already", base, dir)
}

// isFailure reports an SFTP SSH_FX_FAILURE status, which OpenSSH (speaking
// version 3 of the protocol, which has no "file exists" status) returns
// for an exclusive create of a name that is taken.
func isFailure(err error) bool {
	var st *sftp.StatusError
	return errors.As(err, &st) && st.FxCode() == sftp.ErrSSHFxFailure
}

// Restore puts the copy s back at p with the original's mode and owner,
// by WriteFile (atomically, never readable by others on the way). The
// copy is checked against its digest first: a damaged or replaced copy
// must not become a service's key.
func (c *Conn) Restore(ctx context.Context, s Saved, p string) error {
	content, err := c.ReadFile(ctx, s.Path, maxBackup)
	if err != nil {
		return fmt.Errorf("restoring %s: %w", p, err)
	}
	if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != s.SHA256 || int64(len(content)) != s.Size {
		return fmt.Errorf("restoring %s on %s: the copy %s is damaged: its SHA-256 is %x, %s was recorded", p, c.host, s.Path, sum, s.SHA256)
	}
	return c.WriteFile(ctx, p, content, s.Mode, s.UID, s.GID)
}
