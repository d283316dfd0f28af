package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
)

// vaultRole returns role data shaped as the vault/api client decodes a read
// of MOUNT/roles/ROLE from Vault 1.21 (json.Number, []any, bool), with the
// values Vault gives a role created without arguments, then set on top.
func vaultRole(set map[string]any) map[string]any {
	role := map[string]any{
		"allow_any_name":              false,
		"allow_bare_domains":          false,
		"allow_glob_domains":          false,
		"allow_ip_sans":               true,
		"allow_localhost":             true,
		"allow_subdomains":            false,
		"allow_token_displayname":     false,
		"allow_wildcard_certificates": true,
		"allowed_domains":             []any{},
		"allowed_domains_template":    false,
		"allowed_uri_sans":            []any{},
		"allowed_uri_sans_template":   false,
		"cn_validations":              []any{"email", "hostname"},
		"enforce_hostnames":           true,
		"key_bits":                    json.Number("2048"),
		"key_type":                    "rsa",
		"max_ttl":                     json.Number("0"),
		"not_after":                   "",
		"require_cn":                  true,
		"ttl":                         json.Number("0"),
	}
	for k, v := range set {
		role[k] = v
	}
	return role
}

// jsonList is a JSON list as the vault/api client decodes it.
func jsonList(items ...string) []any {
	out := make([]any, len(items))
	for i, s := range items {
		out[i] = s
	}
	return out
}

// ttlHours is a TTL in seconds as Vault returns it.
func ttlHours(h int) json.Number { return json.Number(fmt.Sprint(h * 3600)) }

// problemPaths returns the argument each problem points at, sorted.
func problemPaths(problems []error) []string {
	paths := []string{}
	for _, p := range problems {
		paths = append(paths, attrErrorPaths(p)...)
	}
	sort.Strings(paths)
	return paths
}

