package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// What the Vault configuration kinds (vault_auth, vault_policy,
// vault_write) share: reading a path before it is changed, checking that
// the run's token may change it, and comparing what a plan declares with
// what Vault returns.

// secretFieldNames are the fields of a Vault path rotplan treats as secret
// whatever their value: never shown, journaled or logged, and given only
// from a sensitive value. A field whose name ends in one of
// secretFieldSuffixes is one too. docs/plan-language.md lists them.
var (
	secretFieldNames = []string{
		"password", "token", "secret_id", "client_secret", "private_key",
		"secret_key", "bindpass", "passphrase", "key",
	}
	secretFieldSuffixes = []string{"_password", "_secret", "_private_key", "_token"}
)

// secretField reports whether Vault keeps a field of that name secret.
func secretField(name string) bool {
	n := strings.ToLower(name)
	if slices.Contains(secretFieldNames, n) {
		return true
	}
	for _, s := range secretFieldSuffixes {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// plannedMount records, in a preview or in the run's preparation, that a
// step before this one will enable an auth method at mount ("auth/cert/"):
// a path under it that Vault has no handler for yet will have one.
func (e *Env) plannedMount(mount string) {
	e.session.mounts.Store(mount, true)
}

// mountPlanned reports whether a path lies under a mount plannedMount
// recorded.
func (e *Env) mountPlanned(path string) bool {
	found := false
	e.session.mounts.Range(func(k, _ any) bool {
		found = strings.HasPrefix(path+"/", k.(string))
		return !found
	})
	return found
}

// vaultState is what a Vault path holds before a step changes it.
type vaultState struct {
	// data is what a read returned; nil when there is nothing at the path.
	data map[string]any
	// mountMissing is set when Vault has no handler for the path yet but a
	// step before this one will enable the auth method it lies under.
	mountMissing bool
}

// readVaultPath reads path before a step changes it, and checks that the
// run's token may do what the step and its rollback will: read it, write
// it (create when nothing is there, update when something is), and delete
// it when the step creates it (the rollback removes it). Its errors point
// at arg, the argument that names the path, and come before anything
// changes: a path the token may not write, or one Vault has no handler
// for.
func readVaultPath(ctx context.Context, env *Env, cfg Config, arg, path string) (vaultState, error) {
	client, err := env.Vault(ctx)
	if err != nil {
		return vaultState{}, err
	}
	var st vaultState
	secret, err := client.Logical().ReadWithContext(ctx, path)
	switch {
	case err != nil && strings.Contains(err.Error(), "no handler for route"):
		if !env.mountPlanned(path) {
			return st, attrErr(cfg.Path(arg), "Vault has nothing mounted at %s: no secrets engine or auth method handles it", path)
		}
		st.mountMissing = true
	case err != nil && isForbidden(err):
		mounted, known := underMount(ctx, client, path)
		switch {
		case known && !mounted && !env.mountPlanned(path):
			return st, attrErr(cfg.Path(arg), "Vault has nothing mounted at %s: no secrets engine or auth method handles it", path)
		case known && !mounted:
			return st, attrErr(cfg.Path(arg), "reading %s: permission denied: the token's policies must allow read there once its auth method is enabled (rotplan reads what it changes, to roll it back)", path)
		case known:
			return st, attrErr(cfg.Path(arg), "reading %s: permission denied: the token's policies must allow read (rotplan reads what it changes, to roll it back)", path)
		}
		return st, attrErr(cfg.Path(arg), "reading %s: permission denied: the token's policies must allow read (rotplan reads what it changes, to roll it back), or nothing is mounted there", path)
	case err != nil:
		return st, attrErr(cfg.Path(arg), "reading %s: %s", path, vaultMessage(err))
	case secret != nil && secret.Data != nil:
		st.data = secret.Data
	default:
		// The client reads a 404 as nothing there, "no handler for route"
		// too: ask Vault which mount the path is under (any token may, for
		// a path its policies reach).
		if _, err := client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path); err != nil {
			if !env.mountPlanned(path) {
				return st, attrErr(cfg.Path(arg), "Vault has nothing mounted at %s: no secrets engine or auth method handles it", path)
			}
			st.mountMissing = true
		}
	}
	need := []string{"update"}
	if st.data == nil {
		need = []string{"create", "delete"}
	}
	caps, err := client.Sys().CapabilitiesSelfWithContext(ctx, path)
	if err != nil {
		return st, attrErr(cfg.Path(arg), "asking Vault what the token may do at %s: %s", path, vaultMessage(err))
	}
	if slices.Contains(caps, "root") {
		return st, nil
	}
	var lacking []string
	for _, c := range need {
		if !slices.Contains(caps, c) {
			lacking = append(lacking, c)
		}
	}
	if len(lacking) > 0 {
		return st, attrErr(cfg.Path(arg), "the token may not change %s: its policies lack %s there (they allow %s)", path, strings.Join(lacking, " and "), strings.Join(caps, ", "))
	}
	return st, nil
}

// underMount reports whether path lies under a secrets engine or an auth
// method Vault lists (sys/mounts, sys/auth, or the sys/ paths themselves);
// known is false when the token may not list them.
func underMount(ctx context.Context, client *vaultapi.Client, path string) (mounted, known bool) {
	if strings.HasPrefix(path, "sys/") || strings.HasPrefix(path, "identity/") || strings.HasPrefix(path, "cubbyhole/") {
		return true, true
	}
	var mounts []string
	if strings.HasPrefix(path, "auth/") {
		auths, err := client.Sys().ListAuthWithContext(ctx)
		if err != nil {
			return false, false
		}
		for m := range auths {
			mounts = append(mounts, "auth/"+m)
		}
	} else {
		engines, err := client.Sys().ListMountsWithContext(ctx)
		if err != nil {
			return false, false
		}
		for m := range engines {
			mounts = append(mounts, m)
		}
	}
	for _, m := range mounts {
		if strings.HasPrefix(path+"/", m) {
			return true, true
		}
	}
	return false, true
}

func isForbidden(err error) bool {
	var resp *vaultapi.ResponseError
	return errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden
}

// fieldValue is one declared field as it goes to Vault: a string, a
// number, a bool, or a list of them.
func fieldValue(v cty.Value) (any, error) {
	ty := v.Type()
	switch {
	case v.IsNull():
		return nil, errors.New("is null")
	case ty == cty.String:
		return v.AsString(), nil
	case ty == cty.Number:
		bf := v.AsBigFloat()
		if n, acc := bf.Int64(); bf.IsInt() && acc == big.Exact {
			return json.Number(strconv.FormatInt(n, 10)), nil
		}
		return json.Number(bf.Text('g', -1)), nil
	case ty == cty.Bool:
		return v.True(), nil
	case ty.IsListType() || ty.IsTupleType() || ty.IsSetType():
		out := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			x, err := fieldValue(e)
			if err != nil {
				return nil, err
			}
			if _, nested := x.([]any); nested {
				return nil, errors.New("is a list of lists; give strings, numbers, bools or a list of them")
			}
			out = append(out, x)
		}
		return out, nil
	}
	return nil, fmt.Errorf("is a %s; give a string, number, bool or a list of them", ty.FriendlyName())
}

