package steps

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ryanuber/go-glob"
	"golang.org/x/net/idna"
)

// The checks below mirror Vault's own (builtin/logical/pki/issuing/
// issue_common.go in Vault 1.21: GenerateCreationBundle, ValidateNames,
// ValidateCommonName, ValidateURISAN, GetCertificateNotAfter), so that a dry
// run refuses exactly what Vault would refuse. Where they look odd (a
// case-sensitive subdomain match, a name silently left out of the
// certificate), that is Vault's behaviour, copied on purpose.

var (
	// vaultIDNA converts names to ASCII with the options Vault uses; it only
	// fails on empty or over-long labels and bad Unicode.
	vaultIDNA = idna.New(idna.StrictDomainName(true), idna.VerifyDNSLength(true))

	// These are Vault's labelRegex, hostnameRegex and leftWildLabelRegex:
	// what Vault takes for a DNS name, and the left-most label of a
	// wildcard it accepts (*, *x, x*, x*y) when enforce_hostnames is on.
	vaultHostnameLabel  = `([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])`
	vaultHostnameRegex  = regexp.MustCompile(`^(\*\.)?(` + vaultHostnameLabel + `\.)*` + vaultHostnameLabel + `\.?$`)
	vaultWildLabelRegex = regexp.MustCompile(`^(\*|\*` + vaultHostnameLabel + `|` + vaultHostnameLabel + `\*|` + vaultHostnameLabel + `\*` + vaultHostnameLabel + `)$`)
)

// pkiRole is what decides, in a Vault PKI role, whether Vault issues a
// certificate for a request.
type pkiRole struct {
	name string

	allowAnyName, allowLocalhost, allowBareDomains       bool
	allowSubdomains, allowGlobDomains, allowWildcardCert bool
	allowTokenDisplayName, allowedDomainsTemplate        bool
	allowedDomains                                       []string
	enforceHostnames, requireCN                          bool
	cnValidations                                        []string

	allowIPSANs            bool
	allowedURISANs         []string
	allowedURISANsTemplate bool

	ttl, maxTTL time.Duration
	notAfter    string
	keyType     string
	keyBits     int64 // -1 when the role data does not say
}