func TestCheckRole(t *testing.T) {
	serverRole := map[string]any{"allowed_domains": jsonList("vault.prod.privsec.ch"), "allow_bare_domains": true, "max_ttl": ttlHours(720)}
	subdomains := map[string]any{"allowed_domains": jsonList("example.com"), "allow_subdomains": true}
	tests := []struct {
		name    string
		role    map[string]any
		req     certRequest
		paths   []string // where the problems point, sorted
		message string   // in a problem
		note    string   // in a note
	}{
		{name: "bare domain", role: serverRole, req: certRequest{commonName: "vault.prod.privsec.ch", ipSANs: []string{"127.0.0.1"}, ttl: "720h"}},
		{name: "subdomain without allow_subdomains", role: serverRole, req: certRequest{commonName: "x.example.com"},
			paths:   []string{"common_name"},
			message: `common_name: role vault-server does not allow common name "x.example.com": allowed_domains are [vault.prod.privsec.ch], allow_subdomains is false`},
		{name: "subdomain", role: vaultRole(subdomains), req: certRequest{commonName: "a.b.example.com"}},
		{name: "bare domain without allow_bare_domains", role: vaultRole(subdomains), req: certRequest{commonName: "example.com"},
			paths: []string{"common_name"}, message: "allow_bare_domains is false"},
		{name: "subdomains match case-sensitively", role: vaultRole(subdomains), req: certRequest{commonName: "A.EXAMPLE.COM"},
			paths: []string{"common_name"}, message: "case-sensitively"},
		{name: "wildcard of an allowed domain", role: vaultRole(subdomains), req: certRequest{commonName: "*.example.com"}},
		{name: "wildcard refused", role: vaultRole(map[string]any{"allowed_domains": jsonList("example.com"), "allow_subdomains": true, "allow_wildcard_certificates": false}),
			req: certRequest{commonName: "*.example.com"}, paths: []string{"common_name"}, message: "allow_wildcard_certificates is false"},
		{name: "two wildcards", role: vaultRole(subdomains), req: certRequest{commonName: "*.*.example.com"},
			paths: []string{"common_name"}, message: "more than one *"},
		{name: "wildcard not left-most", role: vaultRole(subdomains), req: certRequest{commonName: "a.*.example.com"},
			paths: []string{"common_name"}, message: "left-most"},
		{name: "partial wildcard label is no DNS name", role: vaultRole(subdomains), req: certRequest{commonName: "x*.example.com"},
			note: "not a DNS name"},
		{name: "glob domain", role: vaultRole(map[string]any{"allowed_domains": jsonList("svc-*.internal"), "allow_glob_domains": true}),
			req: certRequest{commonName: "SVC-a.internal"}},
		{name: "glob domain without allow_glob_domains", role: vaultRole(map[string]any{"allowed_domains": jsonList("svc-*.internal")}),
			req: certRequest{commonName: "svc-a.internal"}, paths: []string{"common_name"}, message: "allow_glob_domains is false"},
		{name: "not a hostname", role: vaultRole(subdomains), req: certRequest{commonName: "-x.example.com"},
			paths: []string{"common_name"}, message: "enforce_hostnames is true"},
		{name: "not a hostname, not enforced", role: vaultRole(map[string]any{"allowed_domains": jsonList("example.com"), "allow_subdomains": true, "enforce_hostnames": false}),
			req: certRequest{commonName: "under_score.example.com"}, note: "not a DNS name"},
		{name: "empty label", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "a..example.com"},
			paths: []string{"common_name"}, message: "cannot read common name"},
		{name: "any name", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "anything.test", altNames: []string{"x.y"}}},
		{name: "any name still enforces hostnames", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "Rotplan Admin"},
			paths: []string{"common_name"}, message: "enforce_hostnames"},
		{name: "localhost", role: vaultRole(nil), req: certRequest{commonName: "localhost"}},
		{name: "localhost refused", role: vaultRole(map[string]any{"allow_localhost": false}), req: certRequest{commonName: "localhost"},
			paths: []string{"common_name"}, message: "allow_localhost is false"},
		{name: "nothing allowed", role: vaultRole(nil), req: certRequest{commonName: "x.test"},
			paths: []string{"common_name"}, message: "allow_any_name is false and allowed_domains is empty"},
		{name: "cn_validations email only", role: vaultRole(map[string]any{"allowed_domains": jsonList("example.com"), "allow_bare_domains": true, "cn_validations": jsonList("email")}),
			req: certRequest{commonName: "example.com"}, paths: []string{"common_name"}, message: "cn_validations are [email]"},
		{name: "email common name", role: vaultRole(map[string]any{"allowed_domains": jsonList("example.com"), "allow_bare_domains": true, "cn_validations": jsonList("email")}),
			req: certRequest{commonName: "ops@example.com"}},
		{name: "cn_validations disabled", role: vaultRole(map[string]any{"allowed_domains": jsonList("example.com"), "allow_subdomains": true, "enforce_hostnames": false, "cn_validations": jsonList("disabled")}),
			req: certRequest{commonName: "Rotplan Admin"}, note: "not a DNS name"},
		{name: "cn_validations disabled, still a SAN", role: vaultRole(map[string]any{"allowed_domains": jsonList("example.com"), "allow_subdomains": true, "cn_validations": jsonList("disabled")}),
			req: certRequest{commonName: "x.other.com"}, paths: []string{"common_name"}, message: "subject alternative name"},
		{name: "require_cn", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{altNames: []string{"x.test"}},
			paths: []string{"common_name"}, message: "require_cn"},
		{name: "no cn needed", role: vaultRole(map[string]any{"allow_any_name": true, "require_cn": false}), req: certRequest{altNames: []string{"x.test"}}},
		{name: "alt names", role: vaultRole(subdomains), req: certRequest{commonName: "a.example.com", altNames: []string{"b.example.com", "c.other.com", "d.other.com"}},
			paths: []string{"alt_names", "alt_names"}, message: `alt name "c.other.com"`},
		{name: "alt names split at commas", role: vaultRole(subdomains), req: certRequest{commonName: "a.example.com", altNames: []string{"b.example.com, c.example.com"}}},
		{name: "alt email", role: vaultRole(subdomains), req: certRequest{commonName: "a.example.com", altNames: []string{"ops@other.com"}},
			paths: []string{"alt_names"}, message: `email address "ops@other.com"`},
		{name: "alt name left out", role: vaultRole(subdomains), req: certRequest{commonName: "a.example.com", altNames: []string{"under_score.example.com"}},
			note: `alt name "under_score.example.com"`},
		{name: "ip sans refused", role: vaultRole(map[string]any{"allow_any_name": true, "allow_ip_sans": false}),
			req: certRequest{commonName: "a.test", ipSANs: []string{"127.0.0.1"}}, paths: []string{"ip_sans"}, message: "allow_ip_sans is false"},
		{name: "ip sans", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "a.test", ipSANs: []string{"127.0.0.1", "::1"}}},
		{name: "bad ip", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "a.test", ipSANs: []string{"localhost"}},
			paths: []string{"ip_sans"}, message: "not an IP address"},
		{name: "uri sans refused", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "a.test", uris: []string{"spiffe://x/y"}},
			paths: []string{"uri_sans"}, message: "allowed_uri_sans is empty"},
		{name: "uri glob", role: vaultRole(map[string]any{"allow_any_name": true, "allowed_uri_sans": jsonList("spiffe://cluster.local/ns/*")}),
			req: certRequest{commonName: "a.test", uris: []string{"spiffe://cluster.local/ns/a/sa/b"}}},
		{name: "uri mismatch", role: vaultRole(map[string]any{"allow_any_name": true, "allowed_uri_sans": jsonList("spiffe://cluster.local/ns/*")}),
			req: certRequest{commonName: "a.test", uris: []string{"spiffe://other/ns/a"}}, paths: []string{"uri_sans"}, message: "allowed_uri_sans are [spiffe://cluster.local/ns/*]"},
		{name: "uri template", role: vaultRole(map[string]any{"allow_any_name": true, "allowed_uri_sans": jsonList("spiffe://{{identity.entity.name}}/*"), "allowed_uri_sans_template": true}),
			req: certRequest{commonName: "a.test", uris: []string{"spiffe://web/x"}}, note: "cannot evaluate"},
		{name: "ttl capped", role: serverRole, req: certRequest{commonName: "vault.prod.privsec.ch", ttl: "1000h"},
			note: "ttl 1000h is longer than role vault-server's max_ttl 720h: Vault issues the certificate for 720h instead"},
		{name: "role ttl capped", role: vaultRole(map[string]any{"allow_any_name": true, "ttl": ttlHours(1000), "max_ttl": ttlHours(720)}),
			req: certRequest{commonName: "a.test"}, note: "ttl 1000h is longer"},
		{name: "no ttl anywhere", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "a.test"}, note: "default lease TTL"},
		{name: "no max_ttl", role: vaultRole(map[string]any{"allow_any_name": true}), req: certRequest{commonName: "a.test", ttl: "24h"}, note: "no max_ttl"},
		{name: "not_after and ttl", role: vaultRole(map[string]any{"allow_any_name": true, "not_after": "2030-01-01T00:00:00Z"}),
			req: certRequest{commonName: "a.test", ttl: "24h"}, paths: []string{"ttl"}, message: "not_after"},
		{name: "not_after", role: vaultRole(map[string]any{"allow_any_name": true, "not_after": "2030-01-01T00:00:00Z"}),
			req: certRequest{commonName: "a.test"}, note: "expires at 2030-01-01T00:00:00Z"},
		{name: "key_type any", role: vaultRole(map[string]any{"allow_any_name": true, "key_type": "any", "key_bits": json.Number("0")}),
			req: certRequest{commonName: "a.test"}, paths: []string{"role"}, message: `key_type "any"`},
		{name: "short rsa key", role: vaultRole(map[string]any{"allow_any_name": true, "key_bits": json.Number("1024")}),
			req: certRequest{commonName: "a.test"}, paths: []string{"role"}, message: "2048"},
		{name: "domains template", role: vaultRole(map[string]any{"allowed_domains": jsonList("{{identity.entity.name}}.example.com"), "allowed_domains_template": true, "allow_bare_domains": true}),
			req: certRequest{commonName: "web.example.com"}, note: "templated allowed_domains"},
		{name: "template not enabled", role: vaultRole(map[string]any{"allowed_domains": jsonList("{{identity.entity.name}}.example.com"), "allow_bare_domains": true}),
			req: certRequest{commonName: "web.example.com"}, paths: []string{"common_name"}},
		{name: "token display name", role: vaultRole(map[string]any{"allow_token_displayname": true}),
			req: certRequest{commonName: "cert-admin"}, note: "allow_token_displayname"},
		{name: "odd types", role: vaultRole(map[string]any{"allow_any_name": "yes", "allowed_domains": jsonList("example.com"), "allow_subdomains": json.Number("1"), "max_ttl": []any{}}),
			req: certRequest{commonName: "a.example.com"}, paths: []string{"common_name"}, note: "cannot read allow_subdomains"},
		{name: "missing fields take Vault's defaults", role: map[string]any{"allowed_domains": jsonList("example.com"), "allow_bare_domains": true},
			req: certRequest{commonName: "example.com", ipSANs: []string{"10.0.0.1"}}},
		{name: "nil role", role: nil, req: certRequest{commonName: "a.test"}, paths: []string{"common_name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req.role == "" {
				req.role = "vault-server"
			}
			problems, notes := checkRole(tt.role, req)
			for _, p := range problems {
				t.Logf("problem: %v", p)
			}
			for _, n := range notes {
				t.Logf("note: %s", n)
			}
			want := tt.paths
			if want == nil {
				want = []string{}
			}
			if got := problemPaths(problems); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("problems on %#v, want %#v", got, want)
			}
			if tt.message != "" && !anyContains(errorStrings(problems), tt.message) {
				t.Errorf("no problem says %q", tt.message)
			}
			if tt.note != "" && !anyContains(notes, tt.note) {
				t.Errorf("no note says %q", tt.note)
			}
		})
	}
}

