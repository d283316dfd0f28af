package steps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rotplan/rotplan/internal/command"
	"golang.org/x/sys/unix"
)

// stepDir is a directory a write or a chown works in, opened once and kept
// open: every file operation of the step, and of its rollback in the same
// process, goes through the descriptor (openat, renameat, fchownat,
// unlinkat), so a directory renamed or re-pointed after it was opened
// cannot send a file anywhere else. dev and ino identify it in a snapshot,
// so that a rollback in a later process can tell whether the path still
// leads to it.
type stepDir struct {
	path     string // absolute and clean, as resolved
	f        *os.File
	dev, ino uint64
}

// fd is the descriptor the *at calls take.
func (d *stepDir) fd() int { return int(d.f.Fd()) }

// join names a file of the directory in messages.
func (d *stepDir) join(name string) string { return filepath.Join(d.path, name) }

// lstat describes the directory entry name without following it, as
// os.Lstat does for a path. O_PATH opens even a symbolic link or a file
// that cannot be read, and opens nothing a device driver sees.
func (d *stepDir) lstat(name string) (fs.FileInfo, error) {
	fd, err := unix.Openat(d.fd(), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.join(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.join(name))
	defer f.Close()
	return f.Stat()
}

// open opens the regular file name of the directory for reading, not
// following a symbolic link; O_NONBLOCK keeps a named pipe from blocking.
func (d *stepDir) open(name string) (*os.File, error) {
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.join(name), Err: err}
	}
	return os.NewFile(uintptr(fd), d.join(name)), nil
}

// sync flushes the directory, which makes a rename or an unlink in it
// survive a crash.
func (d *stepDir) sync() error { return d.f.Sync() }

// dirTrust is whom a step trusts to own the directories on the way to its
// files: root and the user rotplan runs as always, and the step's
// trust_owner when it names one (uid -1 when not).
type dirTrust struct {
	uid int
}

// trusts reports whether a directory owned by uid may be on the path.
func (t dirTrust) trusts(uid int) bool {
	return uid == 0 || uid == os.Geteuid() || (t.uid >= 0 && uid == t.uid)
}

// stepTrust reads a block's optional trust_owner argument.
func stepTrust(cfg Config) (dirTrust, error) {
	t := dirTrust{uid: -1}
	if !cfg.Set("trust_owner") {
		return t, nil
	}
	s, err := cfg.RequireString("trust_owner")
	if err != nil {
		return t, err
	}
	uid, err := lookupUID(s)
	if err != nil {
		return t, &AttrError{Path: cfg.Path("trust_owner"), Err: err}
	}
	return dirTrust{uid: uid}, nil
}

// key tells trusts apart in the run's cache of opened directories.
func (t dirTrust) key() string { return strconv.Itoa(t.uid) }

// openDirCached returns the directory dir of the run, opened by the first
// step that needed it with the same trust (directories checked once for
// the hundreds of files a plan may write into one, and every step working
// in the directory it found then). Failures are not kept: the next step
// tries again and reports what it finds. Without an Env (a caller outside
// a run), it opens the directory afresh.
func openDirCached(env *Env, dir string, trust dirTrust) (*stepDir, error) {
	abs, err := absPath(dir)
	if err != nil {
		return nil, err
	}
	if env == nil || env.session == nil {
		return openStepDir(abs, trust)
	}
	key := trust.key() + "\x00" + abs
	if d, ok := env.session.dirs.Load(key); ok {
		return d.(*stepDir), nil
	}
	d, err := openStepDir(abs, trust)
	if err != nil {
		return nil, err
	}
	if prev, loaded := env.session.dirs.LoadOrStore(key, d); loaded {
		d.f.Close()
		return prev.(*stepDir), nil
	}
	return d, nil
}

// cachedDir returns the directory a step of this run opened at path, if one
// did, whatever the trust it was opened with: a rollback in the process
// that made the change works in the directory the change was made in.
func cachedDir(env *Env, dir string) *stepDir {
	if env == nil || env.session == nil {
		return nil
	}
	abs, err := absPath(dir)
	if err != nil {
		return nil
	}
	var found *stepDir
	env.session.dirs.Range(func(k, v any) bool {
		if _, p, _ := strings.Cut(k.(string), "\x00"); p == abs {
			found = v.(*stepDir)
			return false
		}
		return true
	})
	return found
}

// absPath makes a path absolute against the working directory as the
// kernel knows it: $PWD, which os.Getwd prefers, may go through a symbolic
// link the operator cd'ed through.
func absPath(p string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	wd, err := syscall.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory for %s: %w", p, err)
	}
	return filepath.Join(wd, p), nil
}

