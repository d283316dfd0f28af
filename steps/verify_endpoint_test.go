package steps

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// edgeName is the name a check addresses an edge proxy by. It is under
// .invalid, which never resolves: a check that dialled it instead of
// connect_to would fail, and never leave the machine.
const edgeName = "vault.edge.invalid"

// sealStatusServer is an HTTPS server answering Vault's seal-status
// request (unsealed, version 1.21.0) with cert, on l when given. It
// records the SNI and the Host header of what it serves.
type sealStatusServer struct {
	*httptest.Server
	mu         sync.Mutex
	sni, hosts []string
}

func newSealStatusServer(t *testing.T, l net.Listener, cert tls.Certificate) *sealStatusServer {
	t.Helper()
	s := &sealStatusServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.mu.Unlock()
		if r.URL.Path != "/v1/sys/seal-status" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"shamir","initialized":true,"sealed":false,"t":1,"n":1,"progress":0,"version":"1.21.0"}`)
	}))
	if l != nil {
		s.Listener.Close()
		s.Listener = l
	}
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.sni = append(s.sni, hello.ServerName)
			s.mu.Unlock()
			return nil, nil
		},
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// seen is the SNI and Host headers the server was sent.
func (s *sealStatusServer) seen() (sni, hosts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sni...), append([]string(nil), s.hosts...)
}

// TestVerifyConnectTo: with connect_to, tls and vault_status checks dial
// it, while the address still gives the SNI and the Host header: an edge
// proxy's server block is picked by name where the name does not resolve.
func TestVerifyConnectTo(t *testing.T) {
	ca := newTestCA(t)
	leaf, key := ca.leaf(t, edgeName)
	srv := newSealStatusServer(t, nil, servedCert(key, leaf, ca.inter))
	real := srv.Listener.Addr().String()
	// The address's port is not the server's: only connect_to reaches it.
	address := "https://" + edgeName + ":22300"

	cases := []struct {
		name, check, address string
		wantHost             string // "" for the tls check, which sends no request
	}{
		{"tls", "tls", address, ""},
		{"tls, no scheme", "tls", edgeName + ":22300", ""},
		{"vault_status", "vault_status", address, edgeName + ":22300"},
		{"vault_status, no scheme", "vault_status", edgeName + ":22300", edgeName + ":22300"},
	}
	for _, check := range []string{"tls", "vault_status", "vault_login"} {
		// Else the attribute is dropped in checkConfig, and the check
		// would look the name up.
		if !hcldec.ImpliedType((&Verify{}).Spec()).AttributeType(check).HasAttribute("connect_to") {
			t.Fatalf("a %s block has no connect_to", check)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sniBefore, hostsBefore := srv.seen()
			cfg := checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal("400ms"), "interval": cty.StringVal("50ms")}, tc.check, map[string]cty.Value{
				"address": cty.StringVal(tc.address), "connect_to": cty.StringVal(real), "ca_file": cty.StringVal(ca.rootFile),
			})
			v := &Verify{}
			if err := v.Validate(cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			env, _ := testEnv(t)
			// In a bubble, a check that failed would retry on the
			// bubble's clock: the test ends at once.
			var out cty.Value
			var err error
			synctest.Test(t, func(t *testing.T) {
				out, err = v.Apply(context.Background(), env, cfg)
			})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tc.wantHost == "" {
				if got := out.GetAttr("served_serial").AsString(); got != SerialHex(leaf) {
					t.Errorf("served_serial %s, want %s", got, SerialHex(leaf))
				}
			} else if got := out.GetAttr("vault_version").AsString(); got != "1.21.0" {
				t.Errorf("vault_version %q, want 1.21.0", got)
			}
			sni, hosts := srv.seen()
			sni, hosts = sni[len(sniBefore):], hosts[len(hostsBefore):]
			if len(sni) != 1 || sni[0] != edgeName {
				t.Errorf("SNI sent %q, want [%q]", sni, edgeName)
			}
			if tc.wantHost != "" && (len(hosts) != 1 || hosts[0] != tc.wantHost) {
				t.Errorf("Host headers sent %q, want [%q]", hosts, tc.wantHost)
			}
			pv, err := v.Plan(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.check + " " + tc.address + " via " + real; pv.Reason != want {
				t.Errorf("preview reason %q, want %q", pv.Reason, want)
			}
		})
	}
}

func TestVerifyConnectToValidate(t *testing.T) {
	bad := []struct{ value, want string }{
		{"", "must not be empty"},
		{"127.0.0.1", "is not a host and port"},
		{":22300", "is not a host and port"},
		{"https://127.0.0.1:22300", "is not a host and port"},
		{"127.0.0.1:22300/v1", "port must be a number from 1 to 65535"},
		{"127.0.0.1:0", "port must be a number from 1 to 65535"},
		{"127.0.0.1:65536", "port must be a number from 1 to 65535"},
		{"127.0.0.1:https", "port must be a number from 1 to 65535"},
	}
	login := map[string]cty.Value{"client_cert": cty.StringVal("/c"), "client_key": cty.StringVal("/k")}
	for _, check := range []string{"tls", "vault_status", "vault_login"} {
		block := func(connectTo cty.Value) map[string]cty.Value {
			b := map[string]cty.Value{
				"address": cty.StringVal("https://" + edgeName + ":22300"), "ca_file": cty.StringVal("/ca.pem"),
				"connect_to": connectTo,
			}
			if check == "vault_login" {
				for k, v := range login {
					b[k] = v
				}
			}
			return b
		}
		for _, tc := range bad {
			t.Run(check+" "+strconv.Quote(tc.value), func(t *testing.T) {
				err := (&Verify{}).Validate(checkConfig(t, nil, check, block(cty.StringVal(tc.value))))
				msg := wantAttrErr(t, err, check+".connect_to")
				if !strings.Contains(msg, tc.want) {
					t.Errorf("error %q, want one saying %q", msg, tc.want)
				}
			})
		}
		for _, good := range []string{"127.0.0.1:22300", "[::1]:443", "edge.internal:65535"} {
			t.Run(check+" "+strconv.Quote(good), func(t *testing.T) {
				wantValid(t, (&Verify{}).Validate(checkConfig(t, nil, check, block(cty.StringVal(good)))))
			})
		}
		t.Run(check+" unknown", func(t *testing.T) {
			if err := (&Verify{}).Validate(checkConfig(t, nil, check, block(cty.UnknownVal(cty.String)))); err != nil && err != ErrUnknown {
				t.Errorf("an unknown connect_to must validate: %v", err)
			}
		})
	}
}

// TestVerifyVaultStatusThroughTheEdge is the case connect_to is for: the
// harness's nginx edge proxy picks its Vault server block by the Host
// header, so a check of Vault through it must address it by name, a
// name that does not resolve here, and connect to its loopback port.
// Addressed by that port alone, the edge answers 421 (misdirected).
func TestVerifyVaultStatusThroughTheEdge(t *testing.T) {
	if os.Getenv(testvault.EnvBinary) != "" {
		if os.Geteuid() != 0 {
			t.Skip("the edge proxy's nginx drops its workers to user proxyprod: this test needs root")
		}
		if _, err := testvault.NginxBinary(); err != nil {
			t.Skipf("skipping the edge proxy test: %v", err)
		}
	}
	v := testvault.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := v.StartProxy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status := func(block map[string]cty.Value) (cty.Value, error) {
		block["ca_file"] = cty.StringVal(v.RootCAFile)
		block["client_cert"] = cty.StringVal(filepath.Join(v.AdminDir, "admin.crt"))
		block["client_key"] = cty.StringVal(filepath.Join(v.AdminDir, "admin.key"))
		// Not in a bubble: its clock starts in 2000, before the
		// harness's certificates. A check that fails retries for 5s.
		cfg := checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal("5s"), "interval": cty.StringVal("200ms")}, "vault_status", block)
		if err := (&Verify{}).Validate(cfg); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		env, _ := testEnv(t)
		return (&Verify{}).Apply(ctx, env, cfg)
	}
	out, err := status(map[string]cty.Value{"address": cty.StringVal(p.Addr), "connect_to": cty.StringVal(p.HostPort)})
	if err != nil {
		t.Fatalf("vault_status at %s via %s: %v", p.Addr, p.HostPort, err)
	}
	if got := out.GetAttr("vault_version").AsString(); got == "" {
		t.Error("no vault_version through the edge")
	}
	_, err = status(map[string]cty.Value{"address": cty.StringVal("https://" + p.HostPort), "server_name": cty.StringVal(p.ServerName)})
	wantErrContains(t, err, "421")
}