// roleKeys are the fields of a role's data that checkRole reads, in a fixed
// order for the fuzz test to pick from.
var roleKeys = slices.Sorted(maps.Keys(vaultRole(nil)))

// oddValue builds a value of a role field as something in front of Vault
// might return it, from the fuzzer's inputs: kind picks the Go type.
func oddValue(kind uint8, s string, f float64) any {
	switch kind % 9 {
	case 0:
		return nil
	case 1:
		return f
	case 2:
		return int(f)
	case 3:
		return s
	case 4:
		return json.Number(s)
	case 5:
		return []any{int(f), nil}
	case 6:
		if s == "" {
			return []string{}
		}
		return strings.Split(s, ",")
	case 7:
		return map[string]any{s: f}
	default:
		return f != 0
	}
}

// FuzzCheckRoleOddData gives one field of a role's data an odd value
// and checkRole an odd request. Whatever Vault (or something in front of
// it) returns, checkRole must not panic; every problem names the argument
// it is about, and only an argument the request gives (or "role", or
// common_name, which require_cn may demand); and a field it cannot read is
// noted and read as if it were missing, as readPKIRole promises.
func FuzzCheckRoleOddData(f *testing.F) {
	// The cases of the test this replaced: every field, every odd value.
	odd := []struct {
		kind uint8
		s    string
		f    float64
	}{
		{0, "", 0}, {1, "", 3.5}, {2, "", -1}, {3, "", 0}, {3, "x", 0}, {4, "abc", 0}, {4, "-5", 0}, {4, "1e300", 0},
		{5, "", 1}, {6, "", 0}, {7, "", 0}, {8, "", 1},
	}
	for i := range roleKeys {
		for _, v := range odd {
			f.Add(true, uint8(i), v.kind, v.s, v.f, "r", "a.example.com", "b.example.com,*", "127.0.0.1", "spiffe://x", "24h")
		}
	}
	f.Add(false, uint8(0), uint8(0), "", 0.0, "", "", "", "", "", "")
	// One argument at a time, each refused.
	f.Add(true, uint8(0), uint8(8), "", 1.0, "r", "a.test", "", "localhost", "", "")
	f.Add(true, uint8(0), uint8(8), "", 1.0, "r", "a.test", "", "", "spiffe://x/y", "")
	f.Add(true, uint8(0), uint8(8), "", 1.0, "r", "a.test", "x..y", "", "", "")
	f.Add(true, uint8(0), uint8(8), "", 1.0, "r", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, base bool, key, kind uint8, s string, fl float64, name, cn, alt, ip, uri, ttl string) {
		role := map[string]any{}
		if base {
			role = vaultRole(nil)
		}
		field := roleKeys[int(key)%len(roleKeys)]
		role[field] = oddValue(kind, s, fl)
		req := certRequest{role: name, commonName: cn, ttl: ttl}
		if alt != "" {
			req.altNames = []string{alt}
		}
		if ip != "" {
			req.ipSANs = []string{ip}
		}
		if uri != "" {
			req.uris = []string{uri}
		}
		problems, notes := checkRole(role, req)

		given := map[string]bool{"role": true, "common_name": true, "alt_names": alt != "", "ip_sans": ip != "", "uri_sans": uri != "", "ttl": ttl != ""}
		for _, p := range problems {
			var ae *AttrError
			if !errors.As(p, &ae) || !given[ae.Path] {
				t.Errorf("problem %q names no argument the request gives", p)
			}
		}

		unread := "cannot read " + field + " ("
		var others []string
		for _, n := range notes {
			if !strings.Contains(n, unread) {
				others = append(others, n)
			}
		}
		if len(others) == len(notes) {
			return // the field was read
		}
		value := role[field]
		delete(role, field)
		wantProblems, wantNotes := checkRole(role, req)
		if got, want := errorStrings(problems), errorStrings(wantProblems); !slices.Equal(got, want) {
			t.Errorf("%s = %#v is noted as unreadable but not read as missing: problems %q, without it %q", field, value, got, want)
		}
		if !slices.Equal(others, wantNotes) {
			t.Errorf("%s = %#v is noted as unreadable but not read as missing: notes %q, without it %q", field, value, others, wantNotes)
		}
	})
}

func errorStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func anyContains(items []string, sub string) bool {
	for _, s := range items {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// vaultBlames returns the argument Vault's refusal is about, "" when it
// issued or the message does not say.
func vaultBlames(err error, r certRequest) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, prefix := range []string{"subject alternate name ", "email address "} {
		if i := strings.Index(msg, prefix); i >= 0 {
			name, _, _ := strings.Cut(msg[i+len(prefix):], " not allowed")
			if name == r.commonName {
				return "common_name" // the common name, checked as a SAN
			}
			return "alt_names"
		}
	}
	switch {
	case strings.Contains(msg, "common name "), strings.Contains(msg, "common_name field is required"):
		return "common_name"
	case strings.Contains(msg, "IP Subject Alternative Names"):
		return "ip_sans"
	case strings.Contains(msg, "URI Subject Alternative Names"):
		return "uri_sans"
	case strings.Contains(msg, "not_after"):
		return "ttl"
	case strings.Contains(msg, "key type"):
		return "role"
	}
	return ""
}

// TestCheckRoleAgainstVault creates scratch roles on pki-prod and, for each
// request, compares checkRole's verdict with what Vault does when asked to
// issue. want records what Vault is expected to do, so that a case tests
// what its name says.
func TestCheckRoleAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	root := v.Root()
	notAfter := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	longLabel := strings.Repeat("a", 64) + ".example.com"

	type request struct {
		cn       string
		alt, ips []string
		uris     []string
		ttl      string
		want     bool // Vault issues
	}
	roles := []struct {
		name     string
		settings map[string]any
		requests []request
	}{
		{"rolecheck-1", map[string]any{
			"allowed_domains": []string{"example.com"}, "allow_subdomains": true, "allow_localhost": false,
			"allow_ip_sans": false, "ttl": "24h", "max_ttl": "72h",
		}, []request{
			{cn: "a.example.com", want: true},
			{cn: "example.com"},
			{cn: "A.EXAMPLE.COM"},
			{cn: "*.example.com", want: true},
			{cn: "x*.example.com", want: true},
			{cn: "*.*.example.com"},
			{cn: "foo.*.example.com"},
			{cn: "-x.example.com"},
			{cn: "a..example.com"},
			{cn: longLabel},
			{cn: "localhost"},
			{cn: "bücher.example.com", want: true},
			{cn: "user@sub.example.com", want: true},
			{cn: "user@example.com"},
			{cn: "a@b@example.com"},
			{cn: "a.example.com", alt: []string{"b.example.com", "c.other.com"}},
			{cn: "a.example.com", alt: []string{"b.example.com, c.example.com"}, want: true},
			{cn: "a.example.com", alt: []string{"ops@sub.example.com"}, want: true},
			{cn: "a.example.com", alt: []string{"under_score.example.com"}, want: true},
			{cn: "a.example.com", alt: []string{"*.other.com"}},
			{cn: "a.example.com", ips: []string{"127.0.0.1"}},
			{cn: "a.example.com", uris: []string{"spiffe://x/y"}},
			{cn: "a.example.com", ttl: "48h", want: true},
			{cn: "a.example.com", ttl: "100h", want: true},
		}},
		{"rolecheck-2", map[string]any{
			"allowed_domains":    []string{"example.com", "svc-*.internal", "*.glob.test"},
			"allow_bare_domains": true, "allow_glob_domains": true, "allow_wildcard_certificates": false,
			"allowed_uri_sans": []string{"spiffe://cluster.local/ns/*", "https://exact.example/x"},
			"max_ttl":          "720h",
		}, []request{
			{cn: "example.com", want: true},
			{cn: "EXAMPLE.com", want: true},
			{cn: "a.example.com"},
			{cn: "svc-a.internal", want: true},
			{cn: "SVC-A.internal", want: true},
			{cn: "web.internal"},
			{cn: "a.glob.test", want: true},
			{cn: "*.example.com"},
			{cn: "localhost", want: true},
			{cn: "foo.localhost"},
			{cn: "example.com", ips: []string{"127.0.0.1", "::1"}, want: true},
			{cn: "example.com", uris: []string{"spiffe://cluster.local/ns/default/sa/web"}, want: true},
			{cn: "example.com", uris: []string{"https://exact.example/x"}, want: true},
			{cn: "example.com", uris: []string{"https://exact.example/y"}},
			{cn: "example.com", ttl: "1000h", want: true},
		}},
		{"rolecheck-3", map[string]any{
			"allow_any_name": true, "cn_validations": []string{"hostname"},
		}, []request{
			{cn: "anything.other", alt: []string{"x.y"}, ttl: "48h", want: true},
			{cn: "user@example.com"},
			{cn: "Rotplan Admin"},
			{cn: "under_score.test"},
			{cn: "*", want: true},
			{cn: "a*b.example.com", want: true},
			{cn: ""},
			{cn: "a.test", alt: []string{"x..y"}},
		}},
		{"rolecheck-4", map[string]any{
			"allowed_domains": []string{"example.com"}, "allow_subdomains": true, "enforce_hostnames": false,
			"cn_validations": []string{"disabled"}, "allow_localhost": false,
		}, []request{
			{cn: "Rotplan Admin", want: true},
			{cn: "a.example.com", want: true},
			{cn: "x.other.com"},
			{cn: "under_score.example.com", want: true},
			{cn: "under_score.other.com", want: true},
			{cn: "user@other.com"},
			{cn: "user@a.example.com", want: true},
			{cn: "a.example.com", alt: []string{"under_score.other.com"}, want: true},
		}},
		{"rolecheck-5", map[string]any{
			"allowed_domains": []string{"example.com"}, "allow_bare_domains": true,
			"cn_validations": []string{"email"}, "enforce_hostnames": false,
		}, []request{
			{cn: "user@example.com", want: true},
			{cn: "example.com"},
			{cn: "x@y.example.com"},
		}},
		{"rolecheck-6", map[string]any{"allow_any_name": true, "key_type": "any", "key_bits": 0}, []request{
			{cn: "a.test"},
		}},
		{"rolecheck-7", map[string]any{"allow_any_name": true, "not_after": notAfter}, []request{
			{cn: "a.test", want: true},
			{cn: "a.test", ttl: "24h"},
		}},
		{"rolecheck-8", map[string]any{"allow_any_name": true, "require_cn": false}, []request{
			{cn: "", alt: []string{"x.test"}, want: true},
		}},
		{"rolecheck-9", map[string]any{"allow_subdomains": true}, []request{
			{cn: "foo.localhost", want: true},
			{cn: "localdomain", want: true},
			{cn: "x.test"},
		}},
	}

	agreed := 0
	for _, role := range roles {
		settings := map[string]any{"key_type": "ec", "key_bits": 256}
		for k, val := range role.settings {
			settings[k] = val
		}
		path := "pki-prod/roles/" + role.name
		if _, err := root.Logical().WriteWithContext(ctx, path, settings); err != nil {
			t.Fatalf("creating %s: %v", path, err)
		}
		secret, err := root.Logical().ReadWithContext(ctx, path)
		if err != nil || secret == nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		for _, rq := range role.requests {
			req := certRequest{mount: "pki-prod", role: role.name, commonName: rq.cn, altNames: rq.alt, ipSANs: rq.ips, uris: rq.uris, ttl: rq.ttl}
			name := fmt.Sprintf("%s/cn=%q alt=%q ip=%q uri=%q ttl=%q", role.name, rq.cn, rq.alt, rq.ips, rq.uris, rq.ttl)
			t.Run(name, func(t *testing.T) {
				problems, notes := checkRole(secret.Data, req)
				issued, err := root.Logical().WriteWithContext(ctx, "pki-prod/issue/"+role.name, req.arguments())
				vaultIssued := err == nil
				if err != nil {
					t.Logf("Vault refused: %v", err)
				} else if len(issued.Warnings) > 0 {
					t.Logf("Vault warned: %q", issued.Warnings)
				}
				if vaultIssued != rq.want {
					t.Errorf("Vault issued: %v, the case expects %v (error: %v)", vaultIssued, rq.want, err)
				}
				if (len(problems) == 0) != vaultIssued {
					t.Errorf("checkRole and Vault disagree: Vault error %v; problems %q; notes %q", err, errorStrings(problems), notes)
					return
				}
				if path := vaultBlames(err, req); path != "" && !anyContains(problemPaths(problems), path) {
					t.Errorf("Vault refused because of %s (%v); the problems point at %q", path, err, problemPaths(problems))
				}
				if issued != nil && anyContains(issued.Warnings, "maxTTL") && !anyContains(notes, "max_ttl") {
					t.Errorf("Vault warned %q; no note mentions max_ttl: %q", issued.Warnings, notes)
				}
				agreed++
			})
		}
		if _, err := root.Logical().DeleteWithContext(ctx, path); err != nil {
			t.Errorf("deleting %s: %v", path, err)
		}
	}
	t.Logf("checkRole agreed with Vault on %d requests", agreed)
}
