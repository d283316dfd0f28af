package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces the file at path with data, given mode: it writes a
// temporary file in the same directory (created owner-only, named
// .BASE.tmp-RANDOM so that a collector reading *.prom or *.hcl never
// picks it up), syncs it, sets the mode (chmod, so the umask cannot
// narrow it), renames it over path and syncs the directory, which makes
// the rename durable. On error nothing is left beside path.
func Write(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, there is nothing there
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
