package testhosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// Start starts a bed of n hosts for a test (see [StartFleet]) and stops
// it when the test ends. Not root: the test is skipped. Root but no ip
// command or no sshd, or namespaces not permitted (an unprivileged
// container): skipped, unless the CI variable is set (then it fails, as
// make test installs OpenSSH). Cleanup stops the bed and removes its
// directory; when the test failed the directory is kept (until a bed of
// the same number starts) and the tail of every host's sshd log is logged.
func Start(t testing.TB, n int) *Fleet {
	t.Helper()
	return start(t, Options{Hosts: n})
}

// start is Start with options.
func start(t testing.TB, o Options) *Fleet {
	t.Helper()
	if err := Check(o.Sshd); err != nil {
		Unavailable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	begin := time.Now()
	f, err := StartFleet(ctx, o)
	if errors.Is(err, ErrDenied) {
		Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testhosts: bed %s: %d hosts on %s up in %s (controller %s, dir %s, StrictModes %t)",
		f.Name, len(f.Hosts), f.Subnet, time.Since(begin).Round(time.Millisecond), f.Controller.Netns, f.Dir, f.StrictModes)
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			t.Logf("testhosts: test failed; keeping %s", f.Dir)
			for _, h := range f.Hosts {
				t.Logf("testhosts: tail of %s:\n%s", h.Log, tail(h.Log, 20))
			}
			return
		}
		if err := os.RemoveAll(f.Dir); err != nil {
			t.Logf("testhosts: removing %s: %v", f.Dir, err)
		}
	})
	return f
}

// Unavailable ends a test that cannot have a bed, or a tool it needs,
// for the reason err: skipped when not root, or when the CI variable is
// unset; failed otherwise, since make test installs what the bed needs
// when run as root.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("testhosts: no fleet bed here: %v", err)
	if errors.Is(err, errNotRoot) {
		t.Skip(msg + " (run the tests as root)")
	}
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (required when CI is set)")
	}
	t.Skip(msg)
}