// checkRole says whether a PKI role, as Vault returns it from MOUNT/roles/ROLE
// (secret.Data), allows the request. problems are what would make Vault refuse
// the issue request (or the sign request, for a request with a key: then
// the key's type and size count, and the role's key_type may be "any"); notes are what the operator should know but Vault would
// accept (e.g. a TTL Vault caps to max_ttl). Errors point at the argument with
// attrErr so the preview can show file:line:col; a problem with the role
// itself rather than with one argument points at "role".
//
// What Vault decides from things the role data does not hold (the mount's
// default and maximum lease TTLs, the issuer's expiry and
// leaf_not_after_behavior, identity templates and the token's display name)
// is a note at most, never a problem: a dry run must not refuse what Vault
// would issue.
func checkRole(role map[string]any, r certRequest) (problems []error, notes []string) {
	p, notes := readPKIRole(role, r.role)
	refuse := func(path, format string, args ...any) {
		problems = append(problems, attrErr(path, format, args...))
	}
	note := func(format string, args ...any) {
		notes = append(notes, fmt.Sprintf(format, args...))
	}
	// refuseName turns a refused name into a problem, or into a note when
	// the refusal depends on what this check cannot evaluate.
	refuseName := func(path, what, name, why, depends string) {
		if depends == "" {
			refuse(path, "role %s does not allow %s %q: %s", p.name, what, name, why)
			return
		}
		note("role %s allows %s %q only through %s, which this check cannot evaluate (otherwise: %s)", p.name, what, name, depends, why)
	}

	switch {
	case r.key != nil:
		problems = append(problems, p.keyRefusal(*r.key)...)
	case p.keyType == "any":
		refuse("role", `role %s has key_type "any", which Vault allows for signing CSRs but not for issuing`, p.name)
	case p.keyType == "rsa" && p.keyBits >= 0 && p.keyBits < 2048:
		refuse("role", "role %s has key_type rsa with key_bits %d; Vault refuses to issue RSA keys under 2048 bits", p.name, p.keyBits)
	}

	// The common name: Vault converts it to ASCII (failing on an empty or
	// over-long label), checks it as a common name, then checks it again as
	// a subject alternative name, since it also goes there when it is a
	// hostname or an email address.
	switch cn := r.commonName; {
	case cn == "":
		if p.requireCN {
			refuse("common_name", "role %s requires a common name (require_cn is true)", p.name)
		}
	default:
		san := ""
		if strings.Contains(cn, "@") {
			san = cn
		} else if ascii, err := vaultIDNA.ToASCII(cn); err != nil {
			refuse("common_name", "Vault cannot read common name %q as a domain name: %v", cn, err)
			break
		} else if vaultHostnameRegex.MatchString(ascii) {
			san = ascii
		}
		if why, depends := p.commonNameRefusal(cn); why != "" {
			refuseName("common_name", "common name", cn, why, depends)
		} else if san == "" {
			note("common name %q is not a DNS name to Vault, so Vault leaves it out of the certificate's subject alternative names (which TLS clients match, not the common name)", cn)
		} else if why, depends := p.nameRefusal(san); why != "" {
			refuseName("common_name", "common name", cn, why+" (Vault also checks the common name as a subject alternative name)", depends)
		}
	}

	// Alt names go to Vault joined by commas; Vault splits, trims, drops
	// empty ones and sorts.
	if len(r.altNames) > 0 {
		for _, name := range dedupSorted(strings.Split(strings.Join(r.altNames, ","), ",")) {
			if strings.Contains(name, "@") {
				if why, depends := p.nameRefusal(name); why != "" {
					refuseName("alt_names", "email address", name, why, depends)
				}
				continue
			}
			ascii, err := vaultIDNA.ToASCII(name)
			switch {
			case err != nil:
				refuse("alt_names", "Vault cannot read alt name %q as a domain name: %v", name, err)
				continue
			case !vaultHostnameRegex.MatchString(ascii):
				note("alt name %q is not a DNS name to Vault, so Vault leaves it out of the certificate", name)
				continue
			}
			if why, depends := p.nameRefusal(ascii); why != "" {
				refuseName("alt_names", "alt name", name, why, depends)
			}
		}
	}

	if len(r.ipSANs) > 0 {
		if !p.allowIPSANs {
			refuse("ip_sans", "role %s does not allow IP subject alternative names (allow_ip_sans is false)", p.name)
		} else {
			for _, ip := range trimmedList(r.ipSANs) {
				if net.ParseIP(ip) == nil {
					refuse("ip_sans", "%q is not an IP address", ip)
				}
			}
		}
	}

	if len(r.uris) > 0 {
		if len(p.allowedURISANs) == 0 {
			refuse("uri_sans", "role %s does not allow URI subject alternative names (allowed_uri_sans is empty)", p.name)
		} else {
			for _, u := range trimmedList(r.uris) {
				if why, depends := p.uriRefusal(u); why != "" {
					refuseName("uri_sans", "URI SAN", u, why, depends)
				} else if _, err := url.Parse(u); err != nil {
					refuse("uri_sans", "%q is not a URI", u)
				}
			}
		}
	}

	tp, tn := p.checkTTL(r.ttl)
	return append(problems, tp...), append(notes, tn...)
}

// keyRefusal mirrors Vault's SignCert (issuing/sign_cert.go) for the key
// of a CSR: a role of one key type signs only keys of that type, of at
// least its key_bits; a role of key_type "any" signs any key rotplan
// generates. A key not known yet is not checked.
func (p *pkiRole) keyRefusal(k keySpec) []error {
	switch {
	case k.typ == "" || p.keyType == "" || p.keyType == "any":
		return nil
	case p.keyType != "rsa" && p.keyType != "ec" && p.keyType != "ed25519":
		return []error{attrErr("role", "role %s has key_type %q, which Vault cannot sign CSRs with", p.name, p.keyType)}
	case p.keyType != k.typ:
		return []error{attrErr("key_type", "role %s requires keys of type %s (its key_type), and this step generates %s: set key_type = %q", p.name, p.keyType, k, p.keyType)}
	case k.typ != "ed25519" && k.bits > 0 && int64(k.bits) < p.keyBits:
		return []error{attrErr("key_bits", "role %s requires %s keys of at least %d bits (its key_bits), and this step generates %s: set key_bits to %d or more", p.name, p.keyType, p.keyBits, k, p.keyBits)}
	}
	return nil
}

