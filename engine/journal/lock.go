package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// lockFile and backupsDir are, beside runsDir, what a state directory
// holds: the lock and the copies of replaced files.
const (
	lockFile   = "lock"
	backupsDir = "backups"
)

// Lock is a held lock on a state directory. The kernel releases it when the
// holder exits, however it exits, so a killed run never blocks the next one.
type Lock struct {
	f *os.File
}

// Holder is who holds a lock, as the holder wrote it into the lock file.
type Holder struct {
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Command string    `json:"command"`
}

// LockedError says that another process holds the lock.
type LockedError struct {
	Dir    string
	Holder Holder // zero when the holder had not written it yet
}

func (e *LockedError) Error() string {
	if e.Holder.PID == 0 {
		return fmt.Sprintf("state directory %s is locked by another rotplan process", e.Dir)
	}
	return fmt.Sprintf("state directory %s is locked by rotplan pid %d (%s), running since %s",
		e.Dir, e.Holder.PID, e.Holder.Command, e.Holder.Since.Local().Format(time.RFC3339))
}

// OpenStateDir creates the state directory, owner-only, if it is missing.
// An existing directory that others can write to, or that belongs to a
// user other than the one rotplan runs as (or root), is refused, and so
// are such runs/ and backups/ directories and lock file in it: whoever
// can write there can rewrite the journal, which says what a resume does
// and a rollback restores, and the backups it restores from.
func OpenStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if err := checkOwnedEntry("state directory "+dir, dir, fi); err != nil {
		return err
	}
	for _, name := range []string{runsDir, backupsDir, lockFile} {
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("state directory %s: %w", dir, err)
		}
		want := fs.ModeDir
		if name == lockFile {
			want = 0
		}
		if fi.Mode().Type() != want {
			return fmt.Errorf("state directory %s: %s is a %s, not what rotplan keeps there; move it aside", dir, path, typeName(fi.Mode()))
		}
		if err := checkOwnedEntry("state directory "+dir+": "+path, path, fi); err != nil {
			return err
		}
	}
	return nil
}

// checkOwnedEntry refuses what is owned by someone other than the user
// rotplan runs as or root, or writable by group or others; what begins the
// message, and the message says how to put it right.
func checkOwnedEntry(what, path string, fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if euid := os.Geteuid(); int(st.Uid) != euid && st.Uid != 0 {
			return fmt.Errorf("%s is owned by %s: rotplan runs as %s and keeps its state only where it or root is the owner, since the owner could rewrite the journal and the backups; give it to %s (chown -R %d %s) or use another -state-dir",
				what, describeUID(int(st.Uid)), describeUID(euid), describeUID(euid), euid, path)
		}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		want := "0700"
		if !fi.IsDir() {
			want = "0600"
		}
		return fmt.Errorf("%s is writable by group or others (mode %04o); make it %s: chmod %s %s", what, perm, want, want, path)
	}
	return nil
}

// describeUID names a user for a message: "uid 998 (vaultprod)".
func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// typeName says what kind of file a mode is, for a message.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "special file"
}

// Acquire takes the state directory's lock without waiting. command says
// what the holder does ("run", "resume"), for whoever finds it held.
func Acquire(dir, command string) (*Lock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, Holder: readHolder(path)}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Whoever finds the lock held is told who holds it; a lock that
	// cannot say (a full disk) is given up rather than kept half made.
	b, _ := json.Marshal(Holder{PID: os.Getpid(), Since: time.Now().UTC(), Command: command})
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(append(b, '\n'), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("writing who holds the lock into %s: %w; free space in %s and try again", path, err, dir)
	}
	return &Lock{f: f}, nil
}

func readHolder(path string) Holder {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return h
	}
	_ = json.Unmarshal(b, &h)
	return h
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
