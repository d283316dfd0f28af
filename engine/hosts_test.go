package engine

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// hostRecord is the rec kind able to run on hosts, with f as its host
// block: it records, by step, the host its Env was for.
type hostRecord struct {
	*record
	f     *fakeSetting
	mu    sync.Mutex
	hosts map[string]string
}

func (h *hostRecord) RunsOnHost() {}

func (h *hostRecord) Settings() steps.Settings { return steps.Settings{"host": h.f} }

func (h *hostRecord) Apply(ctx context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	h.mu.Lock()
	if h.hosts == nil {
		h.hosts = map[string]string{}
	}
	host, ok := env.Host()
	if !ok {
		host = "(here)"
	}
	h.hosts[env.Log.Name()] = host
	h.mu.Unlock()
	return h.record.Apply(ctx, env, cfg)
}

const hostsPlan = `variable "web" {
  default = { a = "10.0.0.1", b = "10.0.0.2" }
}
host "web" {
  for_each = var.web
  address  = "${each.value}:22"
}
host "db" {
  address = "10.0.1.1"
}
host "cache" {
  count   = 2
  address = "10.0.2.${count.index}"
}
rec "key" {
  for_each = var.web
  on       = host.web[each.key]
  input    = each.key
}
rec "one" {
  on    = host.web["b"]
  input = "x"
}
rec "db" {
  on    = host.db
  input = "x"
}
rec "cache" {
  count = 2
  on    = host.cache[count.index]
  input = "x"
}
rec "here" {
  input = "x"
}
`

// TestHosts: the engine evaluates every instance of a host block with
// its each or count, has the kind Check each, and hands each step the host
// its on names, by literal key, by its own key, or the whole block.
func TestHosts(t *testing.T) {
	f := &fakeSetting{}
	h := &hostRecord{record: &record{}, f: f}
	prog, diags := loadSource(t, hostsPlan, nil, steps.Registry{"rec": h})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	checked := append([]string(nil), f.checked...)
	sort.Strings(checked)
	if want := []string{"10.0.0.1:22", "10.0.0.2:22", "10.0.1.1", "10.0.2.0", "10.0.2.1"}; !reflect.DeepEqual(checked, want) {
		t.Errorf("Check saw %q, want %q", checked, want)
	}
	if _, err := prog.Apply(context.Background(), testOptions()); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		`rec.key["a"]`: `host.web["a"]`,
		`rec.key["b"]`: `host.web["b"]`,
		`rec.one`:      `host.web["b"]`,
		`rec.db`:       `host.db`,
		`rec.cache[0]`: `host.cache[0]`,
		`rec.cache[1]`: `host.cache[1]`,
		`rec.here`:     `(here)`,
	}
	got := map[string]string{}
	for name, host := range h.hosts {
		got[name[strings.LastIndex(name, ".rec.")+1:]] = host
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hosts by step:\n got %q\nwant %q", got, want)
	}
}

// TestHostsChangeTheDefinition: the same step on another host is
// another step, for resume.
func TestHostsChangeTheDefinition(t *testing.T) {
	kinds := func() steps.Registry { return steps.Registry{"rec": &hostRecord{record: &record{}, f: &fakeSetting{}}} }
	plan := "host \"a\" {\n  address = \"x\"\n}\nhost \"b\" {\n  address = \"x\"\n}\nrec \"s\" {\n  on = host.%s\n  input = \"x\"\n}\n"
	a, diags := loadSource(t, strings.Replace(plan, "%s", "a", 1), nil, kinds())
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	b, diags := loadSource(t, strings.Replace(plan, "%s", "b", 1), nil, kinds())
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if a.nodes["rec.s"].definition == b.nodes["rec.s"].definition {
		t.Error("rec.s on host.a and on host.b have one definition hash")
	}
	// The same host instance reached elsewhere (another address, port or
	// user) is another host too.
	for _, other := range []string{`address = "y"`, `address = "x:2222"`, `address = "admin@x"`} {
		moved, diags := loadSource(t, strings.Replace(strings.Replace(plan, "%s", "a", 1), `address = "x"`, other, 1), nil, kinds())
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		if moved.nodes["rec.s"].definition == a.nodes["rec.s"].definition {
			t.Errorf("rec.s on host.a keeps its definition hash when host.a says %s", other)
		}
	}
	same, _ := loadSource(t, strings.Replace(plan, "%s", "a", 1), nil, kinds())
	if same.nodes["rec.s"].definition != a.nodes["rec.s"].definition {
		t.Error("the same plan gives another definition hash")
	}
}

func TestHostErrors(t *testing.T) {
	tests := []struct {
		name, src      string
		summary, inDet string
		line           int
	}{
		{"undeclared instance", `host "web" {
  for_each = toset(["a"])
  address  = each.key
}
rec "k" {
  on    = host.web["z"]
  input = "x"
}`, "Reference to undeclared host instance", `host.web has no instance host.web["z"]`, 6},
		{"undeclared instance of each.key", `host "web" {
  for_each = toset(["a"])
  address  = each.key
}
rec "k" {
  for_each = toset(["a", "b"])
  on    = host.web[each.key]
  input = "x"
}`, "Reference to undeclared host instance", `host.web["b"]`, 7},
		{"whole block with instances", `host "web" {
  count   = 2
  address = "x"
}
rec "k" {
  on    = host.web
  input = "x"
}`, "Invalid on reference", "has for_each or count", 6},
		{"kind cannot run on a host", `host "web" {
  address = "x"
}
other "k" {
  on    = host.web
  input = "x"
}`, "other cannot run on a host", "remove on from other.k", 5},
		{"each outside for_each", `host "web" {
  address = each.key
}`, "Invalid reference", "each.key and each.value", 2},
		{"a step in a host block", `rec "a" {
  input = "x"
}
host "web" {
  address = rec.a.output
}`, "Invalid reference", "Only var.* and local.*", 5},
		{"check fails at the argument", `host "web" {
  for_each = toset(["a"])
  address  = "bad"
}`, "Invalid connection", `host.web["a"]: address: bad address`, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSetting{}
			if strings.Contains(tt.src, `"bad"`) {
				f.checkErr = &steps.AttrError{Path: "address", Err: errors.New("bad address")}
			}
			kinds := steps.Registry{"rec": &hostRecord{record: &record{}, f: f}, "other": &record{}}
			_, diags := loadSource(t, tt.src, nil, kinds)
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			d := diags[0]
			if d.Summary != tt.summary || !strings.Contains(d.Detail, tt.inDet) || d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Errorf("got %q (%s) at %v, want %q containing %q at line %d", d.Summary, d.Detail, d.Subject, tt.summary, tt.inDet, tt.line)
			}
		})
	}
}