// openStepDir opens the absolute directory dir by walking it from / one
// component at a time, never following a symbolic link (O_NOFOLLOW on
// each), and checks every directory on the way as it passes it, as OpenSSH
// checks the path to an authorized_keys file: each must belong to root, to
// the user rotplan runs as or to trust's user, and must not let its group
// or others rename what is in it (unless it is sticky, as /tmp, where only
// an entry's owner can, and the next directory's owner is checked in
// turn). Checking the descriptors the walk holds, not the path afterwards,
// leaves no moment at which a component could be swapped between the
// check and the use. A single openat2(RESOLVE_NO_SYMLINKS) would resolve
// the path just as safely but check no owner on the way.
func openStepDir(dir string, trust dirTrust) (*stepDir, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /: %w", err)
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	if err := checkDirComponent("/", dir, fd, trust); err != nil {
		return nil, err
	}
	cur := "/"
	for _, name := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		if name == "" {
			continue
		}
		next := filepath.Join(cur, name)
		nfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, componentError(fd, cur, next, dir, name, err)
		}
		unix.Close(fd)
		fd = nfd
		if err := checkDirComponent(next, dir, fd, trust); err != nil {
			return nil, err
		}
		cur = next
	}
	// An O_PATH descriptor cannot be fsynced: the directory itself is
	// opened for reading, through the one the walk checked.
	rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil {
		unix.Close(rfd)
		return nil, fmt.Errorf("directory %s: %w", dir, err)
	}
	return &stepDir{path: dir, f: os.NewFile(uintptr(rfd), dir), dev: st.Dev, ino: st.Ino}, nil
}

// componentError says why the walk could not go from parent (open as fd)
// into next, on its way to dir.
func componentError(fd int, parent, next, dir, name string, err error) error {
	var st unix.Stat_t
	switch {
	case errors.Is(err, unix.ENOENT) && next == dir:
		return fmt.Errorf("directory %s does not exist", dir)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("directory %s does not exist (%s is missing)", dir, next)
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return symlinkInPathError(next, dir)
		}
		return fmt.Errorf("%s is not a directory", next)
	}
	return fmt.Errorf("directory %s: opening %s: %w", dir, next, err)
}

// symlinkInPathError refuses a symbolic link on the way to a directory and
// says what to give instead.
func symlinkInPathError(link, dir string) error {
	hint := "give the directory's real path"
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		hint += ", " + real
	}
	target, _ := os.Readlink(link)
	return &unsafeDirError{
		what: fmt.Sprintf("%s is a symbolic link (to %s); rotplan does not follow symbolic links on the way to a file it writes or hands over, since whoever can re-point one decides where the file goes", link, target),
		hint: hint,
	}
}

// unsafeDirError is a directory path openStepDir refuses: what is wrong,
// and what to change for a step to work there, which a rollback leaves
// out (the directory it must work in is the one it changed, not another).
type unsafeDirError struct {
	what, hint string
}

func (e *unsafeDirError) Error() string { return e.what + ": " + e.hint }

// checkDirComponent checks one directory on the way to dir, as the walk
// holds it open.
func checkDirComponent(path, dir string, fd int, trust dirTrust) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("directory %s: %s: %w", dir, path, err)
	}
	uid := int(st.Uid)
	if !trust.trusts(uid) {
		hint := fmt.Sprintf("make it root's (chown root %s)", command.ShellWord(path))
		if trust.uid < 0 {
			hint += fmt.Sprintf(", or, if that user is the one the files are for and may decide where they go, set trust_owner = %q in the step", userName(uid))
		}
		return &unsafeDirError{
			what: fmt.Sprintf("directory %s is not safe to work in: %s belongs to %s, who could rename it or what is in it and put another directory in its place", dir, path, describeUser(uid)),
			hint: hint,
		}
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		who := "every user"
		if st.Mode&0o002 == 0 {
			who = fmt.Sprintf("group %d", st.Gid)
		}
		return &unsafeDirError{
			what: fmt.Sprintf("directory %s is not safe to work in: %s is writable by %s, who could rename what is in it", dir, path, who),
			hint: fmt.Sprintf("take that away (chmod go-w %s) or make it sticky (chmod +t %s)", command.ShellWord(path), command.ShellWord(path)),
		}
	}
	return nil
}

// describeUser names a uid for a message: "uid 1001 (vaultprod)".
func describeUser(uid int) string {
	if name := userName(uid); name != strconv.Itoa(uid) {
		return fmt.Sprintf("uid %d (%s)", uid, name)
	}
	return fmt.Sprintf("uid %d", uid)
}

