package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// prodGraphArgs are the variables examples/prod.hcl needs to compile on any
// machine: its directories must exist, its owner must be a user, and ca_cert
// must not depend on the environment.
func prodGraphArgs(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	return []string{"-var", "ca_cert=/x", "-var", "admin_dir=" + dir, "-var", "server_dir=" + dir,
		"-var", "owner=root", "-var", "group=root", "../../examples/prod.hcl"}
}

var (
	dotNode = regexp.MustCompile(`^  ("(?:[^"\\]|\\.)*") \[label="((?:[^"\\]|\\.)*)", shape=box\];$`)
	dotEdge = regexp.MustCompile(`^  ("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*");$`)
)

// TestGraphProd checks the example plan's graph by its structure: its frame,
// one node per step in run order, and every edge going forward in that order.
func TestGraphProd(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := graphCommand(prodGraphArgs(t), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "digraph rotplan {\n  rankdir=LR;\n") || !strings.HasSuffix(out, "\n}\n") {
		t.Fatalf("not a rotplan digraph:\n%s", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n}\n"), "\n")[2:]
	position := map[string]int{}
	var edges []string
	for _, line := range lines {
		if m := dotNode.FindStringSubmatch(line); m != nil {
			if len(edges) > 0 {
				t.Errorf("node after the edges: %s", line)
			}
			if _, dup := position[m[1]]; dup {
				t.Errorf("node twice: %s", line)
			}
			kind, name, _ := strings.Cut(strings.Trim(m[1], `"`), ".")
			if want := kind + `\n` + name; m[2] != want {
				t.Errorf("label %s, want %s", m[2], want)
			}
			position[m[1]] = len(position)
			continue
		}
		m := dotEdge.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("neither node nor edge: %q", line)
			continue
		}
		from, okFrom := position[m[1]]
		to, okTo := position[m[2]]
		if !okFrom || !okTo {
			t.Errorf("edge between undeclared nodes: %s", line)
		} else if from >= to {
			t.Errorf("edge against the run order: %s", line)
		}
		edges = append(edges, m[1]+" -> "+m[2])
	}
	if len(position) != 14 {
		t.Errorf("%d nodes, want 14", len(position))
	}
	for _, want := range []string{
		`"issue.admin" -> "write.admin_key"`,       // an output used in an expression
		`"write.admin_key" -> "write.admin_crt"`,   // depends_on
		`"write.server_key" -> "chown.server_tls"`, // an output in a list
		`"chown.server_tls" -> "reload.vault"`,     // depends_on
		`"verify.admin_status" -> "issue.server"`,  // depends_on across the two halves
		`"issue.server" -> "verify.check_b"`,       // expect_serial
		`"reload.vault" -> "verify.check_a"`,       // depends_on
		`"write.admin_issuing_ca" -> "verify.admin_status"`,
	} {
		if !slices.Contains(edges, want) {
			t.Errorf("no edge %s in:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{
		`"write.admin_key" -> "issue.admin"`, // backwards
		`"issue.admin" -> "verify.check_a"`,  // not direct
	} {
		if slices.Contains(edges, unwanted) {
			t.Errorf("edge %s should not be there", unwanted)
		}
	}
	for i := 1; i < len(edges); i++ {
		if edgeKey(position, edges[i-1]) >= edgeKey(position, edges[i]) {
			t.Errorf("edges out of order: %s before %s", edges[i-1], edges[i])
		}
	}
	// The same plan prints the same graph.
	var again bytes.Buffer
	graphCommand(prodGraphArgs(t), &again, &stderr)
	if again.String() != out {
		t.Errorf("second run differs:\n%s\nfirst:\n%s", again.String(), out)
	}
}

// edgeKey orders edges by their source, then their target, in run order.
func edgeKey(position map[string]int, edge string) int {
	from, to, _ := strings.Cut(edge, " -> ")
	return position[from]*1000 + position[to]
}

// TestGraphOddNames: names with dashes and non-ASCII letters, which DOT
// would not take unquoted, print as quoted IDs; the whole output is checked.
func TestGraphOddNames(t *testing.T) {
	plan := filepath.Join(t.TempDir(), "odd.hcl")
	src := `reload "web-1" {
  command = ["/bin/true"]
}

reload "ünï_2" {
  depends_on = [reload.web-1]
  command    = ["/bin/true"]
}

reload "0ld" {
  command = ["/bin/true"]
}
`
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := graphCommand([]string{plan}, &stdout, &stderr)
	// "0ld" is not a valid name: the plan is refused, with its position.
	if code != exitInvalid || !strings.Contains(stderr.String(), plan+":10:8: error: Invalid step name") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("an invalid plan printed a graph:\n%s", stdout.String())
	}

	src = strings.TrimSuffix(src, "reload \"0ld\" {\n  command = [\"/bin/true\"]\n}\n")
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := graphCommand([]string{plan}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	want := `digraph rotplan {
  rankdir=LR;
  "reload.web-1" [label="reload\nweb-1", shape=box];
  "reload.ünï_2" [label="reload\nünï_2", shape=box];
  "reload.web-1" -> "reload.ünï_2";
}
`
	if stdout.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", stdout.String(), want)
	}
}

func TestDOTEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "issue.admin", `"issue.admin"`},
		{"dash and non-ASCII", "reload.web-ünï", `"reload.web-ünï"`},
		{"quote", `a"b`, `"a\"b"`},
		{"backslash", `a\nb`, `"a\\nb"`},
		{"newline", "a\nb", `"a\nb"`},
		{"keyword", "node", `"node"`},
		{"empty", "", `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dotQuote(tt.in); got != tt.want {
				t.Errorf("dotQuote(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestGraphUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		exit int
		want string // in stderr
	}{
		{"help", []string{"-h"}, exitOK, "Usage: rotplan graph"},
		{"no plan", nil, exitInvalid, "give exactly one plan file"},
		{"two plans", []string{"a.hcl", "b.hcl"}, exitInvalid, "give exactly one plan file"},
		{"missing plan", []string{"testdata/does-not-exist.hcl"}, exitInvalid, "does-not-exist.hcl"},
		{"undeclared variable", []string{"-var", "nope=1", "../../examples/prod.hcl"}, exitInvalid, "Value for undeclared variable"},
		{"missing var file", []string{"-var-file", "testdata/none.hcl", "../../examples/prod.hcl"}, exitInvalid, "none.hcl"},
		{"invalid plan", []string{"-var", "dir=testdata", "../../internal/e2e/testdata/cycle.hcl"}, exitInvalid, "cycle.hcl:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := graphCommand(tt.args, &stdout, &stderr); code != tt.exit {
				t.Errorf("exit %d, want %d", code, tt.exit)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout:\n%s", stdout.String())
			}
		})
	}
}
