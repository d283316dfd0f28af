package testvault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PrepareDir empties dir for a harness program (the demo, the benchmark)
// and returns its absolute path. It refuses to remove anything that does not
// look like an earlier run of that program: a directory that is not empty
// must hold the marker file, which PrepareDir leaves in it.
func PrepareDir(dir, marker string) (string, error) {
	if dir == "" {
		return "", errors.New("-dir is empty")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if abs == filepath.Dir(abs) || isAncestorOrSelf(abs, cwd) {
		return "", fmt.Errorf("refusing to use %s as work directory (it contains the current directory)", abs)
	}
	if home, err := os.UserHomeDir(); err == nil && isAncestorOrSelf(abs, home) {
		return "", fmt.Errorf("refusing to use %s as work directory (it contains the home directory)", abs)
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return "", err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(abs, marker)); err != nil {
			return "", fmt.Errorf("refusing to remove %s: not empty and not created by this program (no %s)", abs, marker)
		}
	}
	if err := os.RemoveAll(abs); err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(abs, marker), []byte("created by a rotplan harness program; removed on its next run\n"), 0o644); err != nil {
		return "", err
	}
	return abs, nil
}

func isAncestorOrSelf(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// SetAside moves an earlier run's work directory (one that holds marker)
// out of the way, to dir+".old", so that PrepareDir finds nothing to
// remove, and returns a function that removes it. The benchmark removes it
// after measuring: on some file systems (ext4 without a journal), creating
// files right after tens of thousands were deleted costs several times as
// much, for minutes, and would be measured instead of rotplan.
func SetAside(dir, marker string) (remove func() error, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	old := abs + ".old"
	if _, err := os.Stat(filepath.Join(old, marker)); err == nil {
		// Left by a run that did not finish: it goes now.
		if err := os.RemoveAll(old); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(abs, marker)); err != nil {
		return func() error { return nil }, nil
	}
	if err := os.Rename(abs, old); err != nil {
		return nil, err
	}
	return func() error { return os.RemoveAll(old) }, nil
}
