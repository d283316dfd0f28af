package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "f.prom")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := Write(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Errorf("the file holds %q", got)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v (%v), want 0644 whatever the umask", fi.Mode(), err)
	}
	old2 := make([]byte, 3)
	if n, _ := reader.Read(old2); string(old2[:n]) != "old" {
		t.Errorf("a reader of the old file read %q: the file was written in place", old2[:n])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left beside it: %v", entries)
	}
	// A target that cannot be replaced leaves no temporary file.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, []byte("x"), 0o644); err == nil {
		t.Error("replacing a non-empty directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("files left after a failed write: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

// TestWriteTable: the file is replaced whole, with the mode asked for
// whatever the umask and the mode of the file it replaces, and no
// temporary file is left, whether the write succeeds or fails.
func TestWriteTable(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	for _, c := range []struct {
		name string
		// before prepares dir and returns the path to write.
		before  func(t *testing.T, dir string) string
		wantErr bool
		// left is what dir must hold afterwards.
		left []string
	}{
		{name: "new file", left: []string{"rotplan.prom"},
			before: func(t *testing.T, dir string) string { return filepath.Join(dir, "rotplan.prom") }},
		{name: "replaces a file of another mode", left: []string{"rotplan.prom"},
			before: func(t *testing.T, dir string) string {
				path := filepath.Join(dir, "rotplan.prom")
				if err := os.WriteFile(path, []byte("old and longer than the new content, which must not keep its tail\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			}},
		{name: "the target is a directory", wantErr: true, left: []string{"rotplan.prom"},
			before: func(t *testing.T, dir string) string {
				path := filepath.Join(dir, "rotplan.prom")
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
				return path
			}},
		{name: "no such directory", wantErr: true,
			before: func(t *testing.T, dir string) string { return filepath.Join(dir, "missing", "rotplan.prom") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := c.before(t, dir)
			data := []byte("g 1\n")
			err := Write(path, data, 0o644)
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want an error: %v", err, c.wantErr)
			}
			if got := dirEntries(t, dir); !slices.Equal(got, c.left) {
				t.Errorf("the directory holds %q, want %q", got, c.left)
			}
			if c.wantErr {
				return
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("the file holds %q (%v), want %q", got, err, data)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode() != 0o644 {
				t.Errorf("the file's mode is %v (%v), want -rw-r--r--", fi.Mode(), err)
			}
		})
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
