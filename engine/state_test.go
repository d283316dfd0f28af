package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
)

// TestLastSucceeded: the last run that succeeded is found behind runs that
// failed and a journal that cannot be read, and a state directory without
// a successful run has none.
func TestLastSucceeded(t *testing.T) {
	dir := t.TempDir()
	prog := compileWith(t, `
rec "a" {
  input = "x"
}
`, nil, steps.Registry{"rec": &record{}})
	failing := compileWith(t, `
rec "a" {
  input = "x"
  fail  = "boom"
}
`, nil, steps.Registry{"rec": &record{}})
	run := func(t *testing.T, p *Program) {
		t.Helper()
		j, err := journal.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions()
		opts.Journal = j
		_, _ = p.Apply(context.Background(), opts)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	journalOf := func(seq string) string { return filepath.Join(dir, "runs", seq+".journal") }
	for _, c := range []struct {
		name string
		// then changes the state directory; want is the journal of the
		// last success, "" for none.
		then func(t *testing.T)
		want string
	}{
		{name: "no run", then: func(*testing.T) {}},
		{name: "a failed run", then: func(t *testing.T) { run(t, failing) }},
		{name: "a run that succeeded", then: func(t *testing.T) { run(t, prog) }, want: journalOf("000002")},
		{name: "then one that failed", then: func(t *testing.T) { run(t, failing) }, want: journalOf("000002")},
		{name: "then a journal that cannot be read", want: journalOf("000002"), then: func(t *testing.T) {
			if err := os.WriteFile(journalOf("000004"), []byte("not a journal\nat all\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "then a success", then: func(t *testing.T) { run(t, prog) }, want: journalOf("000005")},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.then(t)
			r, err := LastSucceeded(dir)
			got := ""
			if r != nil {
				got = r.Path
				if r.Status != journal.StatusSucceeded || r.Finished.IsZero() {
					t.Errorf("status %q, finished %v", r.Status, r.Finished)
				}
			}
			if err != nil || got != c.want {
				t.Errorf("LastSucceeded = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
