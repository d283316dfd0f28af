package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Sources for the fmt tests: one HCL's formatter changes, its canonical
// form, and one that does not parse (a second "=" on line 2).
const (
	messy     = "issue \"admin\" {\nmount=\"pki\"\n  ttl    = \"720h\"\n}\n"
	broken    = "issue \"admin\" {\n  mount = = \"pki\"\n}\n"
	notHCLExt = "a=1\n"
)

var tidy = string(hclwrite.Format([]byte(messy)))

// fmtFile is a file a fmt test starts with.
type fmtFile struct {
	src  string
	mode os.FileMode
}

func TestFmtCommand(t *testing.T) {
	if tidy == messy {
		t.Fatal("the messy source is already canonical: the tests would prove nothing")
	}
	tests := []struct {
		name  string
		files map[string]fmtFile // relative to the test's directory, its working directory
		args  []string
		exit  int
		// stdout is the exact output; stderr a substring of the errors.
		stdout string
		stderr string
		// want is each file's content afterwards; a file not named must be
		// left untouched, content and mtime.
		want map[string]string
	}{
		{
			name:   "messy file rewritten, mode kept",
			files:  map[string]fmtFile{"a.hcl": {messy, 0o640}},
			args:   []string{"a.hcl"},
			exit:   exitOK,
			stdout: "a.hcl\n",
			want:   map[string]string{"a.hcl": tidy},
		},
		{
			name:   "check lists and leaves the file",
			files:  map[string]fmtFile{"a.hcl": {messy, 0o640}},
			args:   []string{"-check", "a.hcl"},
			exit:   exitFailed,
			stdout: "a.hcl\n",
		},
		{
			name:  "canonical file untouched",
			files: map[string]fmtFile{"a.hcl": {tidy, 0o600}},
			args:  []string{"a.hcl"},
			exit:  exitOK,
		},
		{
			name:  "check of a canonical file",
			files: map[string]fmtFile{"a.hcl": {tidy, 0o600}},
			args:  []string{"-check", "a.hcl"},
			exit:  exitOK,
		},
		{
			name:   "syntax error",
			files:  map[string]fmtFile{"bad.hcl": {broken, 0o644}},
			args:   []string{"bad.hcl"},
			exit:   exitInvalid,
			stderr: "bad.hcl:2:11: error: ",
		},
		{
			name:   "syntax error in one file changes no other",
			files:  map[string]fmtFile{"a.hcl": {messy, 0o644}, "bad.hcl": {broken, 0o644}},
			args:   []string{"a.hcl", "bad.hcl"},
			exit:   exitInvalid,
			stderr: "bad.hcl:2:11: error: ",
		},
		{
			name:   "missing file changes no other",
			files:  map[string]fmtFile{"a.hcl": {messy, 0o644}},
			args:   []string{"a.hcl", "nope.hcl"},
			exit:   exitInvalid,
			stderr: "rotplan fmt: stat nope.hcl: no such file or directory",
		},
		{
			name: "directory: its *.hcl files only",
			files: map[string]fmtFile{
				"plans/b.hcl":       {messy, 0o644},
				"plans/a.hcl":       {messy, 0o600},
				"plans/c.hcl":       {tidy, 0o644},
				"plans/notes.txt":   {messy, 0o644},
				"plans/.#a.hcl":     {messy, 0o644},
				"plans/sub/d.hcl":   {messy, 0o644},
				"elsewhere/e.hcl":   {messy, 0o644},
				"plans/vars.hcl.in": {notHCLExt, 0o644},
			},
			args:   []string{"plans"},
			exit:   exitOK,
			stdout: "plans/a.hcl\nplans/b.hcl\n",
			want:   map[string]string{"plans/a.hcl": tidy, "plans/b.hcl": tidy},
		},
		{
			name: "no argument: the working directory",
			files: map[string]fmtFile{
				"a.hcl":     {messy, 0o644},
				"b.hcl":     {tidy, 0o644},
				"sub/c.hcl": {messy, 0o644},
			},
			exit:   exitOK,
			stdout: "a.hcl\n",
			want:   map[string]string{"a.hcl": tidy},
		},
		{
			name:   "a file named twice is formatted once",
			files:  map[string]fmtFile{"a.hcl": {messy, 0o644}},
			args:   []string{"a.hcl", ".", "./a.hcl"},
			exit:   exitOK,
			stdout: "a.hcl\n",
			want:   map[string]string{"a.hcl": tidy},
		},
		{
			name:  "check with diff",
			files: map[string]fmtFile{"a.hcl": {messy, 0o644}},
			args:  []string{"-check", "-diff", "a.hcl"},
			exit:  exitFailed,
			stdout: "a.hcl\n--- old/a.hcl\n+++ new/a.hcl\n@@ -1,4 +1,4 @@\n issue \"admin\" {\n" +
				"-mount=\"pki\"\n-  ttl    = \"720h\"\n+  mount = \"pki\"\n+  ttl   = \"720h\"\n }\n",
		},
		{
			name:  "usage error",
			files: map[string]fmtFile{"a.hcl": {messy, 0o644}},
			args:  []string{"-fast", "a.hcl"},
			exit:  exitInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			for name, f := range tt.files {
				writeFmtFile(t, name, f, old)
			}
			var stdout, stderr bytes.Buffer
			code := fmtCommand(tt.args, &stdout, &stderr)
			if code != tt.exit {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.exit, stderr.String())
			}
			if stdout.String() != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr.String())
			}
			for name, f := range tt.files {
				info, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if info.Mode().Perm() != f.mode {
					t.Errorf("%s: mode %v, want %v", name, info.Mode().Perm(), f.mode)
				}
				got, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				want, changed := tt.want[name]
				if !changed {
					want = f.src
					if !info.ModTime().Equal(old) {
						t.Errorf("%s: rewritten (mtime %v), want untouched", name, info.ModTime())
					}
				}
				if string(got) != want {
					t.Errorf("%s:\n%s\nwant:\n%s", name, got, want)
				}
			}
			// Every file is one the test wrote: no temporary file is left.
			filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
				if _, ok := tt.files[filepath.ToSlash(path)]; !ok && !d.IsDir() {
					t.Errorf("stray file %s", path)
				}
				return nil
			})
		})
	}
}

