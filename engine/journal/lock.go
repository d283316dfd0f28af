package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
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
// An existing directory that others can write to is refused: whoever can
// write there can rewrite the journal and the backups.
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
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("state directory %s is writable by group or others (mode %04o); make it 0700", dir, fi.Mode().Perm())
	}
	return nil
}

// Acquire takes the state directory's lock without waiting. command says
// what the holder does ("run", "resume"), for whoever finds it held.
func Acquire(dir, command string) (*Lock, error) {
	path := filepath.Join(dir, "lock")
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