// nameRefusal mirrors Vault's ValidateNames for one name: why is empty when
// the role allows the name, and otherwise says why not. depends is set when
// the role may still allow the name through something this check cannot
// evaluate (identity templates, the issuing token's display name).
func (p *pkiRole) nameRefusal(name string) (why, depends string) {
	reduced := name
	emailDomain := ""
	isEmail, isWildcard := false, false
	wildLabel := ""

	if strings.Contains(reduced, "@") {
		parts := strings.Split(reduced, "@")
		if len(parts) != 2 {
			return "it holds more than one @", ""
		}
		reduced, emailDomain, isEmail = parts[1], parts[1], true
	}
	if strings.Contains(reduced, "*") {
		isWildcard = true
		if !p.allowWildcardCert {
			return "it is a wildcard and allow_wildcard_certificates is false", ""
		}
		var err error
		if wildLabel, reduced, err = splitWildcard(reduced); err != nil {
			return "it is not a valid wildcard: " + err.Error(), ""
		}
	}
	if isEmail && isWildcard {
		return "an email address cannot hold a wildcard", ""
	}
	if p.enforceHostnames {
		if reduced != "" {
			ascii, err := vaultIDNA.ToASCII(reduced)
			if err != nil || !vaultHostnameRegex.MatchString(ascii) {
				return "it is not a valid hostname and enforce_hostnames is true", ""
			}
		}
		if isWildcard && !vaultWildLabelRegex.MatchString(wildLabel) {
			return fmt.Sprintf("its wildcard label %q is not *, *x, x* or x*y, and enforce_hostnames is true", wildLabel), ""
		}
	}
	if p.allowAnyName {
		return "", ""
	}
	if p.allowLocalhost {
		if reduced == "localhost" || reduced == "localdomain" {
			return "", ""
		}
		if p.allowSubdomains && (strings.HasSuffix(reduced, ".localhost") || strings.HasSuffix(reduced, ".localdomain")) {
			return "", ""
		}
	}

	var unevaluated []string
	if p.allowTokenDisplayName {
		unevaluated = append(unevaluated, "allow_token_displayname")
	}
	templated := false
	for _, d := range p.allowedDomains {
		if d == "" {
			continue
		}
		if p.allowedDomainsTemplate && isIdentityTemplate(d) {
			templated = true
			continue
		}
		if p.allowBareDomains && (strings.EqualFold(name, d) || (isEmail && strings.EqualFold(emailDomain, d))) {
			return "", ""
		}
		if p.allowSubdomains && (strings.HasSuffix(reduced, "."+d) || (isWildcard && strings.EqualFold(reduced, d))) {
			return "", ""
		}
		if p.allowGlobDomains && strings.Contains(d, "*") && glob.Glob(strings.ToLower(d), strings.ToLower(name)) {
			return "", ""
		}
	}
	if templated {
		unevaluated = append(unevaluated, "templated allowed_domains")
	}
	return p.domainRefusal(reduced), strings.Join(unevaluated, " and ")
}

// domainRefusal says why no allowed domain admits a name: the domains, and
// the flags that are off, since a flag that is on did not help.
func (p *pkiRole) domainRefusal(reduced string) string {
	var why []string
	domains := nonEmptyStrings(p.allowedDomains)
	if len(domains) == 0 {
		why = append(why, "allow_any_name is false and allowed_domains is empty")
	} else {
		why = append(why, fmt.Sprintf("allowed_domains are %v", domains))
		if !p.allowBareDomains {
			why = append(why, "allow_bare_domains is false")
		}
		if !p.allowSubdomains {
			why = append(why, "allow_subdomains is false")
		} else {
			for _, d := range domains {
				if !strings.HasSuffix(reduced, "."+d) && strings.HasSuffix(strings.ToLower(reduced), "."+strings.ToLower(d)) {
					why = append(why, "Vault matches subdomains case-sensitively")
					break
				}
			}
		}
		for _, d := range domains {
			if strings.Contains(d, "*") && !p.allowGlobDomains {
				why = append(why, "allow_glob_domains is false")
				break
			}
		}
	}
	local := reduced == "localhost" || reduced == "localdomain" ||
		strings.HasSuffix(reduced, ".localhost") || strings.HasSuffix(reduced, ".localdomain")
	if local && !p.allowLocalhost {
		why = append(why, "allow_localhost is false")
	}
	return strings.Join(why, ", ")
}

// commonNameRefusal mirrors Vault's ValidateCommonName: cn_validations
// ["disabled"] skips every check of the subject's common name (though not
// of the same name as a subject alternative name), and otherwise the name
// must pass nameRefusal and be of a kind cn_validations lists.
func (p *pkiRole) commonNameRefusal(cn string) (why, depends string) {
	if len(p.cnValidations) == 1 && p.cnValidations[0] == "disabled" {
		return "", ""
	}
	if why, depends := p.nameRefusal(cn); why != "" {
		return why, depends
	}
	if len(p.cnValidations) == 0 {
		return "", ""
	}
	kind := "hostname"
	if strings.Contains(cn, "@") {
		kind = "email"
	}
	for _, v := range p.cnValidations {
		if v == kind {
			return "", ""
		}
	}
	if kind == "email" {
		return fmt.Sprintf("it is an email address and cn_validations are %v", p.cnValidations), ""
	}
	return fmt.Sprintf("it is not an email address and cn_validations are %v", p.cnValidations), ""
}

