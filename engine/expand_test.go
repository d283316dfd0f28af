package engine

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
)

const instancesPlan = `
variable "apps" {
  default = ["app1", "app2", "app3"]
}
rec "leaf" {
  for_each = toset(var.apps)
  input    = "cert-${each.key}"
}
rec "key" {
  for_each = toset(var.apps)
  input    = rec.leaf[each.key].output
}
rec "pinned" {
  depends_on = [rec.leaf["app2"]]
  input      = "after app2"
}
rec "all" {
  input = join(",", [for k, v in rec.leaf : v.output])
}
rec "counted" {
  count = 2
  input = "n${count.index}"
}
rec "second" {
  input = rec.counted[1].output
}
rec "mapped" {
  for_each = { a = "x", b = "y" }
  input    = "${each.key}=${each.value}"
}
rec "after" {
  for_each   = toset(var.apps)
  depends_on = [rec.key[each.key]]
  input      = "after ${each.key}"
}
rec "nth" {
  count      = 2
  depends_on = [rec.counted[count.index]]
  input      = "n"
}
`

func TestForEachAndCountExpandPerInstance(t *testing.T) {
	rec := &record{}
	prog := compileWith(t, instancesPlan, nil, steps.Registry{"rec": rec})
	for addr, want := range map[string][]string{
		`rec.key["app1"]`: {`rec.leaf["app1"]`},
		`rec.key["app3"]`: {`rec.leaf["app3"]`},
		`rec.pinned`:      {`rec.leaf["app2"]`},
		`rec.all`:         {`rec.leaf["app1"]`, `rec.leaf["app2"]`, `rec.leaf["app3"]`},
		`rec.second`:      {`rec.counted[1]`},
		`rec.mapped["b"]`: {},
		// depends_on with each.key or count.index: the instance of the
		// same key only.
		`rec.after["app2"]`: {`rec.key["app2"]`},
		`rec.nth[1]`:        {`rec.counted[1]`},
	} {
		if got := prog.DependsOn(addr); !reflect.DeepEqual(got, want) {
			t.Errorf("%s depends on %v, want %v", addr, got, want)
		}
	}
	if n := len(prog.Steps()); n != 3+3+1+1+2+1+2+3+2 {
		t.Errorf("%d instances: %v", n, prog.Steps())
	}

	for i := range 5 {
		j, err := journal.Create(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions()
		opts.Journal, opts.Parallelism = j, 1+i%4
		if _, err := prog.Apply(context.Background(), opts); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		j.Close()
		outputs := map[string]string{}
		for _, r := range readJournal(t, j.Path()) {
			if r.Type == journal.StepSucceeded {
				var out struct{ Output string }
				if err := json.Unmarshal(r.Outputs, &out); err != nil {
					t.Fatal(err)
				}
				outputs[r.Step] = out.Output
			}
		}
		for addr, want := range map[string]string{
			`rec.key["app2"]`: "out:out:cert-app2",
			`rec.all`:         "out:out:cert-app1,out:cert-app2,out:cert-app3",
			`rec.second`:      "out:out:n1",
			`rec.mapped["a"]`: "out:a=x",
			`rec.counted[0]`:  "out:n0",
		} {
			if outputs[addr] != want {
				t.Errorf("%s output %q, want %q", addr, outputs[addr], want)
			}
		}
	}
}

func TestInstanceMistakes(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"each without for_each", `rec "a" { input = each.key }`, "each.key and each.value can be used only in a step with for_each"},
		{"count.index without count", `rec "a" { input = "${count.index}" }`, "count.index can be used only in a step with count"},
		{"for_each from a step", `
rec "a" { input = "x" }
rec "b" {
  for_each = toset([rec.a.output])
  input    = each.key
}`, "must be known before the run, so it may use variables and locals only"},
		{"undeclared instance", `
rec "a" {
  count = 2
  input = "x"
}
rec "b" { input = rec.a[5].output }`, `rec.a has no instance rec.a[5]`},
		{"undeclared key through each", `
rec "a" {
  for_each = toset(["x"])
  input    = each.key
}
rec "b" {
  for_each = toset(["x", "y"])
  input    = rec.a[each.key].output
}`, `rec.a has no instance rec.a["y"]`},
		{"each.key in depends_on without for_each", `
rec "a" {
  for_each = toset(["x"])
  input    = each.key
}
rec "b" {
  depends_on = [rec.a[each.key]]
}`, "may be each.key or count.index, of a step with for_each or count"},
		{"undeclared instance in depends_on", `
rec "a" {
  count = 2
  input = "x"
}
rec "b" { depends_on = [rec.a[5]] }`, `rec.a has no instance rec.a[5].`},
		{"undeclared key in depends_on", `
rec "a" {
  for_each = toset(["x"])
  input    = each.key
}
rec "b" {
  for_each   = toset(["x", "y"])
  depends_on = [rec.a[each.key]]
}`, `rec.a has no instance rec.a["y"]`},
		{"depends_on key of another step", `
rec "a" {
  for_each = toset(["x"])
  input    = each.key
}
rec "b" {
  for_each   = toset(["x"])
  depends_on = [rec.a[rec.a["x"].output]]
}`, "Invalid depends_on reference"},
		{"negative count", `
rec "a" {
  count = -1
}`, "count must be a whole number from 0"},
		{"for_each a number", `
rec "a" {
  for_each = 3
}`, "for_each must be a map, or a set of strings"},
		{"both", `
rec "a" {
  count    = 1
  for_each = toset(["x"])
}`, "count or for_each, not both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, diags := compileSource(t, c.src, nil)
			if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) {
				t.Errorf("diagnostics %v, want one saying %q", diags, c.want)
			}
		})
	}
}

// finishes tells an Observer's step ends to a channel.
type finishes chan string

func (f finishes) StepStarted(string)        {}
func (f finishes) StepFinished(r StepResult) { f <- r.Addr }

func TestInstanceWaitsOnlyForItsOwnDependency(t *testing.T) {
	for range 20 {
		g := newGate()
		prog := compileWith(t, `
gate "leaf" {
  for_each = toset(["app1", "app2"])
  input    = each.key
}
sink "key" {
  for_each = toset(["app1", "app2"])
  input    = gate.leaf[each.key].output
}
`, nil, steps.Registry{"gate": g, "sink": sink{}})
		ended := make(finishes, 10)
		opts := testOptions()
		opts.Observer = ended
		done := startApply(prog, opts)
		// app1's leaf ends while app2's stays blocked: app1's key must not
		// wait for it.
		g.release(`gate.leaf["app1"]`) <- nil
		for addr := ""; addr != `sink.key["app1"]`; {
			select {
			case addr = <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal(`sink.key["app1"] did not run while gate.leaf["app2"] was still running`)
			}
		}
		g.release(`gate.leaf["app2"]`) <- nil
		if res := <-done; res.err != nil {
			t.Fatalf("Apply: %v", res.err)
		}
	}
}
