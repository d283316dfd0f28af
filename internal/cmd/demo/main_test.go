package main

import (
	"maps"
	"math/big"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The demo prints the commands it runs for an operator to copy: each
// argument must come out of a shell as it went in, and plain words stay
// as they are.
func TestShellJoin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		plain string // the exact line, when no word needs quoting
	}{
		{"plain", []string{"run", "-state-dir", "/x/.demo/state", "examples/agents.hcl"}, "run -state-dir /x/.demo/state examples/agents.hcl"},
		{"a var with a list", []string{"-var", `apps=["a", "b"]`}, ""},
		{"a single quote", []string{"it's"}, ""},
		{"a dollar", []string{"$HOME", "`id`"}, ""},
		{"empty", []string{""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := shellJoin(tc.args)
			if tc.plain != "" && line != tc.plain {
				t.Errorf("shellJoin(%#v) = %#v, want %#v", tc.args, line, tc.plain)
			}
			out, err := exec.Command("sh", "-c", `for a in `+line+`; do printf '%s\n' "$a"; done; printf 'END\n'`).Output()
			if err != nil {
				t.Fatalf("sh: %v", err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "END\n"), "\n")
			got = got[:len(got)-1]
			if strings.Join(got, "\x00") != strings.Join(tc.args, "\x00") || len(got) != len(tc.args) {
				t.Errorf("a shell reads %q as %#v, want %#v", line, got, tc.args)
			}
		})
	}
}

// The fleet part's order check reads only what a watcher saw from
// outside: a round that sees a later stage serve its new certificate while
// an earlier stage still serves its old one breaks the order; a failed
// poll, or an old certificate again within a stage (nginx's old workers
// during its reload), does not.
func TestChangeOrder(t *testing.T) {
	order := [][]string{{"h1", "h2"}, {"h3", "h4"}}
	before := map[string]*big.Int{"h1": big.NewInt(1), "h2": big.NewInt(2), "h3": big.NewInt(3), "h4": big.NewInt(4)}
	// seen builds a round from "h1=new h3=old h2=-": - is a failed poll.
	seen := func(s string) map[string]*big.Int {
		round := map[string]*big.Int{}
		for _, f := range strings.Fields(s) {
			name, v, _ := strings.Cut(f, "=")
			switch v {
			case "old":
				round[name] = before[name]
			case "new":
				round[name] = big.NewInt(100 + before[name].Int64())
			default:
				round[name] = nil
			}
		}
		return round
	}
	for _, tc := range []struct {
		name   string
		rounds []string
		first  map[string]int
		err    string // what the error says; "" for none
	}{
		{"nothing watched", nil, map[string]int{"h1": 0, "h2": 0, "h3": 0, "h4": 0}, ""},
		{"in order", []string{
			"h4=old h3=old h2=old h1=old",
			"h4=old h3=old h2=new h1=old",
			"h4=old h3=old h2=new h1=new",
			"h4=old h3=new h2=new h1=new",
			"h4=new h3=new h2=new h1=new",
		}, map[string]int{"h1": 2, "h2": 1, "h3": 3, "h4": 4}, ""},
		{"the last stage after the last round", []string{
			"h4=old h3=old h2=new h1=new",
		}, map[string]int{"h1": 0, "h2": 0, "h3": 1, "h4": 1}, ""},
		{"failed polls and a reload's old worker", []string{
			"h4=old h3=old h2=- h1=new",
			"h4=old h3=old h2=new h1=old",
			"h4=- h3=new h2=new h1=new",
		}, map[string]int{"h1": 0, "h2": 1, "h3": 2, "h4": 3}, ""},
		{"a later stage first", []string{
			"h4=old h3=old h2=old h1=old",
			"h4=old h3=new h2=new h1=old",
			"h4=new h3=new h2=new h1=new",
		}, map[string]int{"h1": 2, "h2": 1, "h3": 1, "h4": 2}, "round 2: h3 served a new certificate while h1 still served the old one"},
		{"an earlier stage back to its old certificate", []string{
			"h4=old h3=old h2=new h1=new",
			"h4=new h3=new h2=old h1=new",
		}, map[string]int{"h1": 0, "h2": 0, "h3": 1, "h4": 1}, "round 2: h3 h4 served a new certificate while h2 still served the old one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rounds []map[string]*big.Int
			for _, r := range tc.rounds {
				rounds = append(rounds, seen(r))
			}
			first, err := changeOrder(order, before, rounds)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("changeOrder: %v, want no error", err)
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Errorf("changeOrder: %v, want %q", err, tc.err)
			}
			if !maps.Equal(first, tc.first) {
				t.Errorf("first rounds changed: %#v, want %#v", first, tc.first)
			}
		})
	}
}

// The demo cuts the fleet into the rollout's batches as examples/fleet.hcl
// does: by host key, batch_size at a time, the last batch what is left.
func TestBatches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		k     int
		want  [][]string
	}{
		{"two of two", []string{"h2", "h1", "h4", "h3"}, 2, [][]string{{"h1", "h2"}, {"h3", "h4"}}},
		{"one left", []string{"h1", "h2", "h3"}, 2, [][]string{{"h1", "h2"}, {"h3"}}},
		{"all at once", []string{"h3", "h1"}, 8, [][]string{{"h1", "h3"}}},
		{"none", nil, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := batches(tc.hosts, tc.k)
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("batches(%#v, %d) = %#v, want %#v", tc.hosts, tc.k, got, tc.want)
			}
		})
	}
}

// The fleet part says in one line why it cannot run; as root with
// everything installed it can.
func TestFleetMissing(t *testing.T) {
	if why := fleetMissing("", "examples/fleet.hcl"); why != "-cluster or -fleet is empty" {
		t.Errorf("no cluster plan: %q", why)
	}
	why := fleetMissing("examples/cluster.hcl", "examples/fleet.hcl")
	if strings.Contains(why, "\n") {
		t.Errorf("the reason is more than a line: %q", why)
	}
	if os.Geteuid() != 0 {
		if !strings.Contains(why, "root") {
			t.Errorf("not root: %q does not say root", why)
		}
		return
	}
	t.Logf("as root: %q", why)
}