func writeFmtFile(t *testing.T, name string, f fmtFile, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(f.src), f.mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is narrowed by the umask; the test needs it exact.
	if err := os.Chmod(name, f.mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestFmtThroughSymlink: formatting a link rewrites what it points at and
// leaves the link a link.
func TestFmtThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real", "plan.hcl")
	link := filepath.Join(dir, "plan.hcl")
	writeFmtFile(t, target, fmtFile{messy, 0o640}, time.Now())
	if err := os.Symlink(filepath.Join("real", "plan.hcl"), link); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := fmtCommand([]string{link}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", info.Mode(), err)
	}
	got, _ := os.ReadFile(target)
	if string(got) != tidy {
		t.Errorf("target:\n%s\nwant:\n%s", got, tidy)
	}
	if info, _ := os.Stat(target); info.Mode().Perm() != 0o640 {
		t.Errorf("target mode %v, want 0640", info.Mode().Perm())
	}
}

func TestFmtHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := fmtCommand([]string{"-h"}, &stdout, &stderr); code != exitOK {
		t.Errorf("exit %d, want %d", code, exitOK)
	}
	for _, want := range []string{"Usage: rotplan fmt", "-check", "-diff", "Example:"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want string // after the --- and +++ lines
	}{
		{"no newline at end", "a\nb", "a\nb\n",
			"@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
		{"from empty", "", "a\n", "@@ -0,0 +1 @@\n+a\n"},
		{"to empty", "a\n", "", "@@ -1 +0,0 @@\n-a\n"},
		{"context is three lines", "1\n2\n3\n4\n5\n6\n7\n8\n", "1\n2\n3\n4\nfive\n6\n7\n8\n",
			"@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"},
		{"distant changes make two hunks", "a\n1\n2\n3\n4\n5\n6\n7\nb\n", "A\n1\n2\n3\n4\n5\n6\n7\nB\n",
			"@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -6,4 +6,4 @@\n 5\n 6\n 7\n-b\n+B\n"},
		{"close changes share a hunk", "a\n1\n2\n3\n4\n5\n6\nb\n", "A\n1\n2\n3\n4\n5\n6\nB\n",
			"@@ -1,8 +1,8 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n 6\n-b\n+B\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			writeUnifiedDiff(&out, "p.hcl", []byte(tt.a), []byte(tt.b))
			want := "--- old/p.hcl\n+++ new/p.hcl\n" + tt.want
			if out.String() != want {
				t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
			}
		})
	}
}