// uriRefusal mirrors Vault's ValidateURISAN: the URI must match one of
// allowed_uri_sans as a glob.
func (p *pkiRole) uriRefusal(uri string) (why, depends string) {
	templated := false
	for _, pattern := range p.allowedURISANs {
		if p.allowedURISANsTemplate && isIdentityTemplate(pattern) {
			templated = true
			continue
		}
		if glob.Glob(pattern, uri) {
			return "", ""
		}
	}
	if templated {
		depends = "templated allowed_uri_sans"
	}
	return fmt.Sprintf("allowed_uri_sans are %v", p.allowedURISANs), depends
}

// checkTTL mirrors Vault's GetCertificateNotAfter as far as the role tells:
// a ttl above max_ttl is capped with a warning, not refused, and a ttl is
// refused outright when the role fixes not_after. The mount's lease TTLs and
// the issuer's expiry are not in the role data.
func (p *pkiRole) checkTTL(raw string) (problems []error, notes []string) {
	var requested time.Duration
	if raw != "" {
		// Vault counts whole seconds; a ttl parseIssue rejects is its problem.
		if d, err := time.ParseDuration(raw); err == nil && d > 0 {
			requested = d.Truncate(time.Second)
		}
	}
	if p.notAfter != "" {
		if _, err := time.Parse(time.RFC3339, p.notAfter); err != nil {
			return []error{attrErr("role", "role %s has not_after %q, which Vault cannot read as an RFC 3339 time, so it refuses every request", p.name, p.notAfter)}, nil
		}
		if requested > 0 {
			return []error{attrErr("ttl", "role %s sets not_after %s, and Vault refuses a ttl along with it: leave ttl out", p.name, p.notAfter)}, nil
		}
		return nil, []string{fmt.Sprintf("role %s sets not_after: the certificate expires at %s", p.name, p.notAfter)}
	}
	ttl, capped := requested, fmt.Sprintf("ttl %s is longer than role %s's max_ttl %s", raw, p.name, shortDuration(p.maxTTL))
	if ttl == 0 {
		ttl, capped = p.ttl, fmt.Sprintf("role %s's ttl %s is longer than its max_ttl %s", p.name, shortDuration(p.ttl), shortDuration(p.maxTTL))
	}
	switch {
	case ttl == 0 && p.maxTTL > 0:
		notes = append(notes, fmt.Sprintf("neither the request nor role %s sets a ttl: Vault uses the mount's default lease TTL, at most the role's max_ttl %s", p.name, shortDuration(p.maxTTL)))
	case ttl == 0:
		notes = append(notes, fmt.Sprintf("neither the request nor role %s sets a ttl: Vault uses the mount's default lease TTL", p.name))
	case p.maxTTL > 0 && ttl > p.maxTTL:
		notes = append(notes, fmt.Sprintf("%s: Vault issues the certificate for %s instead", capped, shortDuration(p.maxTTL)))
	case p.maxTTL == 0 && requested > 0:
		notes = append(notes, fmt.Sprintf("role %s has no max_ttl: Vault caps ttl %s at the mount's maximum lease TTL", p.name, raw))
	}
	return nil, notes
}

// splitWildcard mirrors Vault's ValidateWildcardDomain: one *, in the
// left-most label. It returns that label and the rest of the name.
func splitWildcard(name string) (label, rest string, err error) {
	if strings.Count(name, "*") > 1 {
		return "", "", errors.New("it holds more than one *")
	}
	parts := strings.SplitN(name, ".", 2)
	if len(parts) != 2 {
		return parts[0], "", nil
	}
	if strings.Contains(parts[1], "*") {
		return parts[0], parts[1], errors.New("the * must be in the left-most label")
	}
	return parts[0], parts[1], nil
}

// isIdentityTemplate says whether Vault would treat s as an identity
// template ("{{identity.entity.name}}.example.com"). Vault fills it in
// from the token's entity, which a dry run does not have.
func isIdentityTemplate(s string) bool {
	i := strings.Index(s, "{{")
	return i >= 0 && strings.Contains(s[i:], "}}")
}

