package steps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// agentLogin does what a Vault Agent with cert auto-auth does on start: it
// logs in with the app's certificate and key at the production listener,
// and returns the token it would write to its sink.
func agentLogin(t *testing.T, v *testvault.Vault, certFile, keyFile string) string {
	t.Helper()
	client, err := newVaultClient(v.Addr, &vaultapi.TLSConfig{
		CACert: v.RootCAFile, ClientCert: certFile, ClientKey: keyFile, TLSServerName: v.ServerName,
	}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.Logical().WriteWithContext(context.Background(), "auth/cert/login", map[string]any{"name": appMapping})
	if err != nil {
		t.Fatalf("agent login: %v", err)
	}
	return s.Auth.ClientToken
}

// writeSink puts token in the sink as an agent's file sink does: a
// trailing newline, written to a temporary file renamed into place, mode
// 0640 and, under root, owned by another user (the app's).
func writeSink(t *testing.T, sink, token string) {
	t.Helper()
	tmp := sink + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o640); err != nil {
		t.Error(err)
		return
	}
	if os.Geteuid() == 0 {
		if err := testvault.GiveToStranger(tmp); err != nil {
			t.Error(err)
		}
	}
	if err := os.Rename(tmp, sink); err != nil {
		t.Error(err)
	}
}

// notYetWriter signals, once, when the check logs that it is not passing
// yet: the test knows then that an attempt saw the old token.
type notYetWriter struct {
	once   sync.Once
	notYet chan struct{}
	buf    *strings.Builder
	mu     sync.Mutex
	t      *testing.T
}

func (w *notYetWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	if strings.Contains(string(p), "check not passing yet") {
		w.once.Do(func() { close(w.notYet) })
	}
	return len(p), nil
}