// TestUnifiedDiffIsShortest checks the diff on random inputs: applied to
// a as a patch, it must give b, and it must change no more lines than the
// longest common subsequence allows. (go-udiff's search is exact for the
// few changed lines here; past about a hundred it bounds its work, and a
// diff may then be longer than the shortest.)
func TestUnifiedDiffIsShortest(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	random := func() []string {
		lines := make([]string, rng.Intn(12))
		for i := range lines {
			lines[i] = fmt.Sprint(rng.Intn(4))
		}
		return lines
	}
	text := func(lines []string) []byte {
		var b bytes.Buffer
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		return b.Bytes()
	}
	for i := 0; i < 2000; i++ {
		a, b := random(), random()
		var out bytes.Buffer
		writeUnifiedDiff(&out, "p.hcl", text(a), text(b))
		got, edits, err := applyUnified(a, out.String())
		if err != nil {
			t.Fatalf("diff of %q and %q: %v:\n%s", a, b, err, out.String())
		}
		if strings.Join(got, ",") != strings.Join(b, ",") {
			t.Fatalf("diff of %q and %q turns a into %q:\n%s", a, b, got, out.String())
		}
		if want := len(a) + len(b) - 2*lcsLength(a, b); edits != want {
			t.Fatalf("diff of %q and %q: %d edits, want %d:\n%s", a, b, edits, want, out.String())
		}
	}
}

// applyUnified applies a unified diff of lines that all end in a newline
// to a, checking every line it keeps or removes, and counts the lines it
// removes and adds.
func applyUnified(a []string, diff string) (b []string, edits int, err error) {
	lines := strings.Split(strings.TrimSuffix(diff, "\n"), "\n")
	if diff == "" {
		return a, 0, nil
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return nil, 0, fmt.Errorf("no --- and +++ lines")
	}
	at := 0 // lines of a used so far
	for _, l := range lines[2:] {
		switch {
		case strings.HasPrefix(l, "@@ -"):
			var start int
			if _, err := fmt.Sscanf(l, "@@ -%d", &start); err != nil {
				return nil, 0, fmt.Errorf("hunk header %q: %v", l, err)
			}
			if start > 0 {
				start-- // 1-based, but for an empty side
			}
			if start < at || start > len(a) {
				return nil, 0, fmt.Errorf("hunk header %q out of order", l)
			}
			b, at = append(b, a[at:start]...), start
		case strings.HasPrefix(l, " "), strings.HasPrefix(l, "-"):
			if at >= len(a) || a[at] != l[1:] {
				return nil, 0, fmt.Errorf("line %q is not line %d of a", l, at+1)
			}
			if l[0] == ' ' {
				b = append(b, a[at])
			} else {
				edits++
			}
			at++
		case strings.HasPrefix(l, "+"):
			b = append(b, l[1:])
			edits++
		default:
			return nil, 0, fmt.Errorf("unexpected line %q", l)
		}
	}
	return append(b, a[at:]...), edits, nil
}

func lcsLength(a, b []string) int {
	n := make([][]int, len(a)+1)
	for i := range n {
		n[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				n[i][j] = n[i+1][j+1] + 1
			} else {
				n[i][j] = max(n[i+1][j], n[i][j+1])
			}
		}
	}
	return n[0][0]
}