// trimmedList is how Vault reads a comma-separated list argument (ip_sans,
// uri_sans) that rotplan sends joined by commas.
func trimmedList(items []string) []string {
	parts := strings.Split(strings.Join(items, ","), ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// dedupSorted is Vault's strutil.RemoveDuplicates: trimmed, without empty
// items or duplicates, sorted.
func dedupSorted(items []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range items {
		s = strings.TrimSpace(s)
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func nonEmptyStrings(items []string) []string {
	var out []string
	for _, s := range items {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// shortDuration writes "720h" rather than "720h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// readPKIRole reads the role data as the vault/api client decodes it
// (json.Number, []any, bool). A missing field takes the default Vault gives
// a new role; a field of an unexpected type does too, with a note, since a
// dry run must not fail on data it does not understand.
func readPKIRole(data map[string]any, name string) (pkiRole, []string) {
	rd := roleData{data: data, role: name}
	if name == "" {
		rd.role = "(unnamed)"
	}
	p := pkiRole{
		name:                   rd.role,
		allowAnyName:           rd.bool("allow_any_name", false),
		allowLocalhost:         rd.bool("allow_localhost", true),
		allowBareDomains:       rd.bool("allow_bare_domains", false),
		allowSubdomains:        rd.bool("allow_subdomains", false),
		allowGlobDomains:       rd.bool("allow_glob_domains", false),
		allowWildcardCert:      rd.bool("allow_wildcard_certificates", true),
		allowTokenDisplayName:  rd.bool("allow_token_displayname", false),
		allowedDomainsTemplate: rd.bool("allowed_domains_template", false),
		allowedDomains:         rd.strings("allowed_domains", nil),
		enforceHostnames:       rd.bool("enforce_hostnames", true),
		requireCN:              rd.bool("require_cn", true),
		cnValidations:          rd.strings("cn_validations", []string{"email", "hostname"}),
		allowIPSANs:            rd.bool("allow_ip_sans", true),
		allowedURISANs:         rd.strings("allowed_uri_sans", nil),
		allowedURISANsTemplate: rd.bool("allowed_uri_sans_template", false),
		ttl:                    rd.seconds("ttl"),
		maxTTL:                 rd.seconds("max_ttl"),
		notAfter:               rd.string("not_after"),
		keyType:                rd.string("key_type"),
		keyBits:                -1,
	}
	if n, ok := rd.number("key_bits"); ok && n < 1<<31 {
		p.keyBits = int64(n)
	}
	return p, rd.notes
}

// roleData reads fields of a role's data defensively.
type roleData struct {
	data  map[string]any
	role  string
	notes []string
}

func (rd *roleData) odd(key string, v any, assumed any) {
	rd.notes = append(rd.notes, fmt.Sprintf("role %s: cannot read %s (%T %v); assuming %v", rd.role, key, v, v, assumed))
}

func (rd *roleData) bool(key string, def bool) bool {
	v, ok := rd.data[key]
	if !ok || v == nil {
		return def
	}
	switch b := v.(type) {
	case bool:
		return b
	case string:
		if parsed, err := strconv.ParseBool(b); err == nil {
			return parsed
		}
	}
	rd.odd(key, v, def)
	return def
}

func (rd *roleData) string(key string) string {
	v, ok := rd.data[key]
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	rd.odd(key, v, `""`)
	return ""
}

func (rd *roleData) strings(key string, def []string) []string {
	v, ok := rd.data[key]
	if !ok || v == nil {
		return def
	}
	switch l := v.(type) {
	case []string:
		return l
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				rd.odd(key, v, def)
				return def
			}
			out = append(out, s)
		}
		return out
	case string:
		// Older Vaults kept some lists as comma-separated strings.
		if l == "" {
			return nil
		}
		return strings.Split(l, ",")
	}
	rd.odd(key, v, def)
	return def
}

// seconds reads a whole number of seconds, as Vault writes ttl and max_ttl.
// A duration string ("720h") is accepted too.
func (rd *roleData) seconds(key string) time.Duration {
	if s, ok := rd.data[key].(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			return d
		}
	}
	n, ok := rd.number(key)
	if !ok || n > float64(1<<62)/float64(time.Second) {
		return 0
	}
	return time.Duration(n) * time.Second
}

// number reads a non-negative number; false when it is missing or cannot
// be read (which is noted).
func (rd *roleData) number(key string) (float64, bool) {
	v, ok := rd.data[key]
	if !ok || v == nil {
		return 0, false
	}
	n, err := float64(0), error(nil)
	switch x := v.(type) {
	case json.Number:
		n, err = x.Float64()
	case float64:
		n = x
	case int:
		n = float64(x)
	case int64:
		n = float64(x)
	case string:
		n, err = strconv.ParseFloat(x, 64)
	default:
		err = errors.New("not a number")
	}
	if err != nil || n < 0 || math.IsNaN(n) {
		rd.odd(key, v, 0)
		return 0, false
	}
	return n, true
}