// reopenRecorded opens the directory at path afresh, as openStepDir does,
// and returns it if it is the one a snapshot recorded (dev and ino): a
// rollback in a later process than the change must not work in a directory
// that took the place of the one changed.
func reopenRecorded(path string, trust dirTrust, dev, ino uint64) (*stepDir, error) {
	d, err := openStepDir(path, trust)
	if err != nil {
		return nil, err
	}
	if d.dev != dev || d.ino != ino {
		d.f.Close()
		return nil, &movedDirError{path: path, dev: dev, ino: ino, nowDev: d.dev, nowIno: d.ino}
	}
	return d, nil
}

// movedDirError is a directory that is no longer the one the step changed.
type movedDirError struct {
	path                     string
	dev, ino, nowDev, nowIno uint64
}

func (e *movedDirError) Error() string {
	return fmt.Sprintf("directory %s is not the one the step changed (device %d, inode %d then; device %d, inode %d now): it was moved or replaced since, and rotplan will not work in another directory; find the one it changed (find / -inum %d -type d) and check who moved it", e.path, e.dev, e.ino, e.nowDev, e.nowIno, e.ino)
}

// recordedDir is the identity of the directory a step changed, as its
// snapshot records it, with the trust it was checked with. ok is false in
// a snapshot that records none (journaled by an earlier version).
type recordedDir struct {
	ok       bool
	dev, ino uint64
	trust    dirTrust
}

// recordDir adds d's identity and trust to a snapshot.
func recordDir(snap map[string]string, d *stepDir, trust dirTrust) {
	snap["dir_dev"] = strconv.FormatUint(d.dev, 10)
	snap["dir_ino"] = strconv.FormatUint(d.ino, 10)
	if trust.uid != -1 {
		snap["trust_uid"] = strconv.Itoa(trust.uid)
	}
}

// parseRecordedDir reads back what recordDir wrote; the snapshot comes from
// the journal, so what is there must be well formed.
func parseRecordedDir(snapshot map[string]string) (recordedDir, error) {
	r := recordedDir{trust: dirTrust{uid: -1}}
	if _, ok := snapshot["trust_uid"]; ok {
		uid, err := journaledID(snapshot, "snapshot", "trust_uid", false)
		if err != nil {
			return r, err
		}
		r.trust.uid = uid
	}
	dev, hasDev := snapshot["dir_dev"]
	ino, hasIno := snapshot["dir_ino"]
	if !hasDev && !hasIno {
		return r, nil
	}
	var err1, err2 error
	r.dev, err1 = strconv.ParseUint(dev, 10, 64)
	r.ino, err2 = strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil || !isDigits(dev) || !isDigits(ino) {
		return r, fmt.Errorf("the journaled snapshot's dir_dev %q and dir_ino %q are not a device and inode number", dev, ino)
	}
	r.ok = true
	return r, nil
}

// rollbackDir returns the directory a rollback works in: the one the step
// changed. In the process that changed it, that is the descriptor the run
// kept, wherever the directory is now; a warning says so when its path no
// longer leads to it. In a later process (a resume), the path is resolved
// again as openStepDir does and must lead to the directory the snapshot
// recorded: if it leads to another, the rollback refuses (movedDirError),
// since restoring there would change files the step never touched.
func rollbackDir(env *Env, dir string, rec recordedDir) (*stepDir, error) {
	if d := cachedDir(env, dir); d != nil && (!rec.ok || (d.dev == rec.dev && d.ino == rec.ino)) {
		now, err := openStepDir(d.path, rec.trust)
		switch {
		case err != nil:
			env.Log.Warn("the directory the step changed is not at its path any more; rolling back in it all the same, through the descriptor kept since", "path", d.path, "now", err.Error())
		case now.dev != d.dev || now.ino != d.ino:
			env.Log.Warn("the directory the step changed was moved or replaced; rolling back in it all the same, through the descriptor kept since", "path", d.path)
		}
		if now != nil {
			now.f.Close()
		}
		return d, nil
	}
	abs, err := absPath(dir)
	if err != nil {
		return nil, err
	}
	var d *stepDir
	if !rec.ok {
		d, err = openStepDir(abs, rec.trust)
	} else {
		d, err = reopenRecorded(abs, rec.trust, rec.dev, rec.ino)
	}
	if unsafe, ok := err.(*unsafeDirError); ok {
		return nil, fmt.Errorf("%s no longer leads safely to the directory the step changed: %s", abs, unsafe.what)
	}
	return d, err
}