// sameField reports whether what Vault returned for a field (cur, as the
// API client decodes JSON: string, json.Number, bool, []any) already is
// what the plan declares (want, from fieldValue). Vault normalises what
// it stores, so both sides are read the way Vault reads its arguments:
// a duration ("1h") is the seconds Vault returns (3600); a list is a set
// of trimmed items without empty ones (Vault sorts and dedups policies)
// and a comma-separated string is the same list; "true" is true; text is
// compared without the white space around it.
func sameField(cur, want any) bool {
	switch w := want.(type) {
	case []any:
		return slices.Equal(normalList(w), normalList(cur))
	case bool:
		switch c := cur.(type) {
		case bool:
			return c == w
		case string:
			b, err := strconv.ParseBool(c)
			return err == nil && b == w
		}
		return false
	case json.Number:
		return sameNumber(cur, string(w))
	case string:
		switch c := cur.(type) {
		case string:
			return strings.TrimSpace(c) == strings.TrimSpace(w)
		case json.Number:
			return sameNumber(c, w) || sameSeconds(c, w)
		case []any:
			return slices.Equal(normalList(c), normalList(w))
		case bool:
			b, err := strconv.ParseBool(w)
			return err == nil && b == c
		}
	}
	return false
}

// sameNumber compares a number Vault returned with a number written as
// text.
func sameNumber(cur any, want string) bool {
	var c string
	switch x := cur.(type) {
	case json.Number:
		c = string(x)
	case string:
		c = x
	default:
		return false
	}
	a, _, err1 := big.ParseFloat(c, 10, 256, big.ToNearestEven)
	b, _, err2 := big.ParseFloat(strings.TrimSpace(want), 10, 256, big.ToNearestEven)
	return err1 == nil && err2 == nil && a.Cmp(b) == 0
}

