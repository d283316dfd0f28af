package steps

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/zclconf/go-cty/cty"
)

// resettingListener is a service that is running but not ready yet, as
// one is just after a restart: it accepts the first n connections (all
// of them when n < 0), reads what the client sends, and resets them
// (SO_LINGER 0, then Close), so the client's read of the handshake gets
// "connection reset by peer". Later connections are served.
type resettingListener struct {
	net.Listener
	mu    sync.Mutex
	n     int
	reset int // connections reset so far
}

func newResettingListener(t *testing.T, n int) *resettingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &resettingListener{Listener: l, n: n}
}

func (l *resettingListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		serve := l.n == 0
		if l.n > 0 {
			l.n--
		}
		if !serve {
			l.reset++
		}
		l.mu.Unlock()
		if serve {
			return conn, nil
		}
		// The client's hello has arrived when a byte of it has:
		// the reset then comes while it waits for the server's.
		_, _ = conn.Read(make([]byte, 1))
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
}

// resets is how many connections the listener has reset.
func (l *resettingListener) resets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reset
}

// TestVerifyRetriesResets: running is not ready. A service that resets
// connections (or refuses them, TestVerifyTLS's "nothing listening") is
// not ready yet, and the check retries it until it serves: a reset must
// never fail the check at once. One that resets every connection fails
// after the timeout, and the error says why and how often it tried.
func TestVerifyRetriesResets(t *testing.T) {
	ca := newTestCA(t)
	leaf, key := ca.leaf(t, "vault.prod.privsec.ch", "127.0.0.1")
	const resets = 3
	serve := map[string]func(t *testing.T, l net.Listener) string{
		"tls": func(t *testing.T, l net.Listener) string {
			return serveTLSOn(t, l, key, leaf, ca.inter)
		},
		"vault_status": func(t *testing.T, l net.Listener) string {
			return newSealStatusServer(t, l, servedCert(key, leaf, ca.inter)).Listener.Addr().String()
		},
	}
	for _, check := range []string{"tls", "vault_status"} {
		apply := func(t *testing.T, addr string) (cty.Value, error) {
			t.Helper()
			cfg := checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal("400ms"), "interval": cty.StringVal("50ms")}, check, map[string]cty.Value{
				"address": cty.StringVal(addr), "ca_file": cty.StringVal(ca.rootFile), "server_name": cty.StringVal("vault.prod.privsec.ch"),
			})
			if err := (&Verify{}).Validate(cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			env, _ := testEnv(t)
			var out cty.Value
			var err error
			// In a bubble, the timeout and interval run on the bubble's
			// clock, which stands still while a connection is under way.
			synctest.Test(t, func(t *testing.T) {
				out, err = (&Verify{}).Apply(context.Background(), env, cfg)
			})
			return out, err
		}
		t.Run(check+", reset then served", func(t *testing.T) {
			l := newResettingListener(t, resets)
			out, err := apply(t, serve[check](t, l))
			if err != nil {
				t.Fatalf("a service that resets %d connections, then serves, fails the check: %v", resets, err)
			}
			if got := l.resets(); got != resets {
				t.Errorf("%d connections reset, want %d", got, resets)
			}
			if n, ok := outputInt(out, "attempts"); !ok || n != resets+1 {
				t.Errorf("attempts %d, want %d: one per reset, then the one that passed", n, resets+1)
			}
		})
		t.Run(check+", always reset", func(t *testing.T) {
			l := newResettingListener(t, -1)
			_, err := apply(t, serve[check](t, l))
			wantErrContains(t, err, "connection reset by peer", "still failing after")
			m := regexp.MustCompile(`after (\d+) attempts`).FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error %q does not say how many attempts", err)
			}
			// Every attempt but the last was reset; the deadline may have
			// cut the last one short.
			if n, _ := strconv.Atoi(m[1]); n < 2 || l.resets() < n-1 || l.resets() > n {
				t.Errorf("error says %s attempts, the service reset %d connections: want every attempt but perhaps the last reset, and more than one", m[1], l.resets())
			}
		})
	}
}