// TestHostBlockNoKindUses: a host block no kind runs on is an error.
func TestHostBlockNoKindUses(t *testing.T) {
	_, diags := loadSource(t, "host \"web\" {\n  address = \"x\"\n}\n", nil, steps.Registry{"rec": &record{}})
	if len(diags) != 1 || diags[0].Summary != "Unsupported block type" || diags[0].Subject.Start.Line != 1 {
		t.Fatalf("want one error at the host block, got %v", diags)
	}
}

// hostPlanner is hostRecord with a preview, which records the host it
// was asked about.
type hostPlanner struct {
	*hostRecord
	planned []string
}

func (h *hostPlanner) Plan(_ context.Context, env *steps.Env, _ steps.Config) (steps.Preview, error) {
	host, ok := env.Host()
	if !ok {
		host = "(here)"
	}
	h.mu.Lock()
	h.planned = append(h.planned, host)
	h.mu.Unlock()
	return steps.Preview{Action: steps.Replace}, nil
}

// TestHostsPreview: the preview asks each kind on the step's host; a step
// whose host is wrong is not previewed at all, rather than here.
func TestHostsPreview(t *testing.T) {
	h := &hostPlanner{hostRecord: &hostRecord{record: &record{}, f: &fakeSetting{}}}
	src := "host \"bad\" {\n  address = \"x\"\n}\nhost \"good\" {\n  address = \"y\"\n}\nrec \"a\" {\n  on = host.bad\n  input = \"x\"\n}\nrec \"b\" {\n  on = host.good\n  input = \"x\"\n}\n"
	prog, diags := loadSource(t, src, nil, steps.Registry{"rec": &checkOnly{h, "x"}})
	if !diags.HasErrors() || prog == nil || prog.Valid() {
		t.Fatalf("want an invalid program, got %v", diags)
	}
	prog.Preview(context.Background(), testOptions())
	if want := []string{"host.good"}; !reflect.DeepEqual(h.planned, want) {
		t.Errorf("previewed on %q, want %q", h.planned, want)
	}
}

// checkOnly is a host kind whose host block refuses the address bad.
type checkOnly struct {
	*hostPlanner
	bad string
}

func (c *checkOnly) Settings() steps.Settings { return steps.Settings{"host": badAddress{c.f, c.bad}} }

// badAddress is fakeSetting refusing one address.
type badAddress struct {
	*fakeSetting
	bad string
}

func (b badAddress) Check(cfg steps.Config) error {
	if cfg.String("address") == b.bad {
		return errors.New("bad address")
	}
	return nil
}

// TestHostReachChangesTheDefinition: with the real host block, a changed
// port or user of the host a write runs on makes the write another step
// for resume.
func TestHostReachChangesTheDefinition(t *testing.T) {
	plan := `host "web" {
  address       = "10.0.0.1"
  known_hosts   = "/etc/ssh/ssh_known_hosts"
  identity_file = "/root/.ssh/id_ed25519"
  %s
}
write "cert" {
  on      = host.web
  path    = "/etc/web.pem"
  content = "x"
}
`
	def := func(extra string) string {
		t.Helper()
		prog, diags := loadSource(t, strings.Replace(plan, "%s", extra, 1), nil, steps.Default())
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		return prog.nodes["write.cert"].definition
	}
	base := def("")
	if def("") != base {
		t.Fatal("the same plan gives another definition hash")
	}
	for _, extra := range []string{"port = 2222", `user = "admin"`} {
		if def(extra) == base {
			t.Errorf("write.cert keeps its definition hash when its host says %s", extra)
		}
	}
}

// TestSignOnHostCompiles: a sign takes on (its key is made on the host),
// and its file arguments are checked when the plan is compiled.
func TestSignOnHostCompiles(t *testing.T) {
	plan := `vault {
  address = "https://127.0.0.1:8200"
}
host "web" {
  address       = "10.0.0.1"
  known_hosts   = "/etc/ssh/ssh_known_hosts"
  identity_file = "/root/.ssh/id_ed25519"
}
sign "web" {
  on               = host.web
  mount            = "pki-prod"
  role             = "web"
  common_name      = "web.example"
  key_path         = "/etc/tls/web.key"
  certificate_path = "%s"
}
`
	if _, diags := loadSource(t, strings.Replace(plan, "%s", "/etc/tls/web.pem", 1), nil, steps.Default()); diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	_, diags := loadSource(t, strings.Replace(plan, "%s", "web.pem", 1), nil, steps.Default())
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "is not an absolute, clean path") {
		t.Errorf("a relative certificate_path: %v", diags)
	}
}