// sameSeconds compares seconds Vault returned with a duration as a plan
// writes it ("1h", "90m", "30s").
func sameSeconds(cur json.Number, want string) bool {
	d, err := time.ParseDuration(strings.TrimSpace(want))
	if err != nil {
		return false
	}
	return sameNumber(cur, strconv.FormatInt(int64(d/time.Second), 10)) && d%time.Second == 0
}

// normalList reads a list the way Vault reads a list argument: a list, or
// a comma-separated string; items trimmed, empty ones dropped, sorted and
// without duplicates. nil for anything else.
func normalList(v any) []string {
	var items []string
	switch x := v.(type) {
	case nil:
		return []string{}
	case string:
		items = strings.Split(x, ",")
	case []any:
		for _, e := range x {
			items = append(items, fmt.Sprint(e))
		}
	case []string:
		items = x
	default:
		return nil
	}
	out := []string{}
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// fieldText writes a field's value for a preview: JSON for short values,
// a certificate by its subject and serial, other text by its size. Never
// called for a secret.
func fieldText(v any) string {
	if s, ok := v.(string); ok && strings.Contains(s, "\n") {
		if c := firstCertificate([]byte(s)); c != nil {
			n := strings.Count(s, "-----BEGIN CERTIFICATE-----")
			what := fmt.Sprintf("certificate %q serial %s", c.Subject.CommonName, SerialHex(c))
			if n > 1 {
				what += fmt.Sprintf(" and %d more", n-1)
			}
			return "(" + what + ")"
		}
		return fmt.Sprintf("(text, %d bytes, %d lines, sha256 %s)", len(s), strings.Count(strings.TrimRight(s, "\n"), "\n")+1, shortDigest(s))
	}
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, e := range list {
			parts[i] = fieldText(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// shortDigest is the first 12 hex digits of a text's SHA-256.
func shortDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

// decodeJournaled reads a JSON value a snapshot or an intent kept, with
// numbers as json.Number, as the Vault client reads them.
func decodeJournaled(s string, into any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	return dec.Decode(into)
}

// snapshotExisted reads what a Vault kind's snapshot names (its key: the
// path, the policy name) and whether that existed before the step.
func snapshotExisted(kind, key string, snapshot map[string]string) (string, bool, error) {
	id, err := snapshotField(snapshot, key)
	if err != nil {
		return "", false, fmt.Errorf("%s: rolling back: %w", kind, err)
	}
	existed, err := snapshotField(snapshot, "existed")
	if err != nil || (existed != "true" && existed != "false") {
		return id, false, fmt.Errorf("%s: rolling back %s: the journaled snapshot does not say whether it existed", kind, id)
	}
	return id, existed == "true", nil
}

// vaultPathSegment checks a name that becomes one segment of a Vault
// path (a policy name, an auth mount).
func vaultPathSegment(cfg Config, arg, s string) error {
	if strings.ContainsAny(s, " ?#\\") || strings.Contains(s, "..") || strings.HasPrefix(s, "/") {
		return attrErr(cfg.Path(arg), "%q is not a plain Vault path segment", s)
	}
	return nil
}