func (w *notYetWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestVerifyAgentAgainstVault(t *testing.T) {
	a := newAppLogins(t)
	v := a.v
	oldCert, oldCrt, oldKey := a.issue(t, appCN)
	newCert, newCrt, newKey := a.issue(t, appCN)
	sink := filepath.Join(a.dir, "agent-token")
	check := func(t *testing.T, timeout string, expect string) Config {
		return checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal(timeout), "interval": cty.StringVal("100ms")}, "vault_agent", map[string]cty.Value{
			"sink": cty.StringVal(sink), "expect_serial": cty.StringVal(expect), "cert_name": cty.StringVal(appMapping),
		})
	}
	adminEnv := func(t *testing.T) (*Env, *strings.Builder) {
		env, logged := testEnv(t)
		return vaultEnv(env.Log, adminConnection(v)), logged
	}
	ve := &Verify{}

	t.Run("the token is from the expected certificate", func(t *testing.T) {
		writeSink(t, sink, agentLogin(t, v, newCrt, newKey))
		env, logged := adminEnv(t)
		cfg := check(t, "10s", SerialHex(newCert))
		wantValid(t, ve.Validate(cfg))
		out, err := ve.Apply(context.Background(), env, cfg)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		wantOutputs(t, ve, out)
		if got := out.GetAttr("token_serial").AsString(); got != SerialHex(newCert) {
			t.Errorf("token_serial %s, want %s", got, SerialHex(newCert))
		}
		if got := out.GetAttr("cert_name").AsString(); got != appMapping {
			t.Errorf("cert_name %q", got)
		}
		wantNoToken(t, "the log", logged.String())
		wantNoToken(t, "the outputs", out.GoString())
		for _, f := range ve.Summary(out) {
			wantNoToken(t, "the facts", f.Value)
		}
		// The serial as Vault's metadata has it (decimal) is the one the
		// certificate has.
		if !strings.Contains(logged.String(), SerialHex(newCert)) {
			t.Errorf("the log does not name the serial %s", SerialHex(newCert))
		}
	})

	t.Run("an old token until the agent logs in again", func(t *testing.T) {
		writeSink(t, sink, agentLogin(t, v, oldCrt, oldKey))
		var buf strings.Builder
		w := &notYetWriter{notYet: make(chan struct{}), buf: &buf, t: t}
		env := vaultEnv(hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Trace, Output: w}), adminConnection(v))
		since := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			// The restarted agent logs in once the check has seen the
			// old token at least once.
			<-w.notYet
			writeSink(t, sink, agentLogin(t, v, newCrt, newKey))
		}()
		cfg := checkConfig(t, map[string]cty.Value{
			"timeout": cty.StringVal("2m"), "interval": cty.StringVal("100ms"), "since": cty.StringVal(since.UTC().Format(time.RFC3339Nano)),
		}, "vault_agent", map[string]cty.Value{
			"sink": cty.StringVal(sink), "expect_serial": cty.StringVal(SerialHex(newCert)), "cert_name": cty.StringVal(appMapping),
		})
		out, err := ve.Apply(context.Background(), env, cfg)
		<-done
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if n, _ := outputInt(out, "attempts"); n < 2 {
			t.Errorf("attempts %d: the check should have seen the old token first", n)
		}
		if got := out.GetAttr("token_serial").AsString(); got != SerialHex(newCert) {
			t.Errorf("token_serial %s, want %s", got, SerialHex(newCert))
		}
		// The agent logged in (Vault issued its token) after since and
		// before the check saw the token.
		passed, err1 := time.ParseDuration(out.GetAttr("passed_after").AsString())
		login, err2 := time.ParseDuration(out.GetAttr("logged_in_after").AsString())
		if err1 != nil || err2 != nil || login < 0 || login > passed {
			t.Errorf("passed_after %q, logged_in_after %q: want 0 <= logged_in_after <= passed_after",
				out.GetAttr("passed_after").AsString(), out.GetAttr("logged_in_after").AsString())
		}
		if note := ve.Note(out); !strings.Contains(note, "; the agent logged in "+out.GetAttr("logged_in_after").AsString()+" after it") {
			t.Errorf("note %q", note)
		}
		if !strings.Contains(w.String(), SerialHex(oldCert)) {
			t.Error("the log of the attempts that failed does not name the old serial")
		}
		wantNoToken(t, "the log", w.String())
	})

	t.Run("still the old certificate at the timeout", func(t *testing.T) {
		writeSink(t, sink, agentLogin(t, v, oldCrt, oldKey))
		env, logged := adminEnv(t)
		_, err := ve.Apply(context.Background(), env, check(t, "1s", SerialHex(newCert)))
		wantErrContains(t, err, "still failing", "serial "+SerialHex(oldCert), "not "+SerialHex(newCert))
		wantNoToken(t, "the error", err.Error())
		wantNoToken(t, "the log", logged.String())
		t.Logf("the check failed as it should: %v", err)
	})

	t.Run("a token Vault no longer knows", func(t *testing.T) {
		token := agentLogin(t, v, newCrt, newKey)
		writeSink(t, sink, token)
		root := v.Root()
		if err := root.Auth().Token().RevokeTreeWithContext(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		env, _ := adminEnv(t)
		_, err := ve.Apply(context.Background(), env, check(t, "1s", SerialHex(newCert)))
		wantErrContains(t, err, "still failing", "not valid")
		wantNoToken(t, "the error", err.Error())
	})

	t.Run("no sink yet", func(t *testing.T) {
		env, _ := adminEnv(t)
		cfg := checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal("1s"), "interval": cty.StringVal("100ms")}, "vault_agent", map[string]cty.Value{
			"sink": cty.StringVal(filepath.Join(a.dir, "missing")), "expect_serial": cty.StringVal(SerialHex(newCert)),
		})
		_, err := ve.Apply(context.Background(), env, cfg)
		wantErrContains(t, err, "still failing", "holds no token yet")
	})

	t.Run("an identity that may not look tokens up", func(t *testing.T) {
		writeSink(t, sink, agentLogin(t, v, newCrt, newKey))
		// The app's own identity has no policy on auth/token/lookup.
		conn := adminConnection(v)
		conn.ClientCert, conn.ClientKey, conn.AuthRole = newCrt, newKey, appMapping
		env := vaultEnv(nil, conn)
		_, err := ve.Apply(context.Background(), env, check(t, "1h", SerialHex(newCert)))
		wantErrContains(t, err, "cannot pass", "auth/token/lookup", "not retried")
		wantAttrErr(t, err, "vault_agent")
		wantNoToken(t, "the error", err.Error())
	})

	t.Run("preview", func(t *testing.T) {
		writeSink(t, sink, agentLogin(t, v, oldCrt, oldKey))
		env, _ := adminEnv(t)
		pv, err := ve.Plan(context.Background(), env, check(t, "1s", SerialHex(newCert)))
		if err != nil || len(pv.Problems) != 0 {
			t.Fatalf("Plan: %v, problems %v", err, pv.Problems)
		}
		if len(pv.Now) != 1 || !strings.Contains(pv.Now[0].Value, "from serial "+SerialHex(oldCert)) {
			t.Errorf("preview facts %#v", pv.Now)
		}
	})
}

// TestVerifyAgentSink: what the check makes of its sink before it asks
// Vault. A sink the agent has not written yet is "not yet"; one the check
// can never read as a plain token fails at once.
func TestVerifyAgentSink(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		sink    string
		want    string // the error holds it
		never   bool   // an inputError: not retried
		wantTok string
	}{
		{"token with a newline", write("a", "s.token-fixture\n"), "", false, "s.token-fixture"},
		{"missing", filepath.Join(dir, "missing"), "holds no token yet (no such file)", false, ""},
		{"empty", write("empty", ""), "holds no token yet (empty)", false, ""},
		{"blank", write("blank", " \n"), "holds no token yet (empty)", false, ""},
		{"wrapped", write("wrapped", `{"token":"x","accessor":"y"}`), "wrapped or encrypted", true, ""},
		{"two words", write("words", "not a token\n"), "does not hold a token", true, ""},
		{"directory", dir, "not a regular file", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := agentCheck{sink: tt.sink}.readSink()
			if tt.want == "" {
				if err != nil || tok != tt.wantTok {
					t.Fatalf("readSink: %v (token as expected: %v)", err, tok == tt.wantTok)
				}
				return
			}
			wantErrContains(t, err, tt.want)
			var input *inputError
			if errors.As(err, &input) != tt.never {
				t.Errorf("error %v: not retried %v, want %v", err, !tt.never, tt.never)
			}
			if strings.Contains(err.Error(), `"token"`) {
				t.Errorf("the error quotes the sink: %v", err)
			}
		})
	}
}
