package steps

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// testConfig builds the Config the engine would hand a step for a block that
// sets vals: every attribute of spec is present, null when not in vals, as
// hcldec decodes an omitted optional argument. Values are converted to the
// spec's types the way hcldec converts them (a number to a string, a tuple to
// a list); marks survive the conversion.
func testConfig(t testing.TB, spec hcldec.ObjectSpec, vals map[string]cty.Value) Config {
	t.Helper()
	ty := hcldec.ImpliedType(spec)
	attrs := map[string]cty.Value{}
	for name, v := range vals {
		if v == cty.NilVal {
			continue // a zero cty.Value in a table: omitted
		}
		if !ty.HasAttribute(name) {
			t.Fatalf("testConfig: %q is not an argument of this kind", name)
		}
		want := ty.AttributeType(name)
		if !v.Type().Equals(want) {
			conv, err := convert.Convert(v, want)
			if err != nil {
				t.Fatalf("testConfig: %s: %v", name, err)
			}
			v = conv
		}
		attrs[name] = v
	}
	for name, at := range ty.AttributeTypes() {
		if _, ok := attrs[name]; !ok {
			attrs[name] = cty.NullVal(at)
		}
	}
	return NewConfig(cty.ObjectVal(attrs))
}

// testEnv returns an Env whose log lines (every level) go to the test log
// and to the returned builder, so a test can check what was, and was not,
// logged.
func testEnv(t *testing.T) (*Env, *strings.Builder) {
	t.Helper()
	var buf strings.Builder
	log := hclog.New(&hclog.LoggerOptions{
		Name:   t.Name(),
		Level:  hclog.Trace,
		Output: &testLogWriter{t: t, buf: &buf},
	})
	return NewEnv(log), &buf
}

// vaultEnv returns an Env that reaches Vault through conn, as one whose
// vault block Open read conn from.
func vaultEnv(log hclog.Logger, conn VaultConnection) *Env {
	env := NewEnv(log)
	env.session.conn = conn
	return env
}

type testLogWriter struct {
	t   *testing.T
	buf *strings.Builder
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// attrErrorPaths returns the paths of every *AttrError in err's tree, sorted.
func attrErrorPaths(err error) []string {
	var paths []string
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if ae, ok := err.(*AttrError); ok {
			paths = append(paths, ae.Path)
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	sort.Strings(paths)
	return paths
}

// wantAttrErr fails the test unless err holds an *AttrError on path, and
// returns that error's message for further checks.
func wantAttrErr(t *testing.T, err error, path string) string {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one on %q", path)
	}
	if errors.Is(err, ErrUnknown) {
		t.Fatalf("got ErrUnknown, want an error on %q", path)
	}
	for _, p := range attrErrorPaths(err) {
		if p == path {
			return err.Error()
		}
	}
	t.Fatalf("got error %q (argument errors on %v), want one on %q", err, attrErrorPaths(err), path)
	return ""
}

// wantErrContains fails the test unless err is non-nil and its message holds
// every one of subs.
func wantErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
}

// requireRoot skips a test that changes file ownership unless it runs as
// root.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s (run the tests as root, e.g. sudo go test ./steps/)", why)
	}
}

// testOwner returns a user and group other than root's for ownership tests:
// nobody, and nogroup (Debian) or nobody (Fedora, Alpine).
func testOwner(t *testing.T) (owner, group string, uid, gid int) {
	t.Helper()
	owner = "nobody"
	uid, err := lookupUID(owner)
	if err != nil {
		t.Skipf("no user %q on this host: %v", owner, err)
	}
	for _, g := range []string{"nogroup", "nobody"} {
		if gid, err = lookupGID(g); err == nil {
			return owner, g, uid, gid
		}
	}
	t.Skip("neither group \"nogroup\" nor \"nobody\" exists on this host")
	return
}

// wantOutputs fails the test unless out has exactly the type the step's
// Outputs describe, as the engine requires.
func wantOutputs(t *testing.T, s Step, out cty.Value) {
	t.Helper()
	if want := OutputType(s); !out.Type().Equals(want) {
		t.Fatalf("outputs have type %s, want %s", out.Type().FriendlyName(), want.FriendlyName())
	}
	if !out.IsWhollyKnown() {
		t.Fatalf("outputs are not wholly known: %#v", out)
	}
}

// setUmask sets the process umask for the rest of the test. Tests that call
// it must not run in parallel: the umask is process-wide.
func setUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func TestConfigSensitive(t *testing.T) {
	obj := cty.ObjectVal(map[string]cty.Value{
		"plain":  cty.StringVal("p"),
		"secret": cty.StringVal("s").Mark("sensitive"),
		"block": cty.ObjectVal(map[string]cty.Value{
			"inner": cty.StringVal("i"),
		}).Mark("sensitive"),
	})
	c := NewConfig(obj)
	if c.Sensitive("plain") || !c.Sensitive("secret") {
		t.Errorf("plain %v, secret %v", c.Sensitive("plain"), c.Sensitive("secret"))
	}
	b, ok := c.Block("block")
	if !ok || !b.Sensitive("inner") {
		t.Error("an argument inside a block marked as a whole is sensitive")
	}
	if whole := NewConfig(cty.ObjectVal(map[string]cty.Value{"a": cty.StringVal("x")}).Mark("sensitive")); !whole.Sensitive("a") {
		t.Error("an argument of a body marked as a whole is sensitive")
	}
}

// wantValid fails the test unless Validate found nothing wrong: nil, or
// ErrUnknown for values it could not check yet.
func wantValid(t *testing.T, err error) {
	t.Helper()
	if err != nil && err != ErrUnknown {
		t.Fatalf("Validate: %v", err)
	}
}

// wantFacts fails the test unless a Summary returned exactly want, in order.
func wantFacts(t *testing.T, got, want []Fact) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("facts %#v, want %#v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("facts %#v, want %#v", got, want)
		}
	}
}

// validateThenCheck runs a kind's Validate and, when that passes, its
// CheckHost if it has one, as the engine does; host says whether the error
// came from CheckHost (Validate must never read the system).
func validateThenCheck(t *testing.T, kind Step, cfg Config) (err error, host bool) {
	t.Helper()
	err = kind.Validate(cfg)
	if err != nil && err != ErrUnknown {
		return err, false
	}
	hc, ok := kind.(HostChecker)
	if !ok {
		return err, false
	}
	env, _ := testEnv(t)
	if herr := hc.CheckHost(context.Background(), env, cfg); herr != nil && herr != ErrUnknown {
		return herr, true
	}
	return err, false
}

// wantFrom checks that an error came from the method the test expects:
// CheckHost for what depends on the host, Validate for the rest.
func wantFrom(t *testing.T, host, wantHost bool) {
	t.Helper()
	switch {
	case host && !wantHost:
		t.Error("the error came from CheckHost; Validate should find it without the host")
	case !host && wantHost:
		t.Error("the error came from Validate, which must not read the host; CheckHost should find it")
	}
}
